//! Self-registration: a backend writes its address under its module's etcd prefix, attached to a lease
//! it keeps alive, so the proxy's etcd watcher adds it while it runs and drops it when it stops.
//!
//! The key is `<prefix><address>` and its value the address (`host:port`); the default prefix is
//! `/modproxy/modules/<module>/`. A clean stop revokes the lease, so the key goes at once; a backend
//! that dies goes when its lease ends (the TTL, 10 s unless set). After losing etcd the backend keeps
//! trying, with backoff, and registers again on a fresh lease if the old one ended meanwhile.
//!
//! ```no_run
//! use modproxy_sdk::{Registration, Router, Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let registration = Registration::new(["http://127.0.0.1:2379"], "orders").advertise("10.0.0.7:7001");
//! Server::bind("0.0.0.0:7001").await?.register(registration).serve(Router::new()).await
//! # }
//! ```

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::etcd::{EtcdClient, EtcdError};

/// How long a registration outlives a backend that died without revoking it, unless set.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The longest wait between two attempts to reach etcd.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The etcd prefix a module's members live under when none is configured.
pub fn default_prefix(module: &str) -> String {
    format!("/modproxy/modules/{module}/")
}

/// Where and how a backend registers itself. Hand it to [`crate::Server::register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    endpoints: Vec<String>,
    prefix: String,
    address: Option<String>,
    ttl: Duration,
}

impl Registration {
    /// Registers with the etcd cluster at `endpoints` (`http://host:port` each) as a member of `module`.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>, module: &str) -> Registration {
        Registration {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: default_prefix(module),
            address: None,
            ttl: DEFAULT_TTL,
        }
    }

    /// Uses `prefix` (it should end in `/`) instead of `/modproxy/modules/<module>/`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The address the proxy should connect to (`host:port`). Unset, the server's own address is
    /// used, which works only when it is bound to a specific IP, not `0.0.0.0`.
    pub fn advertise(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// How long the key outlives a backend that died without a clean stop (whole seconds, at least 1).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The address to advertise: the one set, or `local` when it names a reachable IP.
    pub fn address_for(&self, local: std::net::SocketAddr) -> Option<String> {
        match &self.address {
            Some(address) => Some(address.clone()),
            None if !local.ip().is_unspecified() => Some(local.to_string()),
            None => None,
        }
    }

    /// Starts registering `address` in the background; [`Registered::revoke`] stops it.
    pub fn start(self, address: String) -> Result<Registered, EtcdError> {
        let client = EtcdClient::new(&self.endpoints)?;
        let stop = CancellationToken::new();
        let key = format!("{}{address}", self.prefix);
        let task = tokio::spawn(keep_registered(client, key, address, self.ttl, stop.clone()));
        Ok(Registered { stop, task: Some(task) })
    }
}

/// A registration running in the background.
#[derive(Debug)]
pub struct Registered {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Registered {
    /// Stops renewing and revokes the lease, so the proxy drops this backend now rather than at the TTL.
    pub async fn revoke(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // Dropped without `revoke` (a panic, a runtime going away): at least stop renewing.
        self.stop.cancel();
    }
}

/// The wait before attempt `failures + 1` after `failures` failed ones in a row.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(16))).min(MAX_BACKOFF)
}

/// What a registration does after a keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterKeepAlive {
    /// Renewed: wait a third of the TTL.
    Renewed,
    /// etcd said the lease is gone: register again on a new one.
    Register,
    /// etcd did not answer: try again soon, the lease may still be alive.
    Retry,
}

fn after_keep_alive(result: &Result<Option<u64>, EtcdError>) -> AfterKeepAlive {
    match result {
        Ok(Some(_)) => AfterKeepAlive::Renewed,
        Ok(None) | Err(EtcdError::Refused { .. }) | Err(EtcdError::Endpoint(_)) => AfterKeepAlive::Register,
        Err(EtcdError::Unreachable { .. }) => AfterKeepAlive::Retry,
    }
}

async fn keep_registered(mut client: EtcdClient, key: String, address: String, ttl: Duration, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let lease = match register(&mut client, &key, &address, ttl).await {
            Ok(lease) => {
                tracing::info!(%key, lease, "registered in etcd");
                failures = 0;
                lease
            }
            Err(error) => {
                if failures == 0 {
                    tracing::warn!(%key, %error, "cannot register in etcd; retrying with backoff");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
                failures = failures.saturating_add(1);
                continue;
            }
        };
        let renew_every = (ttl / 3).max(Duration::from_millis(300));
        let mut wait = renew_every;
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    match client.revoke(lease).await {
                        Ok(()) => tracing::info!(%key, "registration revoked"),
                        Err(error) => tracing::warn!(%key, %error, "could not revoke; the key goes at its TTL"),
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {}
            }
            let renewed = client.keep_alive(lease).await;
            match after_keep_alive(&renewed) {
                AfterKeepAlive::Renewed => {
                    if failures > 0 {
                        tracing::info!(%key, "etcd reachable again; lease renewed");
                    }
                    failures = 0;
                    wait = renew_every;
                }
                AfterKeepAlive::Retry => {
                    if failures == 0 {
                        tracing::warn!(%key, error = %renewed.unwrap_err(), "cannot renew the lease; retrying");
                    }
                    wait = backoff(failures).min(renew_every);
                    failures = failures.saturating_add(1);
                }
                AfterKeepAlive::Register => {
                    tracing::warn!(%key, "the lease ended; registering again");
                    break;
                }
            }
        }
    }
}

async fn register(client: &mut EtcdClient, key: &str, address: &str, ttl: Duration) -> Result<i64, EtcdError> {
    let lease = client.grant(ttl).await?;
    client.put(key, address, lease).await?;
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_lost_lease_registers_again_and_silence_retries() {
        let gone = EtcdError::Refused {
            endpoint: "e".into(),
            path: "/v3/lease/keepalive",
            reason: "not found".into(),
        };
        let silent = EtcdError::Unreachable {
            endpoint: "e".into(),
            reason: "refused".into(),
        };
        assert_eq!(after_keep_alive(&Ok(Some(10))), AfterKeepAlive::Renewed);
        assert_eq!(after_keep_alive(&Ok(None)), AfterKeepAlive::Register);
        assert_eq!(after_keep_alive(&Err(gone)), AfterKeepAlive::Register);
        assert_eq!(after_keep_alive(&Err(silent)), AfterKeepAlive::Retry);
    }

    #[test]
    fn the_address_is_the_one_set_or_a_specific_local_one() {
        let registration = Registration::new(["http://127.0.0.1:2379"], "orders");
        assert_eq!(registration.prefix, "/modproxy/modules/orders/");
        assert_eq!(
            registration.address_for("127.0.0.1:7000".parse().unwrap()).as_deref(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(registration.address_for("0.0.0.0:7000".parse().unwrap()), None);
        let set = registration.advertise("10.0.0.7:7000");
        assert_eq!(
            set.address_for("0.0.0.0:7000".parse().unwrap()).as_deref(),
            Some("10.0.0.7:7000")
        );
    }
}
