//! When a connection last moved a byte, for idle timeouts that count quiet time, not age: `[[stream]]`
//! forwarding, upgraded WebSockets and HTTP/2 client connections.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::Instant;

use crate::observed_io::{IoObserver, ObservedIo, Polled};

/// The time of the last [`Activity::touch`], kept in an atomic so IO wrappers can note it cheaply.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Notes that bytes moved now.
    pub fn touch(&self) {
        self.last_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once `idle` has passed with no [`Activity::touch`].
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// An IO that notes every byte read or written as activity (an upgraded WebSocket's client side, both
/// sides of a `[[stream]]`), and counts the bytes read from it.
pub type Touching<S> = ObservedIo<S, Touch>;

impl<S> Touching<S> {
    /// `inner`, noting its traffic in `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self::touching(inner, activity, None)
    }

    /// `inner`, noting its traffic in `activity` and adding the bytes read from it to `read_counter`.
    pub fn counting(inner: S, activity: Arc<Activity>, read_counter: Counter) -> Self {
        Self::touching(inner, activity, Some(read_counter))
    }

    fn touching(inner: S, activity: Arc<Activity>, read_counter: Option<Counter>) -> Self {
        let touch = Touch {
            activity,
            read_counter,
            bytes_read: 0,
        };
        ObservedIo::observing(inner, touch)
    }

    /// The bytes read from it so far.
    pub fn bytes_read(&self) -> u64 {
        self.observer().bytes_read
    }
}

/// What makes a [`Touching`]: the activity it notes, and its count of bytes read.
#[derive(Debug)]
pub struct Touch {
    activity: Arc<Activity>,
    /// Where the bytes read are also counted, for metrics.
    read_counter: Option<Counter>,
    bytes_read: u64,
}

impl IoObserver for Touch {
    fn poll_read<S: AsyncRead + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Polled {
        let before = buf.filled().len();
        let polled = Pin::new(io).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            self.bytes_read += read;
            if let Some(counter) = &self.read_counter {
                counter.inc_by(read);
            }
            self.activity.touch();
        }
        polled
    }

    fn written(&mut self, _cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn idle_waits_for_quiet_not_for_age() {
        let activity = Arc::new(Activity::default());
        let idle = Duration::from_millis(300);
        let watcher = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.idle_for(idle).await }
        });
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            activity.touch();
        }
        assert!(!watcher.is_finished(), "750 ms old, but never 300 ms quiet");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(watcher.is_finished());
    }
}
