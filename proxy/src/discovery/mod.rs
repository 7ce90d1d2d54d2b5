//! Where a module's nodes come from: the config, or a source that finds them at run time.
//!
//! A source only publishes sets of [`Member`]s on a [`Members`] channel; the module follows the channel
//! ([`crate::balancer::Balancer::apply`]) and owns what joining and leaving mean for its connections.
//! A fixed list from the config is a channel that never changes, so every module takes one path.

pub mod dns;
pub mod etcd;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{watch, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use dns::Dns;

use crate::config::Discovery;

/// One node a discovery source found: an address as a node is configured
/// (`host:port` for socket modules, `http://ip:port` for HTTP ones) and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The node as configured.
    pub address: String,
    /// Its share of requests relative to the others (at least 1).
    pub weight: u32,
}

/// The latest set of a source; a source never publishes an empty set because a lookup failed.
pub type Members = watch::Receiver<Arc<Vec<Member>>>;

/// Starts the source a module's `discover` names and returns its members (`discover = "etcd"`: the
/// addresses registered under the module's prefix). Call it inside the runtime; the source stops when its
/// receivers do.
pub fn start(discovery: &Discovery) -> Result<Members, modproxy_sdk::etcd::EtcdError> {
    match discovery {
        Discovery::Etcd { endpoints, prefix } => etcd::members(endpoints, prefix.clone()),
    }
}

/// The set `members`, forever: the source of nodes listed in the config.
pub fn fixed(members: Vec<Member>) -> Members {
    // The sender is dropped at once: the set never changes, and followers see the channel closed.
    watch::channel(Arc::new(members)).1
}

/// The members a config's node list and weights describe (weight 1 where none is given).
pub fn listed(nodes: &[String], weights: &[u32]) -> Vec<Member> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, address)| Member {
            address: address.clone(),
            weight: weights.get(i).copied().unwrap_or(1).max(1),
        })
        .collect()
}

/// Keeps a module following its source; dropping it (with the module) ends the following task.
#[derive(Debug)]
pub struct Following(#[allow(dead_code)] Option<DropGuard>);

/// Hands each set `members` publishes to `apply`, the current one first (at once, before this returns,
/// so a module starts with its nodes), then every change in a task, until the source ends or the
/// returned [`Following`] is dropped.
pub fn follow(mut members: Members, mut apply: impl FnMut(&[Member]) + Send + 'static) -> Following {
    let current = Arc::clone(&members.borrow_and_update());
    apply(&current);
    if members.has_changed().is_err() {
        return Following(None);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Following(None);
    };
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    runtime.spawn(async move {
        loop {
            tokio::select! {
                changed = members.changed() => if changed.is_err() { return },
                () = stopped.cancelled() => return,
            }
            let set = Arc::clone(&members.borrow_and_update());
            apply(&set);
        }
    });
    Following(Some(stop.drop_guard()))
}

/// The `Host` each member that came from a DNS host name is sent: its address → the authority configured.
pub type Hosts = Arc<Mutex<HashMap<String, String>>>;

/// The source of a module's configured nodes: fixed, or, for nodes DNS names (see [`dns::named`]),
/// following `dns`; with the `Host` each DNS-found HTTP node is sent.
pub fn members_for(nodes: &[String], weights: &[u32], http: bool, dns: Option<&Arc<Dns>>) -> (Members, Hosts) {
    let hosts = Hosts::default();
    let listed = listed(nodes, weights);
    let parts: Vec<Part> = match dns {
        Some(dns) => (listed.iter().cloned())
            .map(|member| {
                let named = dns::named(&member.address, http).map(|named| {
                    let answers = dns.follow(&named.name);
                    (named, answers)
                });
                Part { member, named }
            })
            .collect(),
        None => Vec::new(),
    };
    if parts.iter().all(|part| part.named.is_none()) {
        return (fixed(listed), hosts);
    }
    let (publish, members) = watch::channel(Arc::new(combine(&parts, &hosts)));
    let (changed, stop) = (Arc::new(Notify::new()), CancellationToken::new());
    for (_, answers) in parts.iter().filter_map(|part| part.named.clone()) {
        let (changed, stop, mut answers) = (Arc::clone(&changed), stop.clone(), answers);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    result = answers.changed() => if result.is_err() { return },
                    () = stop.cancelled() => return,
                }
                changed.notify_one();
            }
        });
    }
    let combined = Arc::clone(&hosts);
    tokio::spawn(async move {
        let _stop = stop.drop_guard();
        loop {
            tokio::select! {
                () = changed.notified() => {}
                () = publish.closed() => return,
            }
            let set = combine(&parts, &combined);
            publish.send_if_modified(|current| {
                let differs = **current != set;
                if differs {
                    *current = Arc::new(set);
                }
                differs
            });
        }
    });
    (members, hosts)
}

/// One configured node: fixed, or named in DNS and followed.
struct Part {
    member: Member,
    named: Option<(dns::Named, dns::Answers)>,
}

/// The members the parts make now: each fixed one, and every address each name resolved to last.
fn combine(parts: &[Part], hosts: &Hosts) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    let mut hosts = hosts.lock().unwrap_or_else(PoisonError::into_inner);
    for part in parts {
        let Some((named, answers)) = &part.named else {
            members.push(part.member.clone());
            continue;
        };
        for found in answers.borrow().iter() {
            let address = found.address(named);
            if matches!(named.name, dns::Name::Host(_)) {
                hosts.insert(address.clone(), named.authority.clone());
            }
            let weight = found.weight.unwrap_or(part.member.weight);
            members.push(Member { address, weight });
        }
    }
    let mut seen = std::collections::HashSet::new();
    members.retain(|member| seen.insert(member.address.clone()));
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addresses: &[&str]) -> Arc<Vec<Member>> {
        Arc::new(listed(
            &addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            &[],
        ))
    }

    #[test]
    fn a_fixed_set_is_applied_once_before_follow_returns() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let _following = follow(fixed((*set(&["a:1"])).clone()), move |s| {
            log.lock().unwrap().push(s.to_vec())
        });
        assert_eq!(*seen.lock().unwrap(), vec![(*set(&["a:1"])).clone()]);
    }

    #[tokio::test]
    async fn every_change_is_applied_until_the_module_lets_go() {
        let (publish, members) = watch::channel(set(&["a:1"]));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let following = follow(members, move |s| log.lock().unwrap().push(s.len()));
        publish.send(set(&["a:1", "b:1"])).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
        drop(following);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            publish.send(set(&[])).is_err(),
            "the following task ended and dropped its receiver"
        );
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
    }
}
