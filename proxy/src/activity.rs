//! When a connection last moved a byte, for idle timeouts that count quiet time, not age: `[[stream]]`
//! forwarding and HTTP/2 client connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
