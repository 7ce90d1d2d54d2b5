//! The etcd discovery source: a range and then a watch on a module's prefix, whose values are the
//! addresses backends registered (see `modproxy_sdk::registration`), published as [`Members`].
//!
//! When etcd cannot be reached the last set stays published (the backends are most likely still
//! there); the watcher reconnects with backoff, ranges again and follows on. One log line per change
//! of state: following, or etcd lost.

use std::collections::BTreeMap;
use std::sync::Arc;

use modproxy_sdk::etcd::{EtcdClient, EtcdError, WatchEvent};
use modproxy_sdk::registration::backoff;
use tokio::sync::watch;

use super::{Member, Members};

/// The etcd prefix of `module` when its config names none (the same default the SDKs register under).
pub fn default_prefix(module: &str) -> String {
    modproxy_sdk::registration::default_prefix(module)
}

/// Starts watching `prefix` on the cluster at `endpoints` and returns its members; the watch lives as
/// long as a receiver does. This is the seam a module's balancer takes its node set from.
pub fn members(endpoints: &[String], prefix: String) -> Result<Members, EtcdError> {
    let client = EtcdClient::new(endpoints)?;
    let (publish, members) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(follow(client, prefix, publish));
    Ok(members)
}

/// The members a prefix's keys stand for: one per distinct non-empty value, weight 1, in a stable order.
pub fn to_members(keys: &BTreeMap<String, String>) -> Vec<Member> {
    let mut members: Vec<Member> = keys
        .values()
        .map(|value| value.trim())
        .filter(|address| !address.is_empty())
        .map(|address| Member {
            address: address.to_owned(),
            weight: 1,
        })
        .collect();
    members.sort_by(|a, b| a.address.cmp(&b.address));
    members.dedup();
    members
}

/// Applies one watch batch to the known keys.
pub fn apply(keys: &mut BTreeMap<String, String>, events: Vec<WatchEvent>) {
    for event in events {
        match event {
            WatchEvent::Put { key, value } => keys.insert(key, value),
            WatchEvent::Delete { key } => keys.remove(&key),
        };
    }
}

async fn follow(mut client: EtcdClient, prefix: String, publish: watch::Sender<Arc<Vec<Member>>>) {
    let mut failures = 0u32;
    while !publish.is_closed() {
        let error = match watch_once(&mut client, &prefix, &publish, &mut failures).await {
            Ok(()) => return,
            Err(error) => error,
        };
        if failures == 0 {
            let kept = publish.borrow().len();
            tracing::warn!(%prefix, %error, kept, "etcd lost; keeping the last members and retrying with backoff");
        }
        tokio::select! {
            () = publish.closed() => return,
            () = tokio::time::sleep(backoff(failures)) => {}
        }
        failures = failures.saturating_add(1);
    }
}

/// One range and the watch that follows it; returns `Ok` only when nobody listens any more.
async fn watch_once(
    client: &mut EtcdClient,
    prefix: &str,
    publish: &watch::Sender<Arc<Vec<Member>>>,
    failures: &mut u32,
) -> Result<(), EtcdError> {
    let (mut keys, revision) = client.range_prefix(prefix).await?;
    let mut watch = client.watch_prefix(prefix, revision + 1).await?;
    set(publish, to_members(&keys));
    tracing::info!(%prefix, members = publish.borrow().len(), "following etcd");
    *failures = 0;
    loop {
        let events = tokio::select! {
            () = publish.closed() => return Ok(()),
            events = watch.next() => events?,
        };
        apply(&mut keys, events);
        set(publish, to_members(&keys));
    }
}

/// Publishes `members` unless they are what is already published, so receivers wake only on a change.
fn set(publish: &watch::Sender<Arc<Vec<Member>>>, members: Vec<Member>) {
    publish.send_if_modified(|current| {
        let changed = **current != members;
        if changed {
            *current = Arc::new(members);
        }
        changed
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn values_are_the_members_once_each_and_blank_ones_are_skipped() {
        let found = to_members(&keys(&[
            ("/p/b", "10.0.0.2:7000"),
            ("/p/a", "10.0.0.1:7000"),
            ("/p/c", " "),
            ("/p/d", "10.0.0.1:7000"),
        ]));
        let addresses: Vec<&str> = found.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(addresses, ["10.0.0.1:7000", "10.0.0.2:7000"]);
        assert!(found.iter().all(|m| m.weight == 1));
    }

    #[test]
    fn puts_add_or_replace_and_deletes_remove() {
        let mut known = keys(&[("/p/a", "10.0.0.1:7000")]);
        apply(
            &mut known,
            vec![
                WatchEvent::Put {
                    key: "/p/b".into(),
                    value: "10.0.0.2:7000".into(),
                },
                WatchEvent::Delete { key: "/p/a".into() },
                WatchEvent::Put {
                    key: "/p/b".into(),
                    value: "10.0.0.3:7000".into(),
                },
            ],
        );
        assert_eq!(known, keys(&[("/p/b", "10.0.0.3:7000")]));
    }
}
