//! Node selection and failure masking, shared by socket, HTTP and stream modules.
//!
//! Which healthy node takes a request is a [`selection::Selection`] policy; this file owns health
//! (masking) and the requests in flight per node. The mechanism (connecting, retrying) lives in the modules
//! that use it. Failure state is atomics, shared by every worker thread.

pub mod attempts;
pub mod node;
pub mod selection;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Upstream;
pub use node::Node;
use selection::{Candidate, Selection, WeightedRandom};

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
    nodes: Vec<Node>,
    in_flight: Arc<[AtomicUsize]>,
    /// Per node: replies counted so far, to tell whether a node answered others while one request waited.
    answers: Vec<AtomicU64>,
    selection: Box<dyn Selection>,
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
    /// A balancer over `nodes`, weighted random, that masks a failed node for `fail_timeout`.
    pub fn new(nodes: Vec<Node>, fail_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        Balancer {
            masked_until_ms: nodes.iter().map(|_| AtomicU64::new(0)).collect(),
            in_flight: nodes.iter().map(|_| AtomicUsize::new(0)).collect(),
            answers: nodes.iter().map(|_| AtomicU64::new(0)).collect(),
            selection: Box::new(WeightedRandom),
            nodes,
            fail_timeout,
            clock,
        }
    }

    /// The balancer an upstream's config describes: its nodes, weights, policy and fail_timeout.
    pub fn for_upstream(upstream: &Upstream, clock: Arc<dyn Clock>) -> Self {
        let nodes = Node::list(&upstream.nodes, &upstream.weights);
        let mut balancer = Balancer::new(nodes, upstream.fail_timeout, clock);
        balancer.selection = selection::policy(upstream.balance);
        balancer
    }

    /// Counts a request in flight on node `index` until the guard drops (for `least_conn`). The guard
    /// owns its counter, so it can travel with a streamed response body or a spliced upgrade.
    pub fn track(&self, index: usize) -> InFlight {
        self.in_flight[index].fetch_add(1, Ordering::Relaxed);
        InFlight {
            counters: Arc::clone(&self.in_flight),
            index,
        }
    }

    /// The nodes, in config order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index`.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// Whether node `index` is masked now.
    pub fn is_masked(&self, index: usize) -> bool {
        self.masked_for(index).is_some()
    }

    /// How much longer node `index` stays masked, if it is masked now.
    pub fn masked_for(&self, index: usize) -> Option<Duration> {
        let left = self.masked_until_ms[index]
            .load(Ordering::Relaxed)
            .checked_sub(self.now_ms())?;
        (left > 0).then(|| Duration::from_millis(left))
    }

    /// Masks node `index` for `fail_timeout` from now.
    pub fn mark_failed(&self, index: usize) {
        let until = self.now_ms() + self.fail_timeout.as_millis() as u64;
        self.masked_until_ms[index].store(until.max(1), Ordering::Relaxed);
    }

    /// Reports that the node `pick` chose answered. A masked node that was tried anyway (every node
    /// was masked) is taken back at once, as nginx counts a success; a healthy one needs nothing.
    pub fn answered(&self, pick: Pick) {
        self.answers[pick.index].fetch_add(1, Ordering::Relaxed);
        if pick.all_masked {
            self.masked_until_ms[pick.index].store(0, Ordering::Relaxed);
        }
    }

    /// How many requests node `index` has answered so far: compare two readings to learn whether it
    /// answered any in between.
    pub fn answers(&self, index: usize) -> u64 {
        self.answers[index].load(Ordering::Relaxed)
    }

    /// Chooses a node that is not in `tried`: by the policy among the healthy ones, or among all untried
    /// ones when every one of them is masked. `None` once every node has been tried.
    pub fn pick(&self, tried: &[usize]) -> Option<Pick> {
        let now = self.now_ms();
        if self.nodes.len() == 1 {
            // The usual single node, without building a list of one.
            return tried.is_empty().then(|| Pick {
                index: 0,
                all_masked: self.masked_until_ms[0].load(Ordering::Relaxed) > now,
            });
        }
        let candidate = |index: usize| Candidate {
            index,
            weight: self.nodes[index].weight(),
            in_flight: self.in_flight[index].load(Ordering::Relaxed),
        };
        let untried = (0..self.nodes.len()).filter(|i| !tried.contains(i));
        let healthy: Vec<Candidate> = untried
            .clone()
            .filter(|&i| self.masked_until_ms[i].load(Ordering::Relaxed) <= now)
            .map(candidate)
            .collect();
        let (candidates, all_masked) = if healthy.is_empty() {
            (untried.map(candidate).collect::<Vec<_>>(), true)
        } else {
            (healthy, false)
        };
        if candidates.is_empty() {
            return None;
        }
        let chosen = candidates[self.selection.select(&candidates)];
        Some(Pick {
            index: chosen.index,
            all_masked,
        })
    }

    fn now_ms(&self) -> u64 {
        // +1 so that a reading of 0 never equals "masked until 0".
        self.clock.elapsed().as_millis() as u64 + 1
    }
}

/// A request in flight on a node; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    counters: Arc<[AtomicUsize]>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters[self.index].fetch_sub(1, Ordering::Relaxed);
    }
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
        let nodes = (0..n)
            .map(|i| Node::new(&format!("127.0.0.1:{}", 1000 + i), 1))
            .collect();
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
        b.answered(pick);
        assert!(!b.is_masked(pick.index));
        assert_eq!(
            b.pick(&[]).unwrap(),
            Pick {
                index: pick.index,
                all_masked: false
            }
        );
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
    fn in_flight_requests_steer_least_conn() {
        let clock = Arc::new(ManualClock::default());
        let mut b = Balancer::new(
            vec![Node::new("a:1", 1), Node::new("b:1", 1)],
            Duration::from_secs(1),
            clock,
        );
        b.selection = selection::policy(crate::config::Balance::LeastConn);
        let busy = b.track(0);
        for _ in 0..50 {
            assert_eq!(b.pick(&[]).unwrap().index, 1);
        }
        drop(busy);
        assert!(
            (0..200).any(|_| b.pick(&[]).unwrap().index == 0),
            "the count ends with the guard"
        );
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
