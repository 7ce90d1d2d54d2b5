//! How long and how much of a client's request body the proxy waits for and holds: `[server] max_body`,
//! `body_timeout`, `body_chunk_timeout` and the shared [`BodyBudget`] (`body_memory`).
//!
//! [`TimedBody`] bounds the time of any streamed body (a client that stops sending is cut off);
//! [`read_whole`] reads one into memory under all four limits, for the roles that need a body whole.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::body_budget::{BodyBudget, BodyPermit, OverBudget};

/// The first bytes taken from the budget for a body of unknown length; it grows by doubling.
const FIRST_STEP: u64 = 16 * 1024;

/// The limits on one request body.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Most bytes in one body (`max_body`).
    pub max_body: u64,
    /// Longest wait for the next bytes once a body has begun (`body_chunk_timeout`).
    pub chunk_timeout: Duration,
    /// Longest time for a whole body (`body_timeout`).
    pub total_timeout: Duration,
    /// The bytes all bodies held in memory share (`body_memory`).
    pub budget: Arc<BodyBudget>,
}

/// A client that stopped sending its body.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Stalled {
    /// No byte for `body_chunk_timeout`.
    #[error("the client sent no body bytes for {0} s (server.body_chunk_timeout)")]
    Chunk(f64),
    /// The whole body took longer than `body_timeout`.
    #[error("the client did not send its whole body within {0} s (server.body_timeout)")]
    Total(f64),
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than `max_body` (declared or sent).
    #[error("request body is larger than the limit of {0} bytes (server.max_body)")]
    TooLarge(u64),
    /// No room in `body_memory` within its wait.
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// The client stopped sending.
    #[error(transparent)]
    Stalled(Stalled),
    /// The body broke off (the client reset the stream or closed the connection).
    #[error("could not read the request body: {0}")]
    Unreadable(BoxError),
}

impl BodyError {
    /// Sorts an error a [`TimedBody`] (or a body around one) ended with.
    pub fn from_box(error: BoxError) -> Self {
        match error.downcast::<Stalled>() {
            Ok(stalled) => BodyError::Stalled(*stalled),
            Err(error) => BodyError::Unreadable(error),
        }
    }
}

/// A body that ends with a [`Stalled`] error when the client pauses longer than the chunk timeout or
/// the whole body outlasts the total. Only time spent waiting on the client counts toward the pause:
/// while the reader does not ask (an upstream slow to take the body) the clock is not the client's.
pub struct TimedBody<B> {
    inner: B,
    chunk: Duration,
    total: Duration,
    deadline: Instant,
    /// Made the first time the client keeps the reader waiting: a body that is in at once (most) never
    /// arms a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<B> TimedBody<B> {
    /// `inner`, to be received within `total` with no pause over `chunk`.
    pub fn new(inner: B, chunk: Duration, total: Duration) -> Self {
        let deadline = Instant::now() + total;
        TimedBody {
            inner,
            chunk,
            total,
            deadline,
            sleep: None,
            armed: false,
        }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let now = Instant::now();
        let wake_at = (now + this.chunk).min(this.deadline);
        let sleep = match &mut this.sleep {
            Some(sleep) => {
                if !this.armed {
                    sleep.as_mut().reset(wake_at);
                }
                sleep
            }
            none => none.insert(Box::pin(tokio::time::sleep_until(wake_at))),
        };
        this.armed = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let stalled = if now >= this.deadline {
                    Stalled::Total(this.total.as_secs_f64())
                } else {
                    Stalled::Chunk(this.chunk.as_secs_f64())
                };
                Poll::Ready(Some(Err(Box::new(stalled))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads `body` whole under `limits`: `declared` (its `Content-Length`) over `max_body` is refused before
/// a byte is read. A declared length is taken from the budget at once, so that bodies never hold part of
/// what they need while waiting for the rest (many such could fill the budget and all wait); a body of
/// unknown length takes its bytes as they arrive. The permit goes with the bytes: keep it while they live.
pub async fn read_whole<B>(
    body: B,
    declared: Option<u64>,
    limits: &BodyLimits,
) -> Result<(Bytes, BodyPermit), BodyError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let max = limits.max_body;
    if declared.is_some_and(|len| len > max) {
        return Err(BodyError::TooLarge(max));
    }
    // What the body will hold at most: its declared length, else `max_body`.
    let ceiling = declared.unwrap_or(max);
    let first = declared.unwrap_or(FIRST_STEP.min(max));
    let mut permit = limits.budget.take(first).await?;
    let mut buffer = BytesMut::with_capacity(first as usize);
    let mut body = TimedBody::new(body, limits.chunk_timeout, limits.total_timeout);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::from_box)?.into_data() else {
            continue;
        };
        let needed = (buffer.len() + data.len()) as u64;
        if needed > max {
            return Err(BodyError::TooLarge(max));
        }
        if needed > buffer.capacity() as u64 {
            // Doubling, as a growing buffer would, but within what the body may still become.
            let capacity = needed.max(2 * buffer.capacity() as u64).min(ceiling.max(needed));
            let more = capacity.saturating_sub(permit.bytes());
            limits.budget.grow(&mut permit, more).await?;
            buffer.reserve(capacity as usize - buffer.len());
        }
        buffer.extend_from_slice(&data);
    }
    Ok((buffer.freeze(), permit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn limits(budget: u64) -> BodyLimits {
        BodyLimits {
            max_body: 1000,
            chunk_timeout: Duration::from_millis(100),
            total_timeout: Duration::from_millis(400),
            budget: Arc::new(BodyBudget::new(budget, Duration::from_millis(50))),
        }
    }

    /// A body that sends `chunks` pieces of `size` bytes, `gap` apart.
    fn trickle(chunks: usize, size: usize, gap: Duration) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let stream = futures_util::stream::unfold(0, move |sent| async move {
            if sent == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; size]))), sent + 1))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_and_its_bytes_come_back_after() {
        let limits = limits(10_000);
        let (bytes, permit) = read_whole(Full::new(Bytes::from_static(b"{\"a\":1}")), Some(7), &limits)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{\"a\":1}");
        assert!(permit.bytes() >= 7);
        drop(permit);
        assert_eq!(limits.budget.available(), 10_000);
    }

    #[tokio::test]
    async fn too_large_declared_or_sent_is_refused() {
        let limits = limits(10_000);
        let declared = read_whole(Full::new(Bytes::new()), Some(1001), &limits).await;
        assert!(matches!(declared, Err(BodyError::TooLarge(1000))));
        let sent = read_whole(trickle(11, 100, Duration::ZERO), None, &limits).await;
        assert!(matches!(sent, Err(BodyError::TooLarge(1000))));
        assert_eq!(limits.budget.available(), 10_000);
    }

    #[tokio::test]
    async fn bodies_over_the_budget_are_refused_and_hold_nothing() {
        let limits = limits(600);
        let (_first, held) = read_whole(trickle(5, 100, Duration::ZERO), Some(500), &limits)
            .await
            .unwrap();
        let second = read_whole(trickle(5, 100, Duration::ZERO), Some(500), &limits).await;
        assert!(matches!(second, Err(BodyError::OverBudget(_))), "{second:?}");
        assert_eq!(limits.budget.available(), 600 - held.bytes());
    }

    #[tokio::test]
    async fn a_client_that_pauses_is_cut_off() {
        let limits = limits(10_000);
        let paused = read_whole(trickle(2, 10, Duration::from_millis(250)), None, &limits).await;
        assert!(
            matches!(paused, Err(BodyError::Stalled(Stalled::Chunk(_)))),
            "{paused:?}"
        );
        assert_eq!(limits.budget.available(), 10_000);
    }

    #[tokio::test]
    async fn a_trickle_is_cut_off_at_the_total() {
        let limits = limits(10_000);
        let trickled = read_whole(trickle(20, 10, Duration::from_millis(60)), None, &limits).await;
        assert!(
            matches!(trickled, Err(BodyError::Stalled(Stalled::Total(_)))),
            "{trickled:?}"
        );
        let steady = read_whole(trickle(5, 10, Duration::from_millis(60)), None, &limits).await;
        assert!(
            steady.is_ok(),
            "pauses under the chunk timeout and a total under the bound pass"
        );
    }
}
