//! [`LengthLineCodec`]: the length-line protocol as a tokio-util `Decoder`/`Encoder`, for `Framed`.
//!
//! Decoding is split as in a classic frame reader: first check that the whole length line is buffered
//! and parse it, then wait until the announced payload is buffered and split it off without copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{length_line, parse_length_line, FrameError, DEFAULT_MAX_FRAME, LENGTH_LINE_LEN};

/// Most the decoder reserves ahead of a payload that has not arrived yet.
const RESERVE_AHEAD: usize = 64 * 1024;

/// Frames and unframes payloads in the length-line protocol.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use modproxy_sdk::codec::LengthLineCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = LengthLineCodec::new(1024);
/// let mut wire = BytesMut::new();
/// codec.encode(Bytes::from_static(b"{}"), &mut wire).unwrap();
/// assert_eq!(&wire[..], b"         2\r\n{}");
/// assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), "{}");
/// ```
#[derive(Debug, Clone)]
pub struct LengthLineCodec {
    max_frame: usize,
    /// Payload length announced by a line already consumed, while its payload is still arriving.
    pending: Option<usize>,
}

impl LengthLineCodec {
    /// A codec that rejects frames whose payload is larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        LengthLineCodec {
            max_frame,
            pending: None,
        }
    }

    /// The largest payload this codec accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether a frame's length line has been read and its payload is still awaited.
    pub fn is_mid_frame(&self) -> bool {
        self.pending.is_some()
    }
}

impl Default for LengthLineCodec {
    fn default() -> Self {
        LengthLineCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for LengthLineCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                let Some(line) = src.get(..LENGTH_LINE_LEN) else {
                    return Ok(None);
                };
                let line: &[u8; LENGTH_LINE_LEN] = line.try_into().expect("slice of LENGTH_LINE_LEN");
                let len = parse_length_line(line, self.max_frame)?;
                src.advance(LENGTH_LINE_LEN);
                self.pending = Some(len);
                len
            }
        };
        if src.len() < len {
            src.reserve((len - src.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(match self.pending {
                Some(expected) => FrameError::Truncated {
                    part: "payload",
                    got: src.len(),
                    expected,
                },
                None => FrameError::Truncated {
                    part: "length line",
                    got: src.len(),
                    expected: LENGTH_LINE_LEN,
                },
            }),
        }
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for LengthLineCodec {
    type Error = FrameError;

    fn encode(&mut self, payload: T, dst: &mut BytesMut) -> Result<(), FrameError> {
        let payload = payload.as_ref();
        let line = length_line(payload.len())?;
        dst.reserve(LENGTH_LINE_LEN + payload.len());
        dst.put_slice(&line);
        dst.put_slice(payload);
        Ok(())
    }
}

/// What a decoder made of a whole stream: the payloads in order, and the error that ended it, if any.
#[derive(Debug)]
pub struct DecodedStream {
    /// Payloads delivered before the end or the error.
    pub frames: Vec<Bytes>,
    /// `None` when the stream ended cleanly after its last frame.
    pub error: Option<FrameError>,
}

/// A decoder fed a stream a read at a time, as a socket delivers it, and then told the stream ended.
/// Tests, tools and the bindings' `decode_frames` use it to decode exactly as a connection does.
///
/// ```
/// use modproxy_sdk::codec::StreamDecoder;
///
/// let mut decoder = StreamDecoder::new(100);
/// decoder.feed(b"         2\r\n{}      ");
/// decoder.feed(b"   1\r");
/// let decoded = decoder.finish();
/// assert_eq!(decoded.frames, ["{}"]);
/// assert_eq!(decoded.error.unwrap().kind(), "truncated");
/// ```
#[derive(Debug)]
pub struct StreamDecoder {
    codec: LengthLineCodec,
    buffer: BytesMut,
    decoded: DecodedStream,
}

impl StreamDecoder {
    /// A decoder that refuses payloads larger than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        StreamDecoder {
            codec: LengthLineCodec::new(max_frame),
            buffer: BytesMut::new(),
            decoded: DecodedStream {
                frames: Vec::new(),
                error: None,
            },
        }
    }

    /// Feeds one read and takes every frame it completes. Once the stream has failed, further reads are
    /// ignored; whether it still reads on.
    pub fn feed(&mut self, read: &[u8]) -> bool {
        if self.decoded.error.is_some() {
            return false;
        }
        self.buffer.extend_from_slice(read);
        loop {
            match self.codec.decode(&mut self.buffer) {
                Ok(Some(frame)) => self.decoded.frames.push(frame),
                Ok(None) => return true,
                Err(error) => {
                    self.decoded.error = Some(error);
                    return false;
                }
            }
        }
    }

    /// What the decoder holds for frames still arriving, in bytes of capacity (a bound to check).
    pub fn buffered_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// Ends the stream: takes any last frame, and says whether it ended inside one.
    pub fn finish(mut self) -> DecodedStream {
        while self.decoded.error.is_none() {
            match self.codec.decode_eof(&mut self.buffer) {
                Ok(Some(frame)) => self.decoded.frames.push(frame),
                Ok(None) => break,
                Err(error) => self.decoded.error = Some(error),
            }
        }
        self.decoded
    }
}

/// Decodes a stream delivered as `reads`, then ended: [`StreamDecoder`] in one call.
pub fn decode_stream<I>(max_frame: usize, reads: I) -> DecodedStream
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut decoder = StreamDecoder::new(max_frame);
    for read in reads {
        if !decoder.feed(read.as_ref()) {
            break;
        }
    }
    decoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_frames_come_out_one_by_one() {
        let mut codec = LengthLineCodec::new(100);
        let mut buf = BytesMut::from(&b"         1\r\na0000000002\r\nbc"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "a");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), "bc");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn oversized_frame_is_refused_before_any_payload_arrives() {
        let mut codec = LengthLineCodec::new(10);
        let mut buf = BytesMut::from(&b"9999999999\r\n"[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { .. })));
        assert!(buf.capacity() < 1024, "no allocation of the announced size");
    }

    #[test]
    fn a_stream_decoder_stops_at_the_first_error() {
        let decoded = decode_stream(100, [&b"         1\r\na"[..], b"        x1\r\n", b"         1\r\nb"]);
        assert_eq!(decoded.frames, ["a"]);
        assert_eq!(decoded.error.unwrap().kind(), "bad_digit");
        let clean = decode_stream(100, [&b"         1\r"[..], b"\na"]);
        assert_eq!((clean.frames.len(), clean.error.is_none()), (1, true));
    }

    #[test]
    fn eof_inside_a_frame_is_truncation() {
        let mut codec = LengthLineCodec::new(100);
        let mut buf = BytesMut::from(&b"         5\r\nab"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(matches!(
            codec.decode_eof(&mut buf),
            Err(FrameError::Truncated {
                part: "payload",
                got: 2,
                expected: 5
            })
        ));
    }
}
