//! `pipeline = N` on a socket module: length-line frames on [`Lanes`], in sequenced mode.
//!
//! Each lane opens with `_pipeline` (docs/PROTOCOL.md section 4.2). A backend that accepts answers every
//! request in the envelope `{"seq":S,"reply":R}`, in the order its replies complete; S is matched against
//! the requests waiting on the lane, so a reply reaches only the request it answers, and a slow one holds
//! up nobody. A backend that refuses is remembered ([`Lanes::pipelines`]) and gets one request at a time.
//!
//! A frame that is not an envelope, or a seq no waiting request has (a duplicate, one never sent), is a
//! protocol violation: the lane closes, its waiting requests get [`FrameOutcome::Violation`], the node is
//! reported ([`Lanes::when_broken`]).
//!
//! Only a request whose frame was never written may go on to another node: one refused by a connect
//! failure, or still queued when its lane closed.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use modproxy_sdk::pipeline::{accepts_pipelining, negotiation_request, Sequenced};
use modproxy_sdk::{FrameError, LengthLineCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use crate::lanes::{Lanes, Replies, Wire, KEEP_BUFFER};

/// The lanes of one socket module's nodes.
pub type Pipelines = Lanes<FrameWire>;

/// What became of a request handed to a lane.
#[derive(Debug)]
pub enum FrameOutcome {
    /// The backend's reply.
    Reply(Bytes),
    /// The backend broke the wire format where this request's reply should be.
    BadReply(FrameError),
    /// The backend broke the sequenced envelope's rules on this request's lane.
    Violation(String),
    /// The request may have been written, but its lane closed before a reply came.
    Closed,
    /// The request was never written: connecting failed (`Some`), or the lane closed first (`None`).
    Unsent(Option<io::Error>),
}

/// Length-line frames: a request's payload goes out as one frame, its reply comes back as one.
#[derive(Debug, Clone)]
pub struct FrameWire {
    codec: LengthLineCodec,
    /// The number of the last request written on this lane.
    seq: u64,
}

impl FrameWire {
    /// Frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameWire {
            codec: LengthLineCodec::new(max_frame),
            seq: 0,
        }
    }
}

impl Wire for FrameWire {
    type Request = Bytes;
    /// The request's number on its lane.
    type Expect = u64;
    type Outcome = FrameOutcome;

    fn encode(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<u64, FrameOutcome> {
        // A payload too long for a length line (10 digits) cannot be framed; the gateway refuses one (413)
        // before it gets here.
        self.codec.encode(&payload, out).map_err(FrameOutcome::BadReply)?;
        self.seq += 1;
        Ok(self.seq)
    }

    fn unsent(error: Option<io::Error>) -> FrameOutcome {
        FrameOutcome::Unsent(error)
    }

    fn closed() -> FrameOutcome {
        FrameOutcome::Closed
    }

    async fn handshake(&mut self, stream: &mut TcpStream, depth: usize, within: Duration) -> bool {
        let mut codec = self.codec.clone();
        let asked = async {
            let mut out = BytesMut::new();
            codec.encode(&negotiation_request(depth)[..], &mut out).ok()?;
            stream.write_all(&out).await.ok()?;
            let mut buffer = BytesMut::with_capacity(64);
            loop {
                if let Some(answer) = codec.decode(&mut buffer).ok()? {
                    // Nothing may follow the answer before a request is sent.
                    return Some(buffer.is_empty() && accepts_pipelining(&answer));
                }
                if stream.read_buf(&mut buffer).await.ok()? == 0 {
                    return None;
                }
            }
        };
        matches!(tokio::time::timeout(within, asked).await, Ok(Some(true)))
    }

    async fn read_replies(&mut self, reader: &mut OwnedReadHalf, replies: &Replies<'_, Self>) {
        let mut buffer = BytesMut::with_capacity(8 * 1024);
        loop {
            match reader.read_buf(&mut buffer).await {
                Ok(0) => return tracing::debug!(node = replies.node(), "backend closed a pipelined connection"),
                Err(error) => return tracing::debug!(node = replies.node(), %error, "pipelined connection failed"),
                Ok(_) => {}
            }
            loop {
                let frame = match self.codec.decode(&mut buffer) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(node = replies.node(), %error, "backend sent a bad frame on a pipelined connection");
                        let reason = error.to_string();
                        return replies
                            .broken(|| FrameOutcome::BadReply(FrameError::Io(io::Error::other(reason.clone()))));
                    }
                };
                let Some(sealed) = Sequenced::open(&frame) else {
                    return violation(
                        replies,
                        "a reply that is not a {\"seq\":S,\"reply\":R} envelope".to_owned(),
                    );
                };
                let Some(waiter) = replies.take(|&seq| seq == sealed.seq) else {
                    let seq = sealed.seq;
                    return violation(replies, format!("a reply to seq {seq}, which no waiting request has"));
                };
                // R without the envelope: a slice of the frame, not a copy.
                let start = frame.len() - sealed.reply.len() - 1;
                let _ = waiter.send(FrameOutcome::Reply(frame.slice(start..frame.len() - 1)));
            }
            if replies.finished() {
                return;
            }
            if buffer.is_empty() && buffer.capacity() > KEEP_BUFFER {
                buffer = BytesMut::with_capacity(8 * 1024);
            }
        }
    }
}

/// Closes the lane on a broken envelope rule: logged, its waiting requests failed, the node reported.
fn violation(replies: &Replies<'_, FrameWire>, what: String) {
    tracing::error!(
        node = replies.node(),
        "pipelining violation: the backend sent {what}; connection closed"
    );
    replies.broken(|| FrameOutcome::Violation(what.clone()));
}
