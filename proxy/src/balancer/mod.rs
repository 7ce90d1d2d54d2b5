//! Node selection and failure masking, shared by socket, HTTP and stream modules.
//!
//! Which healthy node takes a request is a [`selection::Selection`] policy; this file owns health
//! (masking) and the requests in flight per node. The mechanism (connecting, retrying) lives in the modules
//! that use it. Failure state is atomics, shared by every worker thread.

pub mod attempts;
pub mod node;
pub mod per_node;
pub mod selection;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::config::Upstream;
use crate::discovery::Member;
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

/// One node and its health, at a fixed index for the life of the module.
#[derive(Debug)]
struct Slot {
    /// Shared, so a request takes it without copying.
    node: Arc<Node>,
    weight: AtomicU32,
    in_flight: AtomicUsize,
    /// Replies counted so far, to tell whether the node answered others while one request waited.
    answers: AtomicU64,
    /// The clock reading (in ms) until which it is masked; 0 = healthy.
    masked_until_ms: AtomicU64,
    /// False once its source dropped it: no new picks, requests in flight finish.
    member: AtomicBool,
}

impl Slot {
    fn new(node: Node) -> Slot {
        Slot {
            weight: AtomicU32::new(node.weight().max(1)),
            node: Arc::new(node),
            in_flight: AtomicUsize::new(0),
            answers: AtomicU64::new(0),
            masked_until_ms: AtomicU64::new(0),
            member: AtomicBool::new(true),
        }
    }
}

/// The nodes of one module and which of them are masked.
///
/// The set follows the module's discovery source ([`Self::apply`]). A node keeps its index when it
/// leaves, and gets it back if it returns, so per-node state indexed by it is never another node's; the
/// table only grows with addresses never seen before.
pub struct Balancer {
    slots: RwLock<Vec<Arc<Slot>>>,
    selection: Box<dyn Selection>,
    fail_timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Makes the node for a member (an HTTP module keeps the configured name as `Host`).
    make_node: Box<dyn Fn(&Member) -> Node + Send + Sync>,
    /// Moves when a node is masked or the set changes ([`Self::generation`]).
    generation: AtomicU64,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").field("nodes", &self.live_nodes()).finish()
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

/// What [`Balancer::apply`] changed: indexes of the nodes that joined and of those that left.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Nodes new to the set (or back in it).
    pub joined: Vec<usize>,
    /// Nodes no longer in the set: they take no new requests; their connections should close.
    pub left: Vec<usize>,
}

impl Balancer {
    /// A balancer over `nodes`, weighted random, that masks a failed node for `fail_timeout`.
    pub fn new(nodes: Vec<Node>, fail_timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        Balancer {
            slots: RwLock::new(nodes.into_iter().map(|node| Arc::new(Slot::new(node))).collect()),
            selection: Box::new(WeightedRandom),
            fail_timeout,
            clock,
            make_node: Box::new(|member| Node::new(&member.address, member.weight)),
            generation: AtomicU64::new(0),
        }
    }

    /// The balancer an upstream's config describes, with no nodes yet: its policy and fail_timeout.
    /// Its nodes come from the module's discovery source ([`Self::apply`]).
    pub fn for_upstream(upstream: &Upstream, clock: Arc<dyn Clock>) -> Self {
        let mut balancer = Balancer::new(Vec::new(), upstream.fail_timeout, clock);
        balancer.selection = selection::policy(upstream.balance);
        balancer
    }

    /// Makes the set of nodes `members`: a new address joins at once; one no longer there takes no new
    /// requests (those in flight finish); one that stays keeps its mask, in-flight count and index,
    /// and takes its new weight.
    pub fn apply(&self, members: &[Member]) -> Changes {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Changes::default();
        for (index, slot) in slots.iter().enumerate() {
            let kept = members.iter().any(|m| **slot.node.name() == *m.address);
            if slot.member.swap(kept, Ordering::Relaxed) != kept {
                if kept {
                    changes.joined.push(index);
                } else {
                    changes.left.push(index);
                }
            }
        }
        for member in members {
            match slots.iter().find(|slot| **slot.node.name() == *member.address) {
                Some(slot) => slot.weight.store(member.weight.max(1), Ordering::Relaxed),
                None => {
                    changes.joined.push(slots.len());
                    slots.push(Arc::new(Slot::new((self.make_node)(member))));
                }
            }
        }
        if changes != Changes::default() {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        changes
    }

    /// A count that moves whenever a node is masked or the set changes: what was learned from the nodes
    /// before (a contract document) may be stale once it moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The same balancer, making the node for a member that joins with `make` rather than from its
    /// address alone.
    pub fn with_node_maker(mut self, make: impl Fn(&Member) -> Node + Send + Sync + 'static) -> Self {
        self.make_node = Box::new(make);
        self
    }

    fn slot(&self, index: usize) -> Arc<Slot> {
        Arc::clone(&self.slots.read().unwrap_or_else(PoisonError::into_inner)[index])
    }

    /// Counts a request in flight on node `index` until the guard drops (for `least_conn`). The guard
    /// owns its counter, so it can travel with a streamed response body or a spliced upgrade.
    pub fn track(&self, index: usize) -> InFlight {
        let slot = self.slot(index);
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight { slot }
    }

    /// The nodes in the set now, with their indexes, in the order they joined.
    pub fn live_nodes(&self) -> Vec<(usize, Node)> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        (slots.iter().enumerate())
            .filter(|(_, slot)| slot.member.load(Ordering::Relaxed))
            .map(|(index, slot)| (index, Node::clone(&slot.node)))
            .collect()
    }

    /// How many nodes have ever been in the set (the bound of every index).
    pub fn node_count(&self) -> usize {
        self.slots.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Node `index` (which may have left the set since it was picked).
    pub fn node(&self, index: usize) -> Arc<Node> {
        Arc::clone(&self.slot(index).node)
    }

    /// Requests in flight on node `index` now.
    pub fn in_flight(&self, index: usize) -> usize {
        self.slot(index).in_flight.load(Ordering::Relaxed)
    }

    /// Whether node `index` is masked now.
    pub fn is_masked(&self, index: usize) -> bool {
        self.masked_for(index).is_some()
    }

    /// How much longer node `index` stays masked, if it is masked now.
    pub fn masked_for(&self, index: usize) -> Option<Duration> {
        let left = self
            .slot(index)
            .masked_until_ms
            .load(Ordering::Relaxed)
            .checked_sub(self.now_ms())?;
        (left > 0).then(|| Duration::from_millis(left))
    }

    /// Masks node `index` for `fail_timeout` from now.
    pub fn mark_failed(&self, index: usize) {
        let until = self.now_ms() + self.fail_timeout.as_millis() as u64;
        self.slot(index).masked_until_ms.store(until.max(1), Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports that the node `pick` chose answered. A masked node that was tried anyway (every node
    /// was masked) is taken back at once, as nginx counts a success; a healthy one needs nothing.
    pub fn answered(&self, pick: Pick) {
        let slot = self.slot(pick.index);
        slot.answers.fetch_add(1, Ordering::Relaxed);
        if pick.all_masked {
            slot.masked_until_ms.store(0, Ordering::Relaxed);
        }
    }

    /// How many requests node `index` has answered so far: compare two readings to learn whether it
    /// answered any in between.
    pub fn answers(&self, index: usize) -> u64 {
        self.slot(index).answers.load(Ordering::Relaxed)
    }

    /// Chooses a node of the set that is not in `tried`: by the policy among the healthy ones, or among
    /// all untried ones when every one of them is masked. `None` once every node has been tried, or
    /// while the set is empty.
    pub fn pick(&self, tried: &[usize]) -> Option<Pick> {
        let now = self.now_ms();
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        if let [only] = &slots[..] {
            // The usual single node, without building a list of one.
            return (tried.is_empty() && only.member.load(Ordering::Relaxed)).then(|| Pick {
                index: 0,
                all_masked: only.masked_until_ms.load(Ordering::Relaxed) > now,
            });
        }
        let candidate = |index: usize| Candidate {
            index,
            weight: slots[index].weight.load(Ordering::Relaxed),
            in_flight: slots[index].in_flight.load(Ordering::Relaxed),
        };
        let untried = (0..slots.len()).filter(|&i| !tried.contains(&i) && slots[i].member.load(Ordering::Relaxed));
        let healthy: Vec<Candidate> = untried
            .clone()
            .filter(|&i| slots[i].masked_until_ms.load(Ordering::Relaxed) <= now)
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
    slot: Arc<Slot>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
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

    fn members(list: &[(&str, u32)]) -> Vec<Member> {
        (list.iter())
            .map(|&(address, weight)| Member {
                address: address.to_owned(),
                weight,
            })
            .collect()
    }

    #[test]
    fn a_new_member_takes_requests_at_once() {
        let (b, _) = balancer(1);
        let changes = b.apply(&members(&[("127.0.0.1:1000", 1), ("127.0.0.1:2000", 1)]));
        assert_eq!(
            changes,
            Changes {
                joined: vec![1],
                left: vec![]
            }
        );
        assert!((0..500).any(|_| b.pick(&[]).unwrap().index == 1));
        assert_eq!(&**b.node(1).name(), "127.0.0.1:2000");
    }

    #[test]
    fn a_node_that_left_is_never_picked_but_its_requests_finish() {
        let (b, _) = balancer(2);
        let busy = b.track(0);
        let changes = b.apply(&members(&[("127.0.0.1:1001", 1)]));
        assert_eq!(
            changes,
            Changes {
                joined: vec![],
                left: vec![0]
            }
        );
        for _ in 0..200 {
            assert_eq!(b.pick(&[]).unwrap().index, 1);
        }
        assert_eq!(b.pick(&[1]), None, "a node that left is not a fallback either");
        assert_eq!(b.in_flight(0), 1, "its request in flight still counts");
        drop(busy);
        assert_eq!(b.in_flight(0), 0);
        assert_eq!(b.live_nodes().len(), 1);
    }

    #[test]
    fn a_node_that_stays_keeps_its_mask_count_and_index_and_takes_its_new_weight() {
        let (b, _) = balancer(2);
        b.mark_failed(1);
        let busy = b.track(1);
        let changes = b.apply(&members(&[("127.0.0.1:1001", 3), ("127.0.0.1:1002", 1)]));
        assert_eq!(
            changes,
            Changes {
                joined: vec![2],
                left: vec![0]
            }
        );
        assert!(b.is_masked(1), "the mask survives");
        assert_eq!(b.in_flight(1), 1, "the count survives");
        drop(busy);
        b.apply(&members(&[
            ("127.0.0.1:1001", 3),
            ("127.0.0.1:1002", 1),
            ("127.0.0.1:1000", 1),
        ]));
        assert_eq!(b.node_count(), 3, "a node that returns gets its index back");
        let mut fresh = balancer(0).0;
        fresh.selection = selection::policy(crate::config::Balance::RoundRobin);
        fresh.apply(&members(&[("a:1", 1), ("b:1", 1)]));
        fresh.apply(&members(&[("a:1", 3), ("b:1", 1)]));
        let firsts = (0..400).filter(|_| fresh.pick(&[]).unwrap().index == 0).count();
        assert_eq!(firsts, 300, "the new weight applies");
    }

    #[test]
    fn an_empty_set_leaves_nothing_to_pick() {
        let (b, _) = balancer(0);
        assert_eq!(b.pick(&[]), None);
        b.apply(&members(&[("a:1", 1)]));
        assert_eq!(b.pick(&[]).unwrap().index, 0);
        b.apply(&[]);
        assert_eq!(b.pick(&[]), None, "a single node that left is not picked");
    }
}
