//! Nodes named in DNS: a host name (`todo.internal:21231`, `http://api.internal:8081`) whose addresses
//! each become a node, or an SRV name (`srv:_todo._tcp.internal`) whose targets, ports and weights do.
//!
//! Each name is looked up by one task however many modules use it, again when its records' TTL runs out
//! (clamped to `[discovery] dns_min_ttl`..`dns_max_ttl`). A failed or empty answer keeps the last good set:
//! DNS trouble never takes nodes away. Until a name's first answer, it contributes no node (a module with
//! no node yet answers 502 "no nodes yet"), and the lookup is retried with backoff.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tokio::sync::watch;

use crate::config::{Config, DnsSettings, Module};

/// What a node's configured form asks DNS for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    /// The A and AAAA records of a host name.
    Host(String),
    /// The SRV records of a service name.
    Srv(String),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Host(name) => write!(f, "{name}"),
            Name::Srv(name) => write!(f, "srv:{name}"),
        }
    }
}

/// A configured node that DNS names, and what its members look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// What to look up.
    pub name: Name,
    /// The port of a host name (an SRV record brings its own).
    pub port: u16,
    /// Members are `http://ip:port` (an HTTP module) rather than `ip:port`.
    pub http: bool,
    /// The authority as configured, which an HTTP node is sent as `Host`.
    pub authority: String,
}

/// The node `configured` (as written in the config) if DNS names it: a host name that is not an IP
/// address, or `srv:NAME`. `localhost` is left to the system, as an address is.
pub fn named(configured: &str, http: bool) -> Option<Named> {
    if let Some(service) = configured.strip_prefix("srv:") {
        return Some(Named {
            name: Name::Srv(service.trim_end_matches('.').to_owned()),
            port: 0,
            http,
            authority: service.to_owned(),
        });
    }
    let authority = match configured.split_once("://") {
        Some((_, rest)) => rest.trim_end_matches('/'),
        None => configured,
    };
    if authority.starts_with('[') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None if configured.contains("://") => (authority, 80),
        None => return None,
    };
    let is_name = host.parse::<IpAddr>().is_err() && !host.eq_ignore_ascii_case("localhost") && !host.is_empty();
    is_name.then(|| Named {
        name: Name::Host(host.to_owned()),
        port,
        http,
        authority: authority.to_owned(),
    })
}

/// One address a name resolved to, with the port and weight its SRV record gave, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The address.
    pub ip: IpAddr,
    /// From an SRV record.
    pub port: Option<u16>,
    /// From an SRV record.
    pub weight: Option<u32>,
}

impl Found {
    /// The member address for the node `named`: `ip:port`, or `http://ip:port`.
    pub fn address(&self, named: &Named) -> String {
        let at = SocketAddr::new(self.ip, self.port.unwrap_or(named.port));
        if named.http {
            format!("http://{at}")
        } else {
            at.to_string()
        }
    }
}

/// What each name the config's nodes are looked up by resolves to now, one line per name, for
/// `modproxy check`; empty when no node is named in DNS. A failed lookup is a line, not an error.
pub fn resolved_now(config: &Config) -> String {
    let mut names: Vec<Name> = Vec::new();
    for module in config.modules.values() {
        let (upstream, http) = match module {
            Module::Http(upstream) => (upstream, true),
            Module::Socket(upstream) => (upstream, false),
            Module::Html { .. } => continue,
        };
        for node in upstream.nodes.iter().filter_map(|node| named(node, http)) {
            if !names.contains(&node.name) {
                names.push(node.name);
            }
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return String::new();
    };
    runtime.block_on(async {
        let dns = match Dns::new(config.dns.clone()) {
            Ok(dns) => dns,
            Err(error) => return format!("DNS names: cannot read the system's DNS settings: {error}\n"),
        };
        let mut out = String::from("DNS names, as they resolve now:\n");
        for name in &names {
            let line = match dns.lookup(name).await {
                Ok(found) => (found.iter())
                    .map(|f| match (f.port, f.weight) {
                        (Some(port), Some(weight)) => format!("{} weight={weight}", SocketAddr::new(f.ip, port)),
                        _ => f.ip.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(why) => format!("lookup failed ({why}); the module would answer 502 until it resolves"),
            };
            out.push_str(&format!("  {name} -> {line}\n"));
        }
        out
    })
}

/// The longest one lookup of a name (with an SRV name's targets) may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// The latest good answer for one name; empty until the first.
pub type Answers = watch::Receiver<Arc<Vec<Found>>>;

/// Lookups made and failed for one name, for /metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Lookups made.
    pub lookups: AtomicU64,
    /// Lookups that failed or found nothing.
    pub failures: AtomicU64,
}

/// The names being followed, shared by every module of the app.
pub struct Dns {
    resolver: TokioResolver,
    settings: DnsSettings,
    names: Mutex<HashMap<Name, (Answers, Arc<Counts>)>>,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Dns {
    /// A resolver asking `settings.nameservers`, or the system's when there are none.
    pub fn new(settings: DnsSettings) -> std::io::Result<Dns> {
        let mut options = ResolverOpts::default();
        // Our own refresh decides when to ask again; the cache must not answer for longer than that.
        options.positive_max_ttl = Some(settings.max_ttl);
        options.negative_max_ttl = Some(settings.min_ttl);
        // A failed lookup is retried by [`Dns::refresh`] with backoff, not by the resolver meanwhile.
        options.timeout = Duration::from_secs(2);
        options.attempts = 1;
        options.cache_size = 0;
        let resolver = if settings.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(std::io::Error::other)?
        } else {
            let mut config = ResolverConfig::new();
            for &server in &settings.nameservers {
                config.add_name_server(NameServerConfig::new(server, Protocol::Udp));
                config.add_name_server(NameServerConfig::new(server, Protocol::Tcp));
            }
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        };
        Ok(Dns {
            resolver: resolver.with_options(options).build(),
            settings,
            names: Mutex::default(),
        })
    }

    /// The registry `config` needs: one when a module has a node DNS names (and a tokio runtime runs).
    pub fn for_config(config: &Config) -> Option<Arc<Dns>> {
        let named = config.modules.values().any(|module| match module {
            Module::Http(upstream) => upstream.nodes.iter().any(|node| named(node, true).is_some()),
            Module::Socket(upstream) => upstream.nodes.iter().any(|node| named(node, false).is_some()),
            Module::Html { .. } => false,
        });
        if !named || tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        match Dns::new(config.dns.clone()) {
            Ok(dns) => Some(Arc::new(dns)),
            Err(error) => {
                tracing::error!(%error, "cannot read the system's DNS settings; nodes named in DNS get no lookups");
                None
            }
        }
    }

    /// The answers for `name`, followed by one task however many callers ask (needs a tokio runtime).
    pub fn follow(self: &Arc<Self>, name: &Name) -> Answers {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((answers, _)) = names.get(name) {
            return answers.clone();
        }
        let (publish, answers) = watch::channel(Arc::new(Vec::new()));
        let counts = Arc::new(Counts::default());
        names.insert(name.clone(), (answers.clone(), Arc::clone(&counts)));
        tokio::spawn(Arc::clone(self).refresh(name.clone(), publish, counts));
        answers
    }

    /// Lookups and failures per name followed now, for /metrics.
    pub fn counts(&self) -> Vec<(String, u64, u64)> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        (names.iter())
            .map(|(name, (_, c))| {
                let (lookups, failures) = (c.lookups.load(Ordering::Relaxed), c.failures.load(Ordering::Relaxed));
                (name.to_string(), lookups, failures)
            })
            .collect()
    }

    /// What `name` resolves to now (for `modproxy check`).
    pub async fn lookup(&self, name: &Name) -> Result<Vec<Found>, String> {
        self.resolve(name).await.map(|(found, _)| found)
    }

    /// Looks `name` up until no module follows it any more, publishing each good answer that differs.
    async fn refresh(self: Arc<Self>, name: Name, publish: watch::Sender<Arc<Vec<Found>>>, counts: Arc<Counts>) {
        let mut failing: Option<String> = None;
        let mut backoff = Duration::from_secs(1).min(self.settings.max_ttl);
        loop {
            counts.lookups.fetch_add(1, Ordering::Relaxed);
            let wait = match self.resolve(&name).await {
                Ok((found, ttl)) => {
                    if failing.take().is_some() {
                        tracing::info!(%name, "DNS answers again");
                    }
                    backoff = Duration::from_secs(1).min(self.settings.max_ttl);
                    publish.send_if_modified(|current| {
                        let changed = **current != found;
                        if changed {
                            tracing::info!(%name, nodes = found.len(), "DNS name resolved to a new set of nodes");
                            *current = Arc::new(found);
                        }
                        changed
                    });
                    ttl.clamp(self.settings.min_ttl, self.settings.max_ttl)
                }
                Err(why) => {
                    counts.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%name, error = why, "DNS lookup failed");
                    // Logged once per change of what is wrong, not once per retry.
                    if failing.as_deref() != Some(&why) {
                        let first = publish.borrow().is_empty();
                        if first {
                            tracing::error!(%name, error = why, "DNS lookup failed; the module has no nodes from this name yet, retrying");
                        } else {
                            tracing::warn!(%name, error = why, "DNS lookup failed; keeping the last nodes it gave");
                        }
                        failing = Some(why);
                    }
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.settings.max_ttl);
                    wait.max(self.settings.min_ttl.min(backoff))
                }
            };
            tokio::time::sleep(wait).await;
            // The registry holds one receiver; with no other, no module uses the name any more.
            if publish.receiver_count() <= 1 {
                let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
                if publish.receiver_count() <= 1 {
                    names.remove(&name);
                    return;
                }
            }
        }
    }

    /// One lookup, bounded by [`LOOKUP_TIMEOUT`]: the addresses found (an error if none) and how long
    /// they are valid.
    async fn resolve(&self, name: &Name) -> Result<(Vec<Found>, Duration), String> {
        tokio::time::timeout(LOOKUP_TIMEOUT, self.resolve_unbounded(name))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", LOOKUP_TIMEOUT.as_secs())))
    }

    async fn resolve_unbounded(&self, name: &Name) -> Result<(Vec<Found>, Duration), String> {
        let (mut found, valid_until) = match name {
            Name::Host(host) => {
                let answer = self
                    .resolver
                    .lookup_ip(host.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let found = (answer.iter())
                    .map(|ip| Found {
                        ip,
                        port: None,
                        weight: None,
                    })
                    .collect::<Vec<_>>();
                (found, answer.valid_until())
            }
            Name::Srv(service) => {
                let answer = self
                    .resolver
                    .srv_lookup(service.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                // Only the most preferred priority is used; the others are for when it is gone entirely.
                let best = answer.iter().map(|srv| srv.priority()).min();
                let mut found = Vec::new();
                let mut valid_until = answer.as_lookup().valid_until();
                for srv in answer.iter().filter(|srv| Some(srv.priority()) == best) {
                    let target = srv.target().to_utf8();
                    let ips = self.resolver.lookup_ip(target.as_str()).await;
                    let Ok(ips) = ips else { continue };
                    valid_until = valid_until.min(ips.valid_until());
                    found.extend(ips.iter().map(|ip| Found {
                        ip,
                        port: Some(srv.port()),
                        weight: Some(u32::from(srv.weight()).max(1)),
                    }));
                }
                (found, valid_until)
            }
        };
        if found.is_empty() {
            return Err("no records".to_owned());
        }
        found.sort_by_key(|f| (f.ip, f.port));
        found.dedup();
        Ok((found, valid_until.saturating_duration_since(Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_told_from_addresses() {
        let todo = named("todo.internal:21231", false).unwrap();
        assert_eq!((todo.name, todo.port), (Name::Host("todo.internal".into()), 21231));
        let api = named("http://api.internal:8081", true).unwrap();
        assert_eq!(
            (api.name, api.port, api.authority.as_str()),
            (Name::Host("api.internal".into()), 8081, "api.internal:8081")
        );
        assert_eq!(named("http://api.internal", true).unwrap().port, 80);
        assert_eq!(
            named("srv:_todo._tcp.internal", false).unwrap().name,
            Name::Srv("_todo._tcp.internal".into())
        );
        for address in [
            "127.0.0.1:9000",
            "http://127.0.0.1:8081",
            "[::1]:9000",
            "http://[::1]:80",
            "localhost:9000",
            "todo.internal",
        ] {
            assert_eq!(named(address, address.starts_with("http")), None, "{address}");
        }
    }

    #[test]
    fn a_found_address_is_a_member_address() {
        let found = Found {
            ip: "10.0.0.7".parse().unwrap(),
            port: None,
            weight: None,
        };
        assert_eq!(
            found.address(&named("http://api.internal:8081", true).unwrap()),
            "http://10.0.0.7:8081"
        );
        let srv = Found {
            port: Some(7000),
            ..found
        };
        assert_eq!(srv.address(&named("srv:_t._tcp.x", false).unwrap()), "10.0.0.7:7000");
    }
}
