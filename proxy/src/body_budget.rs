//! `[server] body_memory`: one budget of bytes for every request body the proxy holds whole in memory
//! (socket modules' JSON, raw frames), so that many clients together cannot make it hold more.
//!
//! A body takes its bytes before it is read into memory and gives them back when its [`BodyPermit`] is
//! dropped, whichever way the request ends (answered, refused, timed out, or cancelled because the client
//! left). A body that does not fit waits up to the budget's `wait` for others to finish, then is refused.
//!
//! Waiting is not first come, first served: whoever fits when bytes come back takes them, so a small body
//! is never stuck behind a large one that waits for room (tokio's semaphore alone would queue it).
//!
//! What the budget does is counted in [`BudgetCounters`], which `/metrics` exports; they are made once by
//! the metrics and handed to each budget, so a reload (a new budget) keeps counting where the last left.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The largest number of bytes taken in one step (a semaphore counts permits in `u32`).
const MAX_STEP: u64 = u32::MAX as u64;

/// The bytes that request bodies may hold at once.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    freed: Arc<Notify>,
    total: u64,
    wait: Duration,
    counters: BudgetCounters,
}

/// What budgets did, shared by every budget given the same counters (handles to the same numbers).
#[derive(Debug, Clone, Default)]
pub struct BudgetCounters {
    /// Bytes held by bodies now.
    pub held: Gauge,
    /// Takes that found no room at once and waited for it.
    pub waits: Counter,
    /// Takes refused for want of room (answered 503, or `service_unavailable` to a raw frame).
    pub refusals: Counter,
}

/// Bytes taken from a [`BodyBudget`]; given back when dropped.
#[derive(Debug)]
pub struct BodyPermit {
    held: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
    gauge: Gauge,
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.gauge.dec_by(held.num_permits() as i64);
            drop(held);
            self.freed.notify_waiters();
        }
    }
}

/// The budget had no room for a body within its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the proxy is holding its limit of {total} bytes of request bodies (server.body_memory); retry later")]
pub struct OverBudget {
    /// The budget's size.
    pub total: u64,
}

impl BodyBudget {
    /// A budget of `total` bytes; a body that does not fit waits up to `wait` for room.
    pub fn new(total: u64, wait: Duration) -> Self {
        let permits = usize::try_from(total).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        BodyBudget {
            bytes: Arc::new(Semaphore::new(permits)),
            freed: Arc::new(Notify::new()),
            total: permits as u64,
            wait,
            counters: BudgetCounters::default(),
        }
    }

    /// The budget, counting what it does in `counters` (those `/metrics` exports).
    pub fn counted(mut self, counters: BudgetCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Bytes not taken right now.
    pub fn available(&self) -> u64 {
        self.bytes.available_permits() as u64
    }

    /// Takes `bytes` for a new body, waiting for room up to the budget's wait.
    pub async fn take(&self, bytes: u64) -> Result<BodyPermit, OverBudget> {
        let mut permit = BodyPermit {
            held: None,
            freed: Arc::clone(&self.freed),
            gauge: self.counters.held.clone(),
        };
        self.grow(&mut permit, bytes).await?;
        Ok(permit)
    }

    /// Adds `bytes` to what `permit` holds, waiting for room up to the budget's wait. On refusal the
    /// permit keeps what it had (dropping it gives that back).
    pub async fn grow(&self, permit: &mut BodyPermit, bytes: u64) -> Result<(), OverBudget> {
        let refused = OverBudget { total: self.total };
        let held = permit.held.as_ref().map_or(0, |p| p.num_permits() as u64);
        // More than the whole budget would wait for ever: refuse at once.
        if held.saturating_add(bytes) > self.total {
            self.counters.refusals.inc();
            return Err(refused);
        }
        if bytes == 0 {
            return Ok(());
        }
        // Room at once, the common case: taken without arming a timer or registering for wake-ups.
        if let Ok(step) = u32::try_from(bytes) {
            if let Ok(more) = Arc::clone(&self.bytes).try_acquire_many_owned(step) {
                permit.gauge.inc_by(i64::from(step));
                match &mut permit.held {
                    Some(held) => held.merge(more),
                    none => *none = Some(more),
                }
                return Ok(());
            }
        }
        let mut waited = false;
        let mut left = bytes;
        let taking = async {
            while left > 0 {
                let step = left.min(MAX_STEP);
                let more = self.try_take(step as u32, &mut waited).await.map_err(|_| refused)?;
                permit.gauge.inc_by(i64::from(step as u32));
                match &mut permit.held {
                    Some(held) => held.merge(more),
                    none => *none = Some(more),
                }
                left -= step;
            }
            Ok(())
        };
        let taken = match tokio::time::timeout(self.wait, taking).await {
            Ok(taken) => taken,
            Err(_) => Err(refused),
        };
        if waited {
            self.counters.waits.inc();
        }
        if taken.is_err() {
            self.counters.refusals.inc();
        }
        taken
    }
}

impl BodyBudget {
    /// Takes `bytes` as soon as they are free, whoever else waits; sets `waited` if they were not.
    async fn try_take(&self, bytes: u32, waited: &mut bool) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        loop {
            // Registered before trying, so bytes freed in between are not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match Arc::clone(&self.bytes).try_acquire_many_owned(bytes) {
                Err(TryAcquireError::NoPermits) => {
                    *waited = true;
                    freed.await
                }
                taken => return taken,
            }
        }
    }
}

impl BodyPermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.held.as_ref().map_or(0, |p| p.num_permits() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(total: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::new(total, Duration::from_millis(100)))
    }

    #[tokio::test]
    async fn bytes_come_back_when_the_permit_is_dropped() {
        let budget = budget(100);
        let permit = budget.take(60).await.unwrap();
        assert_eq!(budget.available(), 40);
        drop(permit);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_body_that_does_not_fit_waits_then_is_refused() {
        let budget = budget(100);
        let _held = budget.take(60).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(budget.take(50).await.unwrap_err(), OverBudget { total: 100 });
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "waited before refusing"
        );
        assert_eq!(budget.available(), 40, "a refused body holds nothing");
    }

    #[tokio::test]
    async fn a_waiting_body_gets_the_bytes_freed_meanwhile() {
        let budget = budget(100);
        let held = budget.take(60).await.unwrap();
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.take(50).await.map(|p| p.bytes()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(50));
    }

    #[tokio::test]
    async fn a_small_body_is_not_queued_behind_a_large_one() {
        let budget = budget(100);
        let _held = budget.take(60).await.unwrap();
        let large = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.take(50).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(budget.take(30).await.is_ok(), "30 bytes are free");
        assert!(!large.await.unwrap(), "the large one never fit");
    }

    #[tokio::test]
    async fn more_than_the_whole_budget_is_refused_without_waiting() {
        let budget = Arc::new(BodyBudget::new(100, Duration::from_secs(60)));
        let started = tokio::time::Instant::now();
        assert!(budget.take(101).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn growing_keeps_what_was_held_on_refusal_and_gives_all_back_on_drop() {
        let budget = budget(100);
        let mut permit = budget.take(30).await.unwrap();
        budget.grow(&mut permit, 30).await.unwrap();
        assert_eq!((permit.bytes(), budget.available()), (60, 40));
        assert!(budget.grow(&mut permit, 50).await.is_err());
        assert_eq!(permit.bytes(), 60);
        drop(permit);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn the_counters_follow_bytes_held_waits_and_refusals() {
        let counters = BudgetCounters::default();
        let budget = BodyBudget::new(100, Duration::from_millis(50)).counted(counters.clone());
        let mut permit = budget.take(60).await.unwrap();
        budget.grow(&mut permit, 10).await.unwrap();
        assert_eq!(
            (counters.held.get(), counters.waits.get(), counters.refusals.get()),
            (70, 0, 0)
        );
        // Waits, then is refused.
        assert!(budget.take(50).await.is_err());
        // Refused at once: more than the whole budget.
        assert!(budget.take(101).await.is_err());
        assert_eq!(
            (counters.held.get(), counters.waits.get(), counters.refusals.get()),
            (70, 1, 2)
        );
        let waiter = tokio::spawn(async move { budget.take(50).await.map(|p| p.bytes()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(permit);
        assert_eq!(waiter.await.unwrap(), Ok(50));
        assert_eq!(
            (counters.held.get(), counters.waits.get(), counters.refusals.get()),
            (0, 2, 2)
        );
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_back_what_it_took() {
        let budget = Arc::new(BodyBudget::new(100, Duration::from_secs(60)));
        let held = budget.take(60).await.unwrap();
        let waiter = tokio::spawn({
            let budget = Arc::clone(&budget);
            async move { budget.take(50).await.map(|p| p.bytes()) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        let _ = waiter.await;
        drop(held);
        assert_eq!(budget.available(), 100);
    }
}
