//! `decodeFrames`: the core's length-line decoder, exposed so that JavaScript tests and tools check the
//! wire format against the one implementation rather than a second one written in JavaScript.

use modproxy_sdk::decode_stream;
use modproxy_sdk::frame::DEFAULT_MAX_FRAME;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

/// Why decoding stopped.
#[napi(object)]
pub struct FrameFailure {
    /// The core's stable error name: `missing_crlf`, `bad_digit`, `empty`, `too_large` or `truncated`.
    pub kind: String,
    /// A sentence for people.
    pub message: String,
}

/// The frames decoded from a stream, and the error that ended it, if any.
#[napi(object)]
pub struct DecodedFrames {
    /// Payloads in order, up to the error.
    pub frames: Vec<Buffer>,
    /// `None` when the stream ended cleanly after the last frame.
    pub error: Option<FrameFailure>,
}

/// Feeds `chunks` to one decoder as successive reads, then ends the stream.
#[napi(js_name = "decodeFrames")]
pub fn decode_frames(chunks: Vec<Buffer>, max_frame: Option<i64>) -> napi::Result<DecodedFrames> {
    let decoded = decode_stream(max_frame_or_default(max_frame)?, &chunks);
    Ok(DecodedFrames {
        frames: decoded
            .frames
            .iter()
            .map(|frame| Buffer::from(frame.to_vec()))
            .collect(),
        error: decoded.error.map(|error| FrameFailure {
            kind: error.kind().to_owned(),
            message: error.to_string(),
        }),
    })
}

/// The `maxFrame` option as the core wants it: absent means the default, negative is an error.
pub(crate) fn max_frame_or_default(max_frame: Option<i64>) -> napi::Result<usize> {
    match max_frame {
        None => Ok(DEFAULT_MAX_FRAME),
        Some(n) => {
            usize::try_from(n).map_err(|_| napi::Error::from_reason(format!("maxFrame must be 0 or more, not {n}")))
        }
    }
}
