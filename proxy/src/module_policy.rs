//! Per-module traffic policy applied before a module's role answers: a token bucket per client address
//! (an IPv6 client's /64; 429 with `Retry-After`), a cap on requests in flight that queues for a
//! bounded time (then 503), and response headers added on the way out.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client_address;
use crate::config::{Policy, RateLimit};

/// Checks between sweeps of clients whose buckets are full again, so the table does not grow forever.
const SWEEP_EVERY: u64 = 4096;

/// A module's policy, ready to apply.
#[derive(Debug, Default)]
pub struct ModulePolicy {
    rate: Option<Limiter>,
    slots: Option<(Arc<Semaphore>, Duration)>,
    add_headers: Vec<(HeaderName, HeaderValue)>,
}

struct Limiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("clients", &self.buckets.len()).finish()
    }
}

/// Why a request was turned away before reaching the module.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The client spent its token bucket.
    #[error("too many requests from this address (rate_limit); retry in {0} s")]
    RateLimited(u64),
    /// Every `max_conns` slot stayed busy for `max_conns_wait`.
    #[error("module is at max_conns and no slot freed within {0:.1} s; retry later")]
    Busy(f64),
}

impl Refusal {
    /// The status that reports the refusal, to HTTP clients and in raw frames' error codes alike.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Permission to proceed; holds the `max_conns` slot, if any, until dropped.
#[derive(Debug)]
pub struct Admission(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl ModulePolicy {
    /// The runtime form of a configured policy.
    pub fn new(policy: &Policy) -> ModulePolicy {
        ModulePolicy {
            rate: policy.rate_limit.map(Limiter::new),
            slots: policy
                .max_conns
                .map(|n| (Arc::new(Semaphore::new(n)), policy.max_conns_wait)),
            add_headers: policy.add_headers.clone(),
        }
    }

    /// Admits a request from `client`, waiting for a `max_conns` slot up to the configured bound.
    pub async fn admit(&self, client: IpAddr) -> Result<Admission, Refusal> {
        self.check_rate(client)?;
        self.take_slot().await
    }

    /// Spends one of `client`'s tokens, if the module has a rate limit: the check that costs nothing,
    /// made before a request's body is read.
    pub fn check_rate(&self, client: IpAddr) -> Result<(), Refusal> {
        match &self.rate {
            Some(rate) => rate.check(client),
            None => Ok(()),
        }
    }

    /// Waits for a `max_conns` slot up to the configured bound. Taken only once a request is ready to
    /// go to the module, so that clients slow to send cannot hold the slots.
    pub async fn take_slot(&self) -> Result<Admission, Refusal> {
        let Some((slots, wait)) = &self.slots else {
            return Ok(Admission(None));
        };
        match tokio::time::timeout(*wait, Arc::clone(slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Admission(Some(permit))),
            _ => Err(Refusal::Busy(wait.as_secs_f64())),
        }
    }

    /// Adds the module's response headers (replacing any of the same name).
    pub fn decorate<B>(&self, response: &mut Response<B>) {
        for (name, value) in &self.add_headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
}

impl Limiter {
    fn new(limit: RateLimit) -> Limiter {
        let burst = limit.burst.unwrap_or_else(|| limit.rate.ceil().max(1.0) as u32);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / limit.rate))
            .expect("rate > 0 is checked by the config")
            .allow_burst(NonZeroU32::new(burst).expect("burst >= 1 is checked by the config"));
        Limiter {
            buckets: RateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, client: IpAddr) -> Result<(), Refusal> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.buckets.retain_recent();
        }
        let key = client_address::rate_key(client);
        self.buckets.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Refusal::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rate_limit: Option<RateLimit>, max_conns: Option<usize>) -> ModulePolicy {
        ModulePolicy::new(&Policy {
            rate_limit,
            max_conns,
            max_conns_wait: Duration::from_millis(100),
            add_headers: vec![],
        })
    }

    #[tokio::test]
    async fn bucket_allows_the_burst_then_refuses_per_client() {
        let limited = policy(
            Some(RateLimit {
                rate: 1.0,
                burst: Some(3),
            }),
            None,
        );
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limited.admit(a).await.is_ok());
        }
        assert_eq!(limited.admit(a).await.unwrap_err(), Refusal::RateLimited(1));
        assert!(limited.admit(b).await.is_ok(), "buckets are per client address");
    }

    #[tokio::test]
    async fn max_conns_waits_then_refuses() {
        let capped = policy(None, Some(1));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let first = capped.admit(client).await.unwrap();
        assert!(matches!(capped.admit(client).await, Err(Refusal::Busy(_))));
        drop(first);
        assert!(
            capped.admit(client).await.is_ok(),
            "a freed slot admits the next request"
        );
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_freed_slot() {
        let capped = Arc::new(policy(None, Some(1)));
        let client: IpAddr = "127.0.0.1".parse().unwrap();
        let first = capped.admit(client).await.unwrap();
        let waiter = tokio::spawn({
            let capped = Arc::clone(&capped);
            async move { capped.admit(client).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiter.await.unwrap());
    }
}
