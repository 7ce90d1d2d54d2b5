//! Selection policies: which of the candidate nodes takes the next request. Pure over their inputs,
//! apart from the randomness and the round-robin counter they own.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::Rng;

use crate::config::Balance;

/// A node that may take the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The node's index in the module's node list.
    pub index: usize,
    /// Its configured weight (at least 1).
    pub weight: u32,
    /// Requests it is answering now.
    pub in_flight: usize,
}

/// A policy choosing among candidates.
pub trait Selection: Send + Sync + std::fmt::Debug {
    /// Chooses one of `candidates`, which is never empty; returns its position in the slice.
    fn select(&self, candidates: &[Candidate]) -> usize;
}

/// The policy named by `balance`.
pub fn policy(balance: Balance) -> Box<dyn Selection> {
    match balance {
        Balance::Random => Box::new(WeightedRandom),
        Balance::RoundRobin => Box::new(RoundRobin::default()),
        Balance::LeastConn => Box::new(LeastConn),
    }
}

/// Random, each node in proportion to its weight.
#[derive(Debug)]
pub struct WeightedRandom;

impl Selection for WeightedRandom {
    fn select(&self, candidates: &[Candidate]) -> usize {
        let total: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
        by_cumulative_weight(candidates, rand::rng().random_range(0..total))
    }
}

/// In turn, each node as many times per cycle as its weight.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicU64,
}

impl Selection for RoundRobin {
    fn select(&self, candidates: &[Candidate]) -> usize {
        let total: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
        by_cumulative_weight(candidates, self.next.fetch_add(1, Ordering::Relaxed) % total)
    }
}

/// The fewest requests in flight per unit of weight; ties broken at random.
#[derive(Debug)]
pub struct LeastConn;

impl Selection for LeastConn {
    fn select(&self, candidates: &[Candidate]) -> usize {
        // a/wa < b/wb  <=>  a*wb < b*wa, without division.
        let load = |c: &Candidate| (c.in_flight as u128, u128::from(c.weight));
        let least = candidates
            .iter()
            .map(load)
            .min_by(|(a, wa), (b, wb)| (a * wb).cmp(&(b * wa)))
            .expect("non-empty");
        let tied: Vec<usize> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let (a, wa) = load(c);
                a * least.1 == least.0 * wa
            })
            .map(|(position, _)| position)
            .collect();
        tied[rand::rng().random_range(0..tied.len())]
    }
}

/// The candidate whose cumulative-weight range holds `point` (which is below the total weight).
fn by_cumulative_weight(candidates: &[Candidate], mut point: u64) -> usize {
    for (position, candidate) in candidates.iter().enumerate() {
        let weight = u64::from(candidate.weight);
        if point < weight {
            return position;
        }
        point -= weight;
    }
    candidates.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| Candidate {
                index,
                weight,
                in_flight: 0,
            })
            .collect()
    }

    fn shares(policy: &dyn Selection, candidates: &[Candidate], rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; candidates.len()];
        for _ in 0..rounds {
            counts[policy.select(candidates)] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_follows_weights_exactly() {
        assert_eq!(
            shares(&RoundRobin::default(), &candidates(&[3, 1, 2]), 600),
            [300, 100, 200]
        );
    }

    #[test]
    fn random_follows_weights_roughly() {
        let counts = shares(&WeightedRandom, &candidates(&[3, 1]), 8000);
        assert!((5600..6400).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn least_conn_prefers_the_idlest_per_weight() {
        let mut c = candidates(&[1, 1, 2]);
        c[0].in_flight = 3;
        c[1].in_flight = 1;
        c[2].in_flight = 3;
        // 3/1, 1/1, 3/2: node 1 is the least loaded.
        assert_eq!(LeastConn.select(&c), 1);
        c[1].in_flight = 2;
        // 3/1, 2/1, 3/2 = 1.5: node 2 now.
        assert_eq!(LeastConn.select(&c), 2);
    }

    #[test]
    fn one_candidate_is_always_chosen() {
        let one = candidates(&[5]);
        for policy in [
            policy(Balance::Random),
            policy(Balance::RoundRobin),
            policy(Balance::LeastConn),
        ] {
            assert_eq!(policy.select(&one), 0);
        }
    }
}
