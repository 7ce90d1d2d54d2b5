//! How an HTTP/1.1 response body is delimited (RFC 9112, section 6): the decision, made once per
//! response, and the decoder that follows it as a state machine. Pure: the lane feeds bytes in and
//! says when its connection ended; nothing here reads a socket.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Frame;

/// Bytes a chunk-size line or a trailer section may take.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Trailer lines a chunked body may end with.
const MAX_TRAILERS: usize = 32;

/// Why a response's body cannot be delimited: the upstream is answered as broken (502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("bad Content-Length {0:?} in the upstream's response")]
    BadContentLength(String),
    #[error("conflicting Content-Length values ({0} and {1}) in the upstream's response")]
    ConflictingContentLength(u64, u64),
    #[error(
        "the upstream's response has both Content-Length and Transfer-Encoding; refused, as either could be wrong"
    )]
    LengthAndTransferEncoding,
}

/// Why a body could not be read to its end; the client sees the response aborted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("chunk size line longer than {MAX_CHUNK_LINE} bytes in the upstream's body")]
    ChunkLineTooLong,
    #[error("malformed chunk size line in the upstream's body")]
    MalformedChunkSize,
    #[error("chunk data not followed by CRLF in the upstream's body")]
    MissingChunkEnd,
    #[error("trailer section longer than {MAX_CHUNK_LINE} bytes in the upstream's body")]
    TrailersTooLong,
    #[error("malformed trailer section in the upstream's body")]
    MalformedTrailers,
    #[error("bad trailer {0:?} in the upstream's body")]
    BadTrailer(String),
    #[error("upstream closed the connection mid-body")]
    ClosedMidBody,
    #[error("upstream connection failed mid-body: {0}")]
    ConnectionFailed(io::ErrorKind),
}

/// How a connection's input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputEnd {
    /// The upstream closed it.
    Closed,
    /// Reading failed (a reset, most often).
    Failed(io::ErrorKind),
}

/// How a response's body is delimited (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body, whatever the headers say (a response to `HEAD`, `204`, `304`).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// What a head's framing lines say, noted as they are read: before any hop-by-hop header is left out,
/// since `Connection` may name `Content-Length` and a body must not lose its framing with it.
#[derive(Debug, Clone, Default)]
pub struct FramingLines {
    /// Whether the last `Transfer-Encoding` line ends in `chunked`, if there was one.
    chunked: Option<bool>,
    content_length: Option<u64>,
    /// The first bad or conflicting `Content-Length`: an error only if the response has a body.
    bad_length: Option<FramingError>,
}

impl FramingLines {
    /// Notes the header line `name: value` if it frames the body.
    pub fn note(&mut self, name: &HeaderName, value: &[u8]) {
        if name == header::TRANSFER_ENCODING {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH && self.bad_length.is_none() {
            for item in value.split(|&b| b == b',') {
                if let Err(error) = self.note_length(item.trim_ascii()) {
                    self.bad_length = Some(error);
                    return;
                }
            }
        }
    }

    fn note_length(&mut self, item: &[u8]) -> Result<(), FramingError> {
        let parsed = (!item.is_empty() && item.iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(item).ok()?.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| FramingError::BadContentLength(String::from_utf8_lossy(item).into_owned()))?;
        match self.content_length {
            Some(seen) if seen != parsed => Err(FramingError::ConflictingContentLength(seen, parsed)),
            _ => {
                self.content_length = Some(parsed);
                Ok(())
            }
        }
    }

    /// The framing of a response with `status` to a request that was `HEAD` if `head_only`.
    pub fn decide(&self, status: StatusCode, head_only: bool) -> Result<Framing, FramingError> {
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok(Framing::Empty);
        }
        let has_length = self.content_length.is_some() || self.bad_length.is_some();
        match self.chunked {
            // RFC 9112, 6.3 lets Transfer-Encoding win, but warns of smuggling: a proxy that guesses
            // differently from the next hop splits the stream where the upstream did not mean it.
            Some(_) if has_length => return Err(FramingError::LengthAndTransferEncoding),
            Some(true) => return Ok(Framing::Chunked),
            Some(false) => return Ok(Framing::UntilClose),
            None => {}
        }
        if let Some(error) = &self.bad_length {
            return Err(error.clone());
        }
        Ok(self.content_length.map_or(Framing::UntilClose, Framing::Length))
    }
}

/// Where a streamed body's decoding stands.
#[derive(Debug)]
pub enum BodyDecoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyDecoder::Length(0),
            Framing::Length(length) => BodyDecoder::Length(length),
            Framing::Chunked => BodyDecoder::Chunked(Chunked::Size),
            Framing::UntilClose => BodyDecoder::UntilClose,
        }
    }

    /// The next frame from `buffer`: `None` when more bytes are needed, or once done.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame<Bytes>>, BodyError> {
        let take = match self {
            BodyDecoder::Chunked(chunked) => return chunked.decode(buffer),
            BodyDecoder::Length(remaining) => {
                let take = (*remaining).min(buffer.len() as u64);
                *remaining -= take;
                take as usize
            }
            BodyDecoder::UntilClose => buffer.len(),
        };
        Ok((take > 0).then(|| Frame::data(buffer.split_to(take).freeze())))
    }

    /// Whether the body has ended (one delimited by the close ends with the connection).
    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Length(0) | BodyDecoder::Chunked(Chunked::Done))
    }

    /// What the connection's end means for the body once every buffered byte is decoded: a close ends
    /// a body delimited by it; a failure (a reset) cuts any body short, however it was delimited.
    pub fn at_end_of_input(&self, end: InputEnd) -> Result<(), BodyError> {
        match (end, self) {
            _ if self.is_done() => Ok(()),
            (InputEnd::Failed(kind), _) => Err(BodyError::ConnectionFailed(kind)),
            (InputEnd::Closed, BodyDecoder::UntilClose) => Ok(()),
            (InputEnd::Closed, _) => Err(BodyError::ClosedMidBody),
        }
    }
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// The next frame from `buffer`: `None` when more bytes are needed, or once done.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame<Bytes>>, BodyError> {
        loop {
            match *self {
                Chunked::Size => match httparse::parse_chunk_size(buffer) {
                    Ok(httparse::Status::Complete((length, 0))) => {
                        buffer.advance(length);
                        *self = Chunked::Trailers;
                    }
                    Ok(httparse::Status::Complete((length, size))) => {
                        buffer.advance(length);
                        *self = Chunked::Data(size);
                    }
                    Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                        return Err(BodyError::ChunkLineTooLong);
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err(BodyError::MalformedChunkSize),
                },
                Chunked::Data(remaining) => {
                    if buffer.is_empty() {
                        return Ok(None);
                    }
                    let take = remaining.min(buffer.len() as u64);
                    *self = if take == remaining {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(remaining - take)
                    };
                    return Ok(Some(Frame::data(buffer.split_to(take as usize).freeze())));
                }
                Chunked::DataEnd => {
                    if buffer.len() < 2 {
                        return Ok(None);
                    }
                    if &buffer[..2] != b"\r\n" {
                        return Err(BodyError::MissingChunkEnd);
                    }
                    buffer.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
                    match httparse::parse_headers(buffer, &mut slots) {
                        Ok(httparse::Status::Complete((length, lines))) => {
                            let trailers = trailer_map(lines)?;
                            buffer.advance(length);
                            *self = Chunked::Done;
                            if !trailers.is_empty() {
                                return Ok(Some(Frame::trailers(trailers)));
                            }
                        }
                        Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                            return Err(BodyError::TrailersTooLong);
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err(BodyError::MalformedTrailers),
                    }
                }
                Chunked::Done => return Ok(None),
            }
        }
    }
}

/// Trailer lines as headers.
fn trailer_map(lines: &[httparse::Header<'_>]) -> Result<HeaderMap, BodyError> {
    let mut trailers = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let bad = || BodyError::BadTrailer(line.name.to_owned());
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(line.value).map_err(|_| bad())?;
        trailers.append(name, value);
    }
    Ok(trailers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(mut wire: BytesMut) -> Result<(Vec<u8>, Option<HeaderMap>), BodyError> {
        let mut chunked = Chunked::Size;
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = chunked.decode(&mut wire)? {
            match frame.into_data() {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        assert_eq!(chunked, Chunked::Done);
        Ok((data, trailers))
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (data, trailers) = chunks(BytesMut::from(
            &b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 9\r\n\r\n"[..],
        ))
        .unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(trailers.unwrap()["x-sum"], "9");
        let (data, trailers) = chunks(BytesMut::from(&b"0\r\n\r\n"[..])).unwrap();
        assert!(data.is_empty() && trailers.is_none());
    }

    #[test]
    fn broken_chunked_bodies_are_refused() {
        assert_eq!(
            chunks(BytesMut::from(&b"zz\r\n"[..])),
            Err(BodyError::MalformedChunkSize)
        );
        assert_eq!(
            chunks(BytesMut::from(&b"2\r\nabXX0\r\n\r\n"[..])),
            Err(BodyError::MissingChunkEnd)
        );
    }

    /// The framing of a `status` response whose header lines are `lines`, to a `HEAD` if `head_only`.
    fn framing(status: u16, lines: &[(&str, &str)], head_only: bool) -> Result<Framing, FramingError> {
        let mut framing = FramingLines::default();
        for &(name, value) in lines {
            framing.note(&HeaderName::from_bytes(name.as_bytes()).unwrap(), value.as_bytes());
        }
        framing.decide(StatusCode::from_u16(status).unwrap(), head_only)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let length = [("content-length", "5")];
        assert_eq!(framing(200, &length, false), Ok(Framing::Length(5)));
        assert_eq!(framing(200, &length, true), Ok(Framing::Empty));
        assert_eq!(framing(304, &length, false), Ok(Framing::Empty));
        assert_eq!(framing(204, &[], false), Ok(Framing::Empty));
        // Either could be the upstream's mistake, and a guess may smuggle a response (RFC 9112, 6.3).
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(framing(200, &both, false), Err(FramingError::LengthAndTransferEncoding));
        let both_the_other_way = [("transfer-encoding", "gzip"), ("content-length", "x")];
        assert_eq!(
            framing(200, &both_the_other_way, false),
            Err(FramingError::LengthAndTransferEncoding)
        );
        // Without a body there is nothing to frame.
        assert_eq!(framing(200, &both, true), Ok(Framing::Empty));
        let chunked_not_last = [("transfer-encoding", "chunked, gzip")];
        assert_eq!(framing(200, &chunked_not_last, false), Ok(Framing::UntilClose));
        assert_eq!(framing(200, &[], false), Ok(Framing::UntilClose));
        assert_eq!(
            framing(200, &[("content-length", "5, 5")], false),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(200, &[("content-length", "5, 6")], false),
            Err(FramingError::ConflictingContentLength(5, 6))
        );
        assert_eq!(
            framing(200, &[("content-length", "+5")], false),
            Err(FramingError::BadContentLength("+5".into()))
        );
    }

    fn decode_all(decoder: &mut BodyDecoder, wire: &[u8]) -> Vec<u8> {
        let mut buffer = BytesMut::from(wire);
        let mut data = Vec::new();
        while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
            data.extend_from_slice(frame.data_ref().unwrap());
        }
        data
    }

    #[test]
    fn a_length_body_takes_its_length_and_leaves_the_rest() {
        let mut decoder = BodyDecoder::new(Framing::Length(5));
        let mut buffer = BytesMut::from(&b"helloHTTP/1.1"[..]);
        let frame = decoder.decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(decoder.is_done());
        assert_eq!(&buffer[..], b"HTTP/1.1");
    }

    #[test]
    fn only_a_body_delimited_by_the_close_ends_with_the_connection() {
        let mut until_close = BodyDecoder::new(Framing::UntilClose);
        assert_eq!(decode_all(&mut until_close, b"all of it"), b"all of it");
        assert_eq!(until_close.at_end_of_input(InputEnd::Closed), Ok(()));
        let mut short = BodyDecoder::new(Framing::Length(10));
        assert_eq!(decode_all(&mut short, b"only"), b"only");
        assert_eq!(short.at_end_of_input(InputEnd::Closed), Err(BodyError::ClosedMidBody));
        let mut chunked = BodyDecoder::new(Framing::Chunked);
        assert_eq!(decode_all(&mut chunked, b"3\r\nabc\r\n"), b"abc");
        assert_eq!(chunked.at_end_of_input(InputEnd::Closed), Err(BodyError::ClosedMidBody));
        let mut whole = BodyDecoder::new(Framing::Chunked);
        decode_all(&mut whole, b"0\r\n\r\n");
        assert_eq!(whole.at_end_of_input(InputEnd::Closed), Ok(()));
    }

    /// A reset is not a close: a body delimited by the close that ends in one is cut short, and the
    /// client must see it aborted rather than complete.
    #[test]
    fn a_failed_connection_never_ends_a_body_well() {
        let reset = InputEnd::Failed(io::ErrorKind::ConnectionReset);
        let mut until_close = BodyDecoder::new(Framing::UntilClose);
        decode_all(&mut until_close, b"part of it");
        assert_eq!(
            until_close.at_end_of_input(reset),
            Err(BodyError::ConnectionFailed(io::ErrorKind::ConnectionReset))
        );
        let mut short = BodyDecoder::new(Framing::Length(10));
        decode_all(&mut short, b"only");
        assert_eq!(
            short.at_end_of_input(reset),
            Err(BodyError::ConnectionFailed(io::ErrorKind::ConnectionReset))
        );
    }
}
