//! Node selection and failure masking, shared by socket and HTTP modules.
//!
//! Policy is a pure function ([`choose`]) over which nodes are healthy; the mechanism (connecting,
//! retrying) lives in the modules that use it. Failure state is atomics, shared by every worker thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

/// A source of time, injectable so masking can be tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Time elapsed since a fixed origin.
    fn elapsed(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock(Instant::now())
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// The nodes of one module and which of them are masked.
pub struct Balancer {
    nodes: Vec<String>,
    /// Per node: the clock reading (in ms) until which it is masked; 0 = healthy.
    masked_until_ms: Vec<AtomicU64>,
    fail_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").field("nodes", &self.nodes).finish()
    }
}

/// The outcome of [`Balancer::pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index of the chosen node.
    pub index: usize,
    /// True when every candidate was masked and one was chosen anyway.
    pub all_masked: bool,
}

impl Balancer {
    /// A balancer over `nodes` that masks a failed node for `fail_timeout`.
    pub fn new(nodes: Vec<String>, fail_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        let masked_until_ms = nodes.iter().map(|_| AtomicU64::new(0)).collect();
        Balancer {
            nodes,
            masked_until_ms,
            fail_timeout,
            clock,
        }
    }

    /// The node addresses, in config order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The address of node `index`.
    pub fn node(&self, index: usize) -> &str {
        &self.nodes[index]
    }

    /// Whether node `index` is masked now.
    pub fn is_masked(&self, index: usize) -> bool {
        self.masked_until_ms[index].load(Ordering::Relaxed) > self.now_ms()
    }

    /// Masks node `index` for `fail_timeout` from now.
    pub fn mark_failed(&self, index: usize) {
        let until = self.now_ms() + self.fail_timeout.as_millis() as u64;
        self.masked_until_ms[index].store(until.max(1), Ordering::Relaxed);
    }

    /// Chooses a node that is not in `tried`: at random among the healthy ones, or among all untried ones
    /// when every one of them is masked. `None` once every node has been tried.
    pub fn pick(&self, tried: &[usize]) -> Option<Pick> {
        let now = self.now_ms();
        let candidates: Vec<(usize, bool)> = (0..self.nodes.len())
            .filter(|i| !tried.contains(i))
            .map(|i| (i, self.masked_until_ms[i].load(Ordering::Relaxed) <= now))
            .collect();
        choose(&candidates, &mut rand::rng())
    }

    fn now_ms(&self) -> u64 {
        // +1 so that a reading of 0 never equals "masked until 0".
        self.clock.elapsed().as_millis() as u64 + 1
    }
}

/// The selection policy: random among the healthy candidates, else random among all of them.
/// `candidates` pairs a node index with whether it is healthy.
pub fn choose(candidates: &[(usize, bool)], rng: &mut impl Rng) -> Option<Pick> {
    if candidates.is_empty() {
        return None;
    }
    let healthy = candidates.iter().filter(|(_, ok)| *ok).count();
    if healthy == 0 {
        let (index, _) = candidates[rng.random_range(0..candidates.len())];
        return Some(Pick {
            index,
            all_masked: true,
        });
    }
    let nth = rng.random_range(0..healthy);
    let (index, _) = candidates.iter().filter(|(_, ok)| *ok).nth(nth).copied()?;
    Some(Pick {
        index,
        all_masked: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct ManualClock(Mutex<Duration>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn elapsed(&self) -> Duration {
            *self.0.lock().unwrap()
        }
    }

    fn balancer(n: usize) -> (Balancer, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        let nodes = (0..n).map(|i| format!("127.0.0.1:{}", 1000 + i)).collect();
        (Balancer::new(nodes, Duration::from_secs(60), clock.clone()), clock)
    }

    #[test]
    fn masked_node_is_skipped_until_fail_timeout() {
        let (b, clock) = balancer(3);
        b.mark_failed(1);
        for _ in 0..200 {
            assert_ne!(b.pick(&[]).unwrap().index, 1);
        }
        clock.advance(Duration::from_secs(59));
        assert!(b.is_masked(1));
        clock.advance(Duration::from_secs(2));
        assert!(!b.is_masked(1));
        assert!(
            (0..500).any(|_| b.pick(&[]).unwrap().index == 1),
            "an unmasked node takes traffic again"
        );
    }

    #[test]
    fn every_node_masked_still_picks_and_says_so() {
        let (b, _) = balancer(2);
        b.mark_failed(0);
        b.mark_failed(1);
        let pick = b.pick(&[]).unwrap();
        assert!(pick.all_masked);
    }

    #[test]
    fn tried_nodes_are_never_picked_again() {
        let (b, _) = balancer(3);
        assert_eq!(b.pick(&[0, 2]).unwrap().index, 1);
        assert_eq!(b.pick(&[0, 1, 2]), None);
        b.mark_failed(1);
        assert_eq!(
            b.pick(&[0, 2]),
            Some(Pick {
                index: 1,
                all_masked: true
            })
        );
    }

    #[test]
    fn random_choice_spreads_over_healthy_nodes() {
        let (b, _) = balancer(4);
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[b.pick(&[]).unwrap().index] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn masking_is_shared_across_threads() {
        let (b, _) = balancer(2);
        let b = Arc::new(b);
        let other = Arc::clone(&b);
        std::thread::spawn(move || other.mark_failed(0)).join().unwrap();
        assert!(b.is_masked(0));
    }
}
