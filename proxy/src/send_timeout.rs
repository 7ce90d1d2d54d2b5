//! `[server] send_timeout`: a client that stops reading is cut off. A write to it that stays pending (its
//! receive window and our send buffer full) for the whole bound fails with `TimedOut`, which ends the
//! connection whatever is being written: a response, an HTTP/2 frame, a raw-frame reply, or a WebSocket's
//! bytes (an upgraded connection keeps the IO it was upgraded from).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::observed_io::{IoObserver, ObservedIo, Polled};

/// An IO whose writes may stay pending for at most a limit.
pub type SendTimeout<S> = ObservedIo<S, SendBound>;

impl<S> SendTimeout<S> {
    /// `inner`, whose writes may not wait longer than `limit`.
    pub fn new(inner: S, limit: Duration) -> Self {
        ObservedIo::observing(
            inner,
            SendBound {
                limit,
                stalled: None,
                armed: false,
            },
        )
    }
}

/// What makes a [`SendTimeout`]: the bound, and the timer of the write pending now.
#[derive(Debug)]
pub struct SendBound {
    limit: Duration,
    /// Armed while a write is pending; made on the first one only.
    stalled: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl SendBound {
    /// Passes a write's readiness through, failing it once it has been pending for `limit`.
    fn bound<T>(&mut self, cx: &mut Context<'_>, written: Polled<T>) -> Polled<T> {
        if written.is_ready() {
            self.armed = false;
            return written;
        }
        let deadline = Instant::now() + self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            self.armed = true;
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s (server.send_timeout)",
                    self.limit.as_secs_f64()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Writes, flushes and shutdowns are all bounded; reads pass through.
impl IoObserver for SendBound {
    fn written(&mut self, cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
        self.bound(cx, written)
    }

    fn flushed(&mut self, cx: &mut Context<'_>, flushed: Polled) -> Polled {
        self.bound(cx, flushed)
    }

    fn shut_down(&mut self, cx: &mut Context<'_>, shut: Polled) -> Polled {
        self.bound(cx, shut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_write_out() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut near = SendTimeout::new(near, Duration::from_millis(200));
        let started = Instant::now();
        let error = near.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (near, mut far) = tokio::io::duplex(1024);
        let mut near = SendTimeout::new(near, Duration::from_secs(1));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let mut total = 0;
            // 16 KiB over about 1.6 s: longer than the bound in all, but never stalled anywhere near it.
            while total < 16 * 1024 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        near.write_all(&[0u8; 16 * 1024]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }
}
