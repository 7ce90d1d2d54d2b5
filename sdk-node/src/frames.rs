//! `decodeFrames`: the core's length-line decoder, exposed so that JavaScript tests and tools check the
//! wire format against the one implementation rather than a second one written in JavaScript.

use bytes::BytesMut;
use modproxy_sdk::frame::DEFAULT_MAX_FRAME;
use modproxy_sdk::LengthLineCodec;
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use tokio_util::codec::Decoder;

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
    let mut codec = LengthLineCodec::new(max_frame_or_default(max_frame)?);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let fail = |error: modproxy_sdk::FrameError, frames: Vec<Buffer>| DecodedFrames {
        frames,
        error: Some(FrameFailure {
            kind: error.kind().to_owned(),
            message: error.to_string(),
        }),
    };
    for chunk in &chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(Buffer::from(frame.to_vec())),
                Ok(None) => break,
                Err(error) => return Ok(fail(error, frames)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => frames.push(Buffer::from(frame.to_vec())),
            Ok(None) => return Ok(DecodedFrames { frames, error: None }),
            Err(error) => return Ok(fail(error, frames)),
        }
    }
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
