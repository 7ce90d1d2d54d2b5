//! [`LastMinute`]: one module's traffic over the last sixty seconds, for the status page: a ring of
//! per-second buckets, each with a request count, an error count and a coarse latency histogram.
//!
//! Recording is a few relaxed atomic adds, no lock, so every request can afford it. A bucket is reused
//! when its second comes round again; the thread that notices zeroes it. A request recorded by another
//! thread during that zeroing may be lost: the page shows rates and percentiles, not an audit.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Seconds kept.
pub const SECONDS: usize = 60;
/// Latency buckets; bucket `i` holds latencies up to [`bucket_bound`]`(i)`, the last one everything above.
const LATENCY_BUCKETS: usize = 40;
/// Upper bound of the first latency bucket, in microseconds; each next bound is √2 times larger (the last
/// finite one is about 37 s).
const FIRST_BOUND_MICROS: f64 = 50.0;

/// One second's counts.
struct Second {
    /// The second (as given to [`LastMinute::record_at`]) plus one; 0 = never used.
    tag: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

impl Second {
    fn new() -> Second {
        Second {
            tag: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        for bucket in &self.latency {
            bucket.store(0, Ordering::Relaxed);
        }
    }
}

/// The last minute of one module's requests.
pub struct LastMinute {
    seconds: Box<[Second; SECONDS]>,
}

impl std::fmt::Debug for LastMinute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastMinute").finish_non_exhaustive()
    }
}

impl Default for LastMinute {
    fn default() -> Self {
        LastMinute {
            seconds: Box::new(std::array::from_fn(|_| Second::new())),
        }
    }
}

/// One complete second, as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SecondSummary {
    /// The second it describes.
    pub at: u64,
    /// Requests answered in it.
    pub requests: u32,
    /// Of those, answered with a 5xx status.
    pub errors: u32,
    /// Median latency (the upper bound of its √2-wide bucket), when there were requests.
    pub p50: Option<Duration>,
    /// 99th percentile latency, likewise.
    pub p99: Option<Duration>,
}

/// The whole window at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The [`SECONDS`] complete seconds before now, oldest first.
    pub seconds: Vec<SecondSummary>,
    /// Requests over the window.
    pub requests: u64,
    /// 5xx answers over the window.
    pub errors: u64,
    /// Median latency over the window.
    pub p50: Option<Duration>,
    /// 99th percentile latency over the window.
    pub p99: Option<Duration>,
}

impl LastMinute {
    /// Counts one request answered during `second` (any monotonic count of seconds, e.g. Unix time).
    pub fn record_at(&self, second: u64, elapsed: Duration, error: bool) {
        let slot = &self.seconds[(second % SECONDS as u64) as usize];
        let tag = second + 1;
        let seen = slot.tag.load(Ordering::Acquire);
        if seen != tag {
            if seen > tag {
                // A request that finished just as the clock moved on, in a bucket already reused.
                return;
            }
            if slot
                .tag
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.clear();
            }
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
    }

    /// The [`SECONDS`] complete seconds before `now` (the second in progress is left out, so a chart
    /// never shows a half-counted point).
    pub fn window_at(&self, now: u64) -> Window {
        let mut merged = [0u64; LATENCY_BUCKETS];
        let mut seconds = Vec::with_capacity(SECONDS);
        let (mut requests, mut errors) = (0u64, 0u64);
        for at in now.saturating_sub(SECONDS as u64)..now {
            let slot = &self.seconds[(at % SECONDS as u64) as usize];
            let mut histogram = [0u64; LATENCY_BUCKETS];
            let (mut count, mut failed) = (0, 0);
            if slot.tag.load(Ordering::Acquire) == at + 1 {
                count = slot.requests.load(Ordering::Relaxed);
                failed = slot.errors.load(Ordering::Relaxed);
                for (into, bucket) in histogram.iter_mut().zip(&slot.latency) {
                    *into = u64::from(bucket.load(Ordering::Relaxed));
                }
            }
            for (total, n) in merged.iter_mut().zip(histogram) {
                *total += n;
            }
            requests += u64::from(count);
            errors += u64::from(failed);
            seconds.push(SecondSummary {
                at,
                requests: count,
                errors: failed,
                p50: quantile(&histogram, 0.50),
                p99: quantile(&histogram, 0.99),
            });
        }
        Window {
            seconds,
            requests,
            errors,
            p50: quantile(&merged, 0.50),
            p99: quantile(&merged, 0.99),
        }
    }
}

/// The latency bucket `elapsed` falls in.
fn bucket_of(elapsed: Duration) -> usize {
    let micros = elapsed.as_secs_f64() * 1e6;
    if micros <= FIRST_BOUND_MICROS {
        return 0;
    }
    // Bound i is FIRST · 2^(i/2), so i = ⌈2 · log2(micros / FIRST)⌉.
    let index = (2.0 * (micros / FIRST_BOUND_MICROS).log2()).ceil() as usize;
    index.min(LATENCY_BUCKETS - 1)
}

/// The upper bound of latency bucket `index`.
fn bucket_bound(index: usize) -> Duration {
    Duration::from_secs_f64(FIRST_BOUND_MICROS * 2f64.powf(index as f64 / 2.0) / 1e6)
}

/// The `q` quantile of a histogram, as its bucket's upper bound; `None` when it is empty.
fn quantile(histogram: &[u64; LATENCY_BUCKETS], q: f64) -> Option<Duration> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (index, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bucket_bound(index));
        }
    }
    Some(bucket_bound(LATENCY_BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_latency_lands_in_a_bucket_whose_bound_is_within_root_two() {
        for micros in [1, 50, 51, 70, 71, 100, 999, 1000, 12_345, 2_000_000] {
            let latency = Duration::from_micros(micros);
            let bound = bucket_bound(bucket_of(latency));
            assert!(
                bound >= latency || micros <= 50,
                "{micros} µs above its bound {bound:?}"
            );
            assert!(
                bound.as_secs_f64() <= (latency.as_secs_f64() * 1.415).max(50e-6 * 1.0001),
                "{micros} µs: bound {bound:?} too loose"
            );
        }
        assert_eq!(bucket_of(Duration::from_secs(3600)), LATENCY_BUCKETS - 1);
    }

    #[test]
    fn counts_requests_errors_and_percentiles_per_second() {
        let window = LastMinute::default();
        for _ in 0..98 {
            window.record_at(1000, ms(1), false);
        }
        window.record_at(1000, ms(100), true);
        window.record_at(1000, ms(100), true);
        window.record_at(1001, ms(10), false);
        let seen = window.window_at(1002);
        assert_eq!(seen.seconds.len(), SECONDS);
        let last = seen.seconds[SECONDS - 1];
        assert_eq!((last.at, last.requests, last.errors), (1001, 1, 0));
        let before = seen.seconds[SECONDS - 2];
        assert_eq!((before.at, before.requests, before.errors), (1000, 100, 2));
        let p50 = before.p50.unwrap();
        assert!(p50 >= ms(1) && p50 < ms(2), "{p50:?}");
        let p99 = before.p99.unwrap();
        assert!(p99 >= ms(100) && p99 < ms(142), "{p99:?}");
        assert_eq!((seen.requests, seen.errors), (101, 2));
        assert!(seen.seconds[0].p50.is_none(), "an empty second has no percentile");
    }

    #[test]
    fn the_second_in_progress_is_left_out() {
        let window = LastMinute::default();
        window.record_at(500, ms(1), false);
        assert_eq!(window.window_at(500).requests, 0);
        assert_eq!(window.window_at(501).requests, 1);
    }

    #[test]
    fn a_reused_bucket_forgets_the_minute_before() {
        let window = LastMinute::default();
        window.record_at(100, ms(1), true);
        window.record_at(100 + SECONDS as u64, ms(1), false);
        let seen = window.window_at(101 + SECONDS as u64);
        assert_eq!((seen.requests, seen.errors), (1, 0));
        // And an old second is not counted once a minute has passed without traffic.
        assert_eq!(window.window_at(100 + 2 * SECONDS as u64 + 1).requests, 0);
    }

    #[test]
    fn a_late_request_does_not_wipe_a_newer_second() {
        let window = LastMinute::default();
        window.record_at(160, ms(1), false);
        window.record_at(100, ms(1), false);
        assert_eq!(window.window_at(161).requests, 1);
    }
}
