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
//! A client that leaves that channel full for [`SLOW_READER`] gets the connection to itself (the lane
//! *detaches*): the lane takes no new requests, the requests written behind it go out again on another
//! lane (`GET` and `HEAD` may be repeated), and the connection closes once the slow body has ended. So
//! one client that stops reading holds up nobody else, and its body is still passed on as it reads.
//!
//! This file is the lane's I/O. What needs no socket lives apart: [`super::request_encoding`] writes
//! requests, [`super::response_head`] parses response heads, [`super::body_framing`] decides how a body
//! is delimited and decodes it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

use super::body_framing::{BodyDecoder, Framing, InputEnd};
pub use super::request_encoding::Head;
use super::response_head::parse_head;
use crate::balancer::InFlight;
use crate::body::BoxError;
use crate::lanes::{Lanes, Replies, Wire, KEEP_BUFFER};

/// The lanes of one HTTP module's nodes.
pub type HttpLanes = Lanes<HttpWire>;

/// Body frames a streamed response may have read ahead of the client.
const BODY_FRAMES_AHEAD: usize = 4;

/// How long a client may leave its streamed body's frames untaken before its lane detaches (see the
/// module's doc). Long enough that a busy but reading client is not taken for a slow one (the requests
/// behind would go out twice), short beside a client timeout.
pub const SLOW_READER: Duration = Duration::from_secs(1);

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

/// Whether a request may be pipelined: safe to send again, and without a body.
pub fn is_pipelinable(method: &Method, has_body: bool) -> bool {
    (method == Method::GET || method == Method::HEAD) && !has_body
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
        out.extend_from_slice(head.bytes());
        Ok(head.head_only())
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
                    Ok(Some(head)) if head.status() == StatusCode::SWITCHING_PROTOCOLS => {
                        return fail_oldest(replies, &"switched protocols without being asked to");
                    }
                    // Interim responses (`103 Early Hints`) are not passed on.
                    Ok(Some(head)) if head.status().is_informational() => continue,
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(error) => return fail_oldest(replies, &error),
                }
                if reading.buffer.is_empty() && replies.finished() {
                    return;
                }
                if reading.fill().await.is_err() {
                    return;
                }
            };
            let Some((head_only, answer)) = replies.next() else {
                return tracing::warn!(
                    node = replies.node(),
                    "upstream sent a response nobody asked for; connection closed"
                );
            };
            let framing = match head.framing(head_only) {
                Ok(framing) => framing,
                Err(error) => return drop(answer.send(Outcome::BadResponse(error.to_string()))),
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
                    // Taken off the line, so only this says the lane still owes it the rest of its body.
                    replies.replying(true);
                    let reusable = reading.stream(framing, &frames, replies).await;
                    replies.replying(false);
                    if !reusable {
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
fn fail_oldest(replies: &Replies<'_, HttpWire>, reason: &dyn std::fmt::Display) {
    tracing::warn!(
        node = replies.node(),
        %reason,
        "bad response on a pipelined connection; closed"
    );
    if let Some((_, answer)) = replies.next() {
        let _ = answer.send(Outcome::BadResponse(reason.to_string()));
    }
}

/// The read side of a lane's connection.
struct Reading<'a> {
    reader: &'a mut OwnedReadHalf,
    buffer: BytesMut,
    node: &'a str,
}

impl Reading<'_> {
    /// Reads more, or says how the connection ended.
    async fn fill(&mut self) -> Result<(), InputEnd> {
        if self.buffer.capacity() - self.buffer.len() < 4 * 1024 {
            self.buffer.reserve(16 * 1024);
        }
        match self.reader.read_buf(&mut self.buffer).await {
            Ok(0) => {
                tracing::debug!(node = self.node, "upstream closed a pipelined connection");
                Err(InputEnd::Closed)
            }
            Err(error) => {
                tracing::debug!(node = self.node, %error, "pipelined connection failed");
                Err(InputEnd::Failed(error.kind()))
            }
            Ok(_) => Ok(()),
        }
    }

    /// Passes a body on as it arrives; true if the connection may carry the next response.
    async fn stream(
        &mut self,
        framing: Framing,
        frames: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        replies: &Replies<'_, HttpWire>,
    ) -> bool {
        let mut body = BodyDecoder::new(framing);
        let mut detached = false;
        loop {
            match body.decode(&mut self.buffer) {
                Ok(Some(frame)) => {
                    if !self.pass_on(frame, frames, replies, &mut detached).await {
                        // The client went away mid-body; the rest of it is still on the connection.
                        return false;
                    }
                }
                Ok(None) if body.is_done() => {
                    if detached {
                        // What was written behind it goes out again; nobody reads its responses here.
                        replies.hand_back_unread();
                    }
                    return !detached;
                }
                Ok(None) => {
                    if let Err(end) = self.fill().await {
                        if let Err(error) = body.at_end_of_input(end) {
                            tracing::warn!(node = self.node, %error, "pipelined response cut short");
                            let _ = frames.send(Err(error.into())).await;
                        }
                        return false;
                    }
                }
                Err(error) => {
                    tracing::warn!(node = self.node, %error, "bad body on a pipelined connection");
                    let _ = frames.send(Err(error.into())).await;
                    return false;
                }
            }
        }
    }
}

impl Reading<'_> {
    /// Hands `frame` to the client's body; false if the client went away. While the client leaves it
    /// untaken, the lane detaches, and keeps handing back requests that were written on it meanwhile.
    async fn pass_on(
        &self,
        frame: Frame<Bytes>,
        frames: &mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        replies: &Replies<'_, HttpWire>,
        detached: &mut bool,
    ) -> bool {
        let room = frames.reserve();
        tokio::pin!(room);
        loop {
            match tokio::time::timeout(SLOW_READER, &mut room).await {
                Ok(Ok(permit)) => {
                    permit.send(Ok(frame));
                    return true;
                }
                Ok(Err(_)) => return false,
                Err(_) => {
                    if replies.detach() {
                        tracing::debug!(
                            node = self.node,
                            "a client reads a pipelined response slowly; its connection carries nothing more"
                        );
                    }
                    *detached = true;
                }
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
