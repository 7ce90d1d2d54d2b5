//! `pipeline = N` on an HTTP module: HTTP/1.1 pipelining on [`Lanes`].
//!
//! Only requests that are safe to send again go on a lane: `GET` and `HEAD` without a body (see
//! [`is_pipelinable`]). Everything else takes a pooled connection of its own. An upstream answers a
//! connection's requests in order (RFC 9112, section 9.3.2), so each response belongs to the oldest
//! request still waiting. A lane closes after a response that says `Connection: close`, after a body
//! that ends with the connection, and on anything it cannot parse. The requests still waiting on it are
//! sent again: freely when the upstream said it would read no more, twice at most otherwise, since it
//! may have acted on them (`GET` and `HEAD` may be repeated, RFC 9110, section 9.2.2).
//!
//! A response whose body is already in the read buffer (the usual small one) is handed over whole;
//! a longer one is streamed through a small channel, and the lane reads nothing else until it has ended.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::headers;
use crate::balancer::InFlight;
use crate::body::BoxError;
use crate::lanes::{Lanes, Replies, Wire, KEEP_BUFFER};

/// The lanes of one HTTP module's nodes.
pub type HttpLanes = Lanes<HttpWire>;

/// A response head larger than this is refused (hyper's client allows about 400 KB; nginx 4–8 KB).
const MAX_HEAD: usize = 64 * 1024;

/// Header lines a response head may have.
const MAX_HEADERS: usize = 100;

/// Bytes a chunk-size line or a trailer section may take.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// Body frames a streamed response may have read ahead of the client.
const BODY_FRAMES_AHEAD: usize = 4;

/// What became of a request handed to a lane.
#[derive(Debug)]
pub enum Outcome {
    /// The upstream's response.
    Response(Response<ResponseBody>),
    /// The upstream sent something that is not an HTTP/1.1 response where this request's should be.
    BadResponse(String),
    /// The request may have been written, but its lane closed before its response came.
    Closed,
    /// The upstream never took the request: connecting failed (`Some`); or (`None`) its lane closed
    /// before writing it, or after a response that said the upstream would read nothing more.
    Unsent(Option<io::Error>),
}

/// A request ready for the wire.
#[derive(Debug)]
pub struct Head {
    /// A `Vec`, not `Bytes`: it is only copied into its lane's write, and freezing one allocates.
    bytes: Vec<u8>,
    head_only: bool,
}

/// Whether a request may be pipelined: safe to send again, and without a body.
pub fn is_pipelinable(method: &Method, has_body: bool) -> bool {
    (method == Method::GET || method == Method::HEAD) && !has_body
}

impl Head {
    /// The request line and header section of a bodyless request to `target` (origin form), with `host`
    /// in place of any `Host` among `headers`.
    pub fn new(method: &Method, target: &str, host: &HeaderValue, headers: &HeaderMap) -> Head {
        let mut bytes = Vec::with_capacity(256);
        bytes.put_slice(method.as_str().as_bytes());
        bytes.put_u8(b' ');
        bytes.put_slice(target.as_bytes());
        bytes.put_slice(b" HTTP/1.1\r\nhost: ");
        bytes.put_slice(host.as_bytes());
        bytes.put_slice(b"\r\n");
        for (name, value) in headers.iter().filter(|(name, _)| *name != header::HOST) {
            bytes.put_slice(name.as_str().as_bytes());
            bytes.put_slice(b": ");
            bytes.put_slice(value.as_bytes());
            bytes.put_slice(b"\r\n");
        }
        bytes.put_slice(b"\r\n");
        Head {
            bytes,
            head_only: method == Method::HEAD,
        }
    }
}

/// HTTP/1.1: request heads go out as they are; responses are read in order.
#[derive(Debug, Clone, Default)]
pub struct HttpWire;

impl Wire for HttpWire {
    type Request = Head;
    /// Whether the request was `HEAD`, whose response has no body whatever its headers say.
    type Expect = bool;
    type Outcome = Outcome;

    fn encode(&mut self, head: Head, out: &mut BytesMut) -> Result<bool, Outcome> {
        out.extend_from_slice(&head.bytes);
        Ok(head.head_only)
    }

    fn unsent(error: Option<io::Error>) -> Outcome {
        Outcome::Unsent(error)
    }

    fn closed() -> Outcome {
        Outcome::Closed
    }

    async fn read_replies(&mut self, reader: &mut OwnedReadHalf, replies: &Replies<'_, Self>) {
        let mut reading = Reading {
            reader,
            buffer: BytesMut::with_capacity(8 * 1024),
            node: replies.node(),
        };
        loop {
            let head = loop {
                match parse_head(&mut reading.buffer) {
                    Ok(Some(head)) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                        return fail_oldest(replies, "switched protocols without being asked to".into());
                    }
                    // Interim responses (`103 Early Hints`) are not passed on.
                    Ok(Some(head)) if head.status.is_informational() => continue,
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(reason) => return fail_oldest(replies, reason),
                }
                if reading.buffer.is_empty() && replies.finished() {
                    return;
                }
                if !reading.fill().await {
                    return;
                }
            };
            let Some((head_only, answer)) = replies.next() else {
                return tracing::warn!(
                    node = replies.node(),
                    "upstream sent a response nobody asked for; connection closed"
                );
            };
            let framing = match Framing::of(&head, head_only) {
                Ok(framing) => framing,
                Err(reason) => return drop(answer.send(Outcome::BadResponse(reason))),
            };
            let keep_alive = head.keeps_alive() && !matches!(framing, Framing::UntilClose);
            match framing {
                Framing::Empty => drop(answer.send(Outcome::Response(head.into_response(ResponseBody::full(None))))),
                Framing::Length(length) if length <= reading.buffer.len() as u64 => {
                    let body = reading.buffer.split_to(length as usize).freeze();
                    let response = head.into_response(ResponseBody::full(Some(body)));
                    // Dropped if its request gave up: the body was read off the connection all the same.
                    drop(answer.send(Outcome::Response(response)));
                }
                framing => {
                    let (frames, receiver) = mpsc::channel(BODY_FRAMES_AHEAD);
                    let response = head.into_response(ResponseBody::streamed(receiver));
                    if answer.send(Outcome::Response(response)).is_err() {
                        // Nobody will read this body, and the rest of it is still on the connection.
                        return;
                    }
                    if !reading.stream(framing, &frames).await {
                        return;
                    }
                }
            }
            if !keep_alive {
                // The upstream reads nothing more from this connection (RFC 9112, section 9.6).
                replies.hand_back_unread();
                return tracing::debug!(node = replies.node(), "upstream closes this pipelined connection");
            }
            if reading.buffer.is_empty() && reading.buffer.capacity() > KEEP_BUFFER {
                reading.buffer = BytesMut::with_capacity(8 * 1024);
            }
        }
    }
}

/// Answers the oldest waiting request with a bad response; the lane then closes.
fn fail_oldest(replies: &Replies<'_, HttpWire>, reason: String) {
    tracing::warn!(
        node = replies.node(),
        reason,
        "bad response on a pipelined connection; closed"
    );
    if let Some((_, answer)) = replies.next() {
        let _ = answer.send(Outcome::BadResponse(reason));
    }
}

/// The read side of a lane's connection.
struct Reading<'a> {
    reader: &'a mut OwnedReadHalf,
    buffer: BytesMut,
    node: &'a str,
}

impl Reading<'_> {
    /// Reads more; false once the connection has ended or failed.
    async fn fill(&mut self) -> bool {
        if self.buffer.capacity() - self.buffer.len() < 4 * 1024 {
            self.buffer.reserve(16 * 1024);
        }
        match self.reader.read_buf(&mut self.buffer).await {
            Ok(0) => {
                tracing::debug!(node = self.node, "upstream closed a pipelined connection");
                false
            }
            Err(error) => {
                tracing::debug!(node = self.node, %error, "pipelined connection failed");
                false
            }
            Ok(_) => true,
        }
    }

    /// Passes a body on as it arrives; true if the connection may carry the next response.
    async fn stream(&mut self, framing: Framing, frames: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>) -> bool {
        let mut body = BodyDecoder::new(framing);
        loop {
            match body.decode(&mut self.buffer) {
                Ok(Some(frame)) => {
                    if frames.send(Ok(frame)).await.is_err() {
                        // The client went away mid-body; the rest of it is still on the connection.
                        return false;
                    }
                }
                Ok(None) if body.is_done() => return true,
                Ok(None) => {
                    if !self.fill().await {
                        // A body delimited by the close has simply ended.
                        if !matches!(body, BodyDecoder::UntilClose) {
                            let _ = frames.send(Err("upstream closed the connection mid-body".into())).await;
                        }
                        return false;
                    }
                }
                Err(reason) => {
                    let _ = frames.send(Err(reason.clone().into())).await;
                    tracing::warn!(node = self.node, reason, "bad body on a pipelined connection");
                    return false;
                }
            }
        }
    }
}

/// A response's status line and headers.
struct ResponseHead {
    status: StatusCode,
    version: Version,
    /// The end-to-end headers, as the client gets them: the hop-by-hop ones are left out as they are read
    /// (see [`headers::strip_hop_by_hop`]).
    headers: HeaderMap,
    /// The last `Transfer-Encoding` line, which frames the body.
    transfer_encoding: Option<HeaderValue>,
    /// What `Connection` says of this connection.
    close: bool,
    keep_alive: bool,
}

impl ResponseHead {
    /// Whether the upstream keeps the connection open after this response.
    fn keeps_alive(&self) -> bool {
        !self.close && (self.version == Version::HTTP_11 || self.keep_alive)
    }

    fn into_response(self, body: ResponseBody) -> Response<ResponseBody> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Takes one response head off the front of `buffer`, if it is all there.
fn parse_head(buffer: &mut BytesMut) -> Result<Option<ResponseHead>, String> {
    if buffer.is_empty() {
        return Ok(None);
    }
    // Uninitialised: a hundred empty slots cost more to fill than a usual head costs to parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let length =
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buffer, &mut slots) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) if buffer.len() > MAX_HEAD => {
                return Err(format!("response head is larger than {MAX_HEAD} bytes"));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(error) => return Err(format!("malformed response head: {error}")),
        };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("response has no valid status code")?;
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
        lines.push((header_name(line.name)?, offset..offset + line.value.len()));
    }
    let bytes = buffer.split_to(length).freeze();
    let mut head = ResponseHead {
        status,
        version,
        headers: HeaderMap::with_capacity(lines.len()),
        transfer_encoding: None,
        close: false,
        keep_alive: false,
    };
    let mut connection = HeaderMap::new();
    for (name, value) in lines {
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(value)).map_err(|_| format!("bad value in header {name}"))?;
        if name == header::CONNECTION {
            connection.append(name, value);
        } else if name == header::TRANSFER_ENCODING {
            head.transfer_encoding = Some(value);
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

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))
}

/// Trailer lines as headers.
fn header_map(lines: &[httparse::Header<'_>]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let name = header_name(line.name)?;
        let value = HeaderValue::from_bytes(line.value).map_err(|_| format!("bad value in header {name}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// How a response's body is delimited (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

impl Framing {
    fn of(head: &ResponseHead, head_only: bool) -> Result<Framing, String> {
        if head_only || head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
            return Ok(Framing::Empty);
        }
        if let Some(last) = &head.transfer_encoding {
            let chunked = last
                .to_str()
                .ok()
                .and_then(|codings| codings.rsplit(',').next())
                .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
            return Ok(if chunked { Framing::Chunked } else { Framing::UntilClose });
        }
        let mut length = None;
        for value in head.headers.get_all(header::CONTENT_LENGTH) {
            for item in value.to_str().map_err(|_| "bad Content-Length")?.split(',') {
                let item = item.trim();
                let parsed = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| item.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| format!("bad Content-Length {item:?}"))?;
                if length.is_some_and(|seen| seen != parsed) {
                    return Err("conflicting Content-Length values".into());
                }
                length = Some(parsed);
            }
        }
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }
}

/// Where a streamed body's decoding stands.
#[derive(Debug)]
enum BodyDecoder {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

impl BodyDecoder {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyDecoder::Length(0),
            Framing::Length(length) => BodyDecoder::Length(length),
            Framing::Chunked => BodyDecoder::Chunked(Chunked::Size),
            Framing::UntilClose => BodyDecoder::UntilClose,
        }
    }

    /// The next frame from `buffer`: `None` when more bytes are needed, or once done.
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame<Bytes>>, String> {
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
    fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Length(0) | BodyDecoder::Chunked(Chunked::Done))
    }
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunked {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// The next frame from `buffer`: `None` when more bytes are needed, or once done.
    fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame<Bytes>>, String> {
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
                        return Err("chunk size line too long".into());
                    }
                    Ok(httparse::Status::Partial) => return Ok(None),
                    Err(_) => return Err("malformed chunk size line".into()),
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
                        return Err("chunk data not followed by CRLF".into());
                    }
                    buffer.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let mut slots = [httparse::EMPTY_HEADER; 32];
                    match httparse::parse_headers(buffer, &mut slots) {
                        Ok(httparse::Status::Complete((length, lines))) => {
                            let trailers = header_map(lines)?;
                            buffer.advance(length);
                            *self = Chunked::Done;
                            if !trailers.is_empty() {
                                return Ok(Some(Frame::trailers(trailers)));
                            }
                        }
                        Ok(httparse::Status::Partial) if buffer.len() > MAX_CHUNK_LINE => {
                            return Err("trailer section too long".into());
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err("malformed trailer section".into()),
                    }
                }
                Chunked::Done => return Ok(None),
            }
        }
    }
}

/// A pipelined response's body: whole, or streamed from its lane.
#[derive(Debug)]
pub struct ResponseBody {
    kind: BodyKind,
    /// The node's in-flight count, held until the body ends or is dropped.
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
enum BodyKind {
    Full(Option<Bytes>),
    Streamed(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>),
}

impl ResponseBody {
    fn full(bytes: Option<Bytes>) -> Self {
        ResponseBody {
            kind: BodyKind::Full(bytes.filter(|bytes| !bytes.is_empty())),
            in_flight: None,
        }
    }

    fn streamed(frames: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>) -> Self {
        ResponseBody {
            kind: BodyKind::Streamed(frames),
            in_flight: None,
        }
    }

    /// The body, holding `in_flight` until it ends.
    pub fn holding(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            BodyKind::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            BodyKind::Streamed(frames) => frames.poll_recv(cx),
        };
        if matches!(polled, Poll::Ready(None)) {
            this.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, BodyKind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64)),
            BodyKind::Streamed(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(mut wire: BytesMut) -> Result<(Vec<u8>, Option<HeaderMap>), String> {
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
        assert!(chunks(BytesMut::from(&b"zz\r\n"[..])).is_err());
        assert!(chunks(BytesMut::from(&b"2\r\nabXX0\r\n\r\n"[..])).is_err());
    }

    /// The framing of the response whose header lines are `lines`.
    fn framing(lines: &str, head_only: bool) -> Result<String, String> {
        let mut buffer = BytesMut::from(format!("HTTP/1.1 200 OK\r\n{lines}\r\n").as_str());
        let head = parse_head(&mut buffer)?.expect("a whole head");
        Framing::of(&head, head_only).map(|framing| format!("{framing:?}"))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(framing("content-length: 5\r\n", false).unwrap(), "Length(5)");
        assert_eq!(framing("content-length: 5\r\n", true).unwrap(), "Empty");
        let both = "content-length: 5\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n";
        assert_eq!(framing(both, false).unwrap(), "Chunked");
        assert_eq!(
            framing("transfer-encoding: chunked, gzip\r\n", false).unwrap(),
            "UntilClose"
        );
        assert_eq!(framing("", false).unwrap(), "UntilClose");
        assert_eq!(framing("content-length: 5, 5\r\n", false).unwrap(), "Length(5)");
        assert!(framing("content-length: 5, 6\r\n", false).is_err());
        assert!(framing("content-length: +5\r\n", false).is_err());
        let mut not_modified = BytesMut::from("HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n");
        let head = parse_head(&mut not_modified).unwrap().unwrap();
        assert_eq!(format!("{:?}", Framing::of(&head, false)), "Ok(Empty)");
    }

    #[test]
    fn hop_by_hop_headers_are_left_out_as_they_are_read() {
        let mut buffer = BytesMut::from(concat!(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n",
            "Transfer-Encoding: chunked\r\nProxy-Thing: 2\r\nContent-Type: text/plain\r\nX-Kept: 3\r\n\r\n"
        ));
        let head = parse_head(&mut buffer).unwrap().unwrap();
        let mut names: Vec<&str> = head.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-kept"]);
        assert!(head.keeps_alive());
        assert_eq!(format!("{:?}", Framing::of(&head, false)), "Ok(Chunked)");
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
                let Ok(Framing::Chunked) = Framing::of(&head, false) else {
                    continue;
                };
                let mut chunked = Chunked::Size;
                while let Ok(Some(_)) = chunked.decode(&mut buffer) {}
            }
            assert!(buffer.len() <= length);
        }
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
        assert!(parse_head(&mut BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..])).is_err());
    }
}
