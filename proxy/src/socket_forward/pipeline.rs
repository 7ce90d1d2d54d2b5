//! `pipeline = N` on a socket module: length-line frames on [`Lanes`].
//!
//! The backend answers a connection's frames in order (the SDKs do: `modproxy_sdk::server`), so each reply
//! frame belongs to the oldest request still waiting on its lane.
//!
//! Only a request whose frame was never written may go on to another node: one refused by a connect
//! failure, or still queued when its lane closed.

use std::io;

use bytes::{Bytes, BytesMut};
use modproxy_sdk::{FrameError, LengthLineCodec};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
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
    /// The request may have been written, but its lane closed before a reply came.
    Closed,
    /// The request was never written: connecting failed (`Some`), or the lane closed first (`None`).
    Unsent(Option<io::Error>),
}

/// Length-line frames: a request's payload goes out as one frame, its reply comes back as one.
#[derive(Debug, Clone)]
pub struct FrameWire {
    codec: LengthLineCodec,
}

impl FrameWire {
    /// Frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameWire {
            codec: LengthLineCodec::new(max_frame),
        }
    }
}

impl Wire for FrameWire {
    type Request = Bytes;
    type Expect = ();
    type Outcome = FrameOutcome;

    fn encode(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<(), FrameOutcome> {
        // A payload too long for a length line (10 digits) cannot be framed; the gateway refuses one (413)
        // before it gets here.
        self.codec.encode(&payload, out).map_err(FrameOutcome::BadReply)
    }

    fn unsent(error: Option<io::Error>) -> FrameOutcome {
        FrameOutcome::Unsent(error)
    }

    fn closed() -> FrameOutcome {
        FrameOutcome::Closed
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
                let outcome = match self.codec.decode(&mut buffer) {
                    Ok(Some(reply)) => FrameOutcome::Reply(reply),
                    Ok(None) => break,
                    Err(error) => FrameOutcome::BadReply(error),
                };
                let Some(((), waiter)) = replies.next() else {
                    return tracing::warn!(
                        node = replies.node(),
                        "backend sent a reply nobody asked for; connection closed"
                    );
                };
                let broken = matches!(outcome, FrameOutcome::BadReply(_));
                let _ = waiter.send(outcome);
                if broken {
                    return;
                }
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
