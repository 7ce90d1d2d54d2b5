//! A request body that can move on to another node as long as nothing of it was sent.
//!
//! hyper's `send_request` consumes the request, so after a connect failure the body would be gone. The
//! body therefore sits in a shared slot; each attempt gets an [`UnsentBody`] that takes it out on the
//! first poll, which only happens once a connection is up and the request head written. If the slot
//! is still full after a failed attempt, not one byte of the body left the proxy.
//!
//! The slot also notes when the last piece of body went out, so the wait for the response can be
//! timed from then: a long upload is not a slow upstream.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};

/// The body shared by the attempts at one request.
pub struct BodySlot<B>(Arc<Shared<B>>);

struct Shared<B> {
    body: Mutex<Option<B>>,
    created: Instant,
    /// Microseconds after `created` when the last frame was handed to the upstream connection.
    last_sent_us: AtomicU64,
}

impl<B> BodySlot<B> {
    /// Holds `body` until an attempt sends it.
    pub fn new(body: B) -> Self {
        BodySlot(Arc::new(Shared {
            body: Mutex::new(Some(body)),
            created: Instant::now(),
            last_sent_us: AtomicU64::new(0),
        }))
    }

    /// The body for one attempt.
    pub fn attempt(&self) -> UnsentBody<B> {
        UnsentBody {
            slot: Arc::clone(&self.0),
            taken: None,
        }
    }

    /// Whether some attempt has started sending the body.
    pub fn is_taken(&self) -> bool {
        lock(&self.0.body).is_none()
    }

    /// When the last frame of the body was sent (the slot's creation if none was).
    pub fn last_sent(&self) -> Instant {
        self.0.created + Duration::from_micros(self.0.last_sent_us.load(Ordering::Relaxed))
    }
}

fn lock<B>(slot: &Mutex<Option<B>>) -> MutexGuard<'_, Option<B>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One attempt's view of the request body.
pub struct UnsentBody<B> {
    slot: Arc<Shared<B>>,
    taken: Option<B>,
}

impl<B: Body + Unpin> Body for UnsentBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        if this.taken.is_none() {
            this.taken = lock(&this.slot.body).take();
        }
        match &mut this.taken {
            Some(body) => {
                let polled = Pin::new(body).poll_frame(cx);
                if let Poll::Ready(Some(Ok(_))) = &polled {
                    let us = this.slot.created.elapsed().as_micros().try_into().unwrap_or(u64::MAX);
                    this.slot.last_sent_us.store(us, Ordering::Relaxed);
                }
                polled
            }
            // Another attempt sent it; this one has nothing (cannot happen: attempts are sequential).
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.taken {
            Some(body) => body.is_end_stream(),
            None => lock(&self.slot.body).as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.taken {
            Some(body) => body.size_hint(),
            None => lock(&self.slot.body)
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn the_body_survives_an_attempt_that_never_read_it() {
        let slot = BodySlot::new(Full::new(Bytes::from_static(b"hello")));
        let first = slot.attempt();
        assert_eq!(first.size_hint().exact(), Some(5));
        drop(first);
        assert!(!slot.is_taken());
        let before = slot.last_sent();
        let second = slot.attempt();
        assert_eq!(second.collect().await.unwrap().to_bytes(), "hello");
        assert!(slot.is_taken());
        assert!(slot.last_sent() >= before);
        let third = slot.attempt();
        assert!(third.is_end_stream());
    }
}
