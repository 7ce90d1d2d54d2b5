//! A response's status line and header section, taken off the front of a pipelined connection's read
//! buffer (RFC 9112, sections 4 and 5). Pure: the lane reads, this parses what it has read.
//!
//! Hop-by-hop headers are left out as they are read (see [`headers::strip_hop_by_hop`]), so the client
//! gets the response as it is, with no second pass over its headers. The lines that frame the body are
//! noted first, as they come, so that what `Connection` names cannot unframe it.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};

use super::body_framing::{Framing, FramingError, FramingLines};
use super::headers;

/// A response head larger than this is refused (hyper's client allows about 400 KB; nginx 4–8 KB).
pub const MAX_HEAD: usize = 64 * 1024;

/// Header lines a response head may have.
const MAX_HEADERS: usize = 100;

/// Why the bytes where a response should start are not one; the connection cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("response head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response has no valid status code")]
    NoStatus,
    #[error("bad header name {0:?} in the response head")]
    BadName(String),
    #[error("bad value in header {0} of the response head")]
    BadValue(HeaderName),
}

/// A response's status line and headers.
#[derive(Debug)]
pub struct ResponseHead {
    status: StatusCode,
    version: Version,
    /// The end-to-end headers, as the client gets them.
    headers: HeaderMap,
    /// The framing lines as they were read, before hop-by-hop headers were left out.
    framing: FramingLines,
    /// What `Connection` says of this connection.
    close: bool,
    keep_alive: bool,
}

impl ResponseHead {
    /// The response's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Whether the upstream keeps the connection open after this response.
    pub fn keeps_alive(&self) -> bool {
        !self.close && (self.version == Version::HTTP_11 || self.keep_alive)
    }

    /// How this response's body is delimited, if its request was `HEAD` when `head_only`.
    pub fn framing(&self, head_only: bool) -> Result<Framing, FramingError> {
        self.framing.decide(self.status, head_only)
    }

    /// The response the client gets, with `body`.
    pub fn into_response<B>(self, body: B) -> Response<B> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Takes one response head off the front of `buffer`, if it is all there.
pub fn parse_head(buffer: &mut BytesMut) -> Result<Option<ResponseHead>, HeadError> {
    if buffer.is_empty() {
        return Ok(None);
    }
    // Uninitialised: a hundred empty slots cost more to fill than a usual head costs to parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let length =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buffer, &mut slots) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(HeadError::Malformed(error)),
        };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(HeadError::NoStatus)?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Values are kept as slices of the head's own bytes rather than copied one by one.
    let start = buffer.as_ptr() as usize;
    let mut lines = Vec::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let offset = line.value.as_ptr() as usize - start;
        let name =
            HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| HeadError::BadName(line.name.to_owned()))?;
        lines.push((name, offset..offset + line.value.len()));
    }
    let bytes = buffer.split_to(length).freeze();
    let mut head = ResponseHead {
        status,
        version,
        headers: HeaderMap::with_capacity(lines.len()),
        framing: FramingLines::default(),
        close: false,
        keep_alive: false,
    };
    let mut connection = HeaderMap::new();
    for (name, value) in lines {
        head.framing.note(&name, &bytes[value.clone()]);
        let Ok(value) = HeaderValue::from_maybe_shared(bytes.slice(value)) else {
            return Err(HeadError::BadValue(name));
        };
        if name == header::CONNECTION {
            connection.append(name, value);
        } else if !headers::is_hop_by_hop(&name) {
            head.headers.append(name, value);
        }
    }
    for option in headers::connection_options(&connection) {
        if option.eq_ignore_ascii_case("close") {
            head.close = true;
        } else if option.eq_ignore_ascii_case("keep-alive") {
            head.keep_alive = true;
        } else if let Ok(listed) = HeaderName::from_bytes(option.as_bytes()) {
            head.headers.remove(listed);
        }
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_forward::body_framing::Chunked;

    /// The one head in `wire`.
    fn head(wire: &str) -> ResponseHead {
        parse_head(&mut BytesMut::from(wire)).unwrap().expect("a whole head")
    }

    #[test]
    fn framing_is_decided_from_the_head() {
        let length = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(length.framing(false), Ok(Framing::Length(5)));
        assert_eq!(length.framing(true), Ok(Framing::Empty));
        let both = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        assert_eq!(both.framing(false), Err(FramingError::LengthAndTransferEncoding));
        let not_modified = head("HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(not_modified.framing(false), Ok(Framing::Empty));
    }

    /// `Connection` may name `Content-Length`, which then does not reach the client; the body is still
    /// delimited by it, or the lane would wait for a close that never comes.
    #[test]
    fn framing_is_decided_before_hop_by_hop_headers_go() {
        let listed = head("HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(listed.framing(false), Ok(Framing::Length(5)));
        assert!(!listed.headers.contains_key(header::CONTENT_LENGTH));
        let listed_after = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length, close\r\n\r\n");
        assert_eq!(listed_after.framing(false), Ok(Framing::Length(5)));
        let listed_te = head("HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(listed_te.framing(false), Ok(Framing::Chunked));
    }

    #[test]
    fn hop_by_hop_headers_are_left_out_as_they_are_read() {
        let head = head(concat!(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n",
            "Transfer-Encoding: chunked\r\nProxy-Thing: 2\r\nContent-Type: text/plain\r\nX-Kept: 3\r\n\r\n"
        ));
        let mut names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
        assert!(head.keeps_alive());
        assert_eq!(head.framing(false), Ok(Framing::Chunked));
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_lane() {
        let mut buffer = BytesMut::from(&b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n\r\nrest"[..]);
        let head = parse_head(&mut buffer).unwrap().unwrap();
        assert!(!head.keeps_alive());
        assert_eq!(&buffer[..], b"rest");
        let mut buffer = BytesMut::from(&b"HTTP/1.0 200 OK\r\n\r\n"[..]);
        assert!(!parse_head(&mut buffer).unwrap().unwrap().keeps_alive());
        let mut buffer = BytesMut::from(&b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n"[..]);
        assert!(parse_head(&mut buffer).unwrap().unwrap().keeps_alive());
        let mut buffer = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_head(&mut buffer).unwrap().is_none());
        assert!(matches!(
            parse_head(&mut BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..])),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn a_head_that_never_ends_is_refused_past_its_limit() {
        let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
        while wire.len() <= MAX_HEAD {
            wire.extend_from_slice(b"x-long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(
            parse_head(&mut BytesMut::from(&wire[..])),
            Err(HeadError::TooLarge | HeadError::Malformed(httparse::Error::TooManyHeaders))
        ));
        let mut long_line = b"HTTP/1.1 200 OK\r\nx-long: ".to_vec();
        long_line.resize(MAX_HEAD + 1, b'a');
        assert!(matches!(
            parse_head(&mut BytesMut::from(&long_line[..])),
            Err(HeadError::TooLarge)
        ));
    }

    /// Valid responses with bytes flipped, cut and spliced, and plain noise: the parser answers each
    /// with a head, "more bytes", or an error, and never panics or takes more than it was given.
    #[test]
    fn mangled_responses_never_panic() {
        let valid: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
            b"HTTP/1.0 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close, x-y\r\nContent-Length: 1, 1\r\n\r\nz",
        ];
        const NOISE: &[u8] = b"HTTP/1.\r\n :0123456789abcdef;ck";
        // xorshift: the same inputs on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut wire = valid[round % valid.len()].to_vec();
            match next() % 4 {
                0 => wire.truncate((next() % (wire.len() as u64 + 1)) as usize),
                1 => {
                    for _ in 0..=next() % 4 {
                        let at = (next() % wire.len() as u64) as usize;
                        wire[at] = next() as u8;
                    }
                }
                2 => {
                    wire = (0..next() % 96)
                        .map(|_| NOISE[(next() % NOISE.len() as u64) as usize])
                        .collect()
                }
                _ => wire.extend_from_slice(valid[(next() % 4) as usize]),
            }
            let length = wire.len();
            let mut buffer = BytesMut::from(&wire[..]);
            while let Ok(Some(head)) = parse_head(&mut buffer) {
                let Ok(Framing::Chunked) = head.framing(false) else {
                    continue;
                };
                let mut chunked = Chunked::Size;
                while let Ok(Some(_)) = chunked.decode(&mut buffer) {}
            }
            assert!(buffer.len() <= length);
        }
    }
}
