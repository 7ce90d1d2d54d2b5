//! Prometheus metrics, served at `/module_proxy_inner_mod/metrics` to allowed clients.
//!
//! The registry outlives configuration reloads so counters keep counting; node state and pool sizes are
//! read from the running [`crate::app::App`] at scrape time rather than tracked per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::balancer::Balancer;
use crate::body_budget::BudgetCounters;
use crate::lanes::LaneLoad;
use crate::last_minute::LastMinute;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabel {
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    module: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    module: String,
    node: String,
}

/// What a scrape reports about one backend node.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Module name.
    pub module: String,
    /// Node address.
    pub node: String,
    /// False while the node is masked.
    pub up: bool,
    /// How much longer it stays masked, when it is.
    pub masked_for: Option<std::time::Duration>,
    /// Idle pooled connections to it, where the module keeps a pool of its own; for a pipelined socket
    /// module, every open connection (they are shared, never idle in a pool).
    pub pooled: Option<usize>,
    /// Requests in flight to it now.
    pub in_flight: usize,
    /// Its lanes, where the module pipelines.
    pub lanes: Option<LaneLoad>,
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ModuleLabel, Histogram>,
    node_up: Family<NodeLabels, Gauge>,
    pooled: Family<NodeLabels, Gauge>,
    node_in_flight: Family<NodeLabels, Gauge>,
    lanes_open: Family<NodeLabels, Gauge>,
    lane_requests: Family<NodeLabels, Gauge>,
    /// Client connections open now.
    pub client_connections: Gauge,
    /// Client connections turned away because `max_connections` was reached.
    pub refused_connections: Counter,
    /// TLS handshakes that failed or timed out on the HTTPS listener.
    pub tls_handshake_failures: Counter,
    /// Certificate files that could not be loaded on a reload (the last good certificate serves on).
    pub tls_certificate_errors: Counter,
    /// ACME attempts that failed to obtain or renew a certificate.
    pub tls_acme_failures: Counter,
    /// What `body_memory` holds and refuses; handed to each app's budget, so reloads keep counting.
    pub body_budget: BudgetCounters,
    /// Configuration reloads, by outcome.
    reloads: Family<ReloadLabels, Counter>,
    stream_connections: Family<StreamLabels, Counter>,
    stream_open: Family<StreamLabels, Gauge>,
    stream_unreachable: Family<StreamLabels, Counter>,
    stream_bytes: Family<StreamBytesLabels, Counter>,
    stream_node_up: Family<StreamNodeLabels, Gauge>,
    module_nodes: Family<ModuleLabel, Gauge>,
    dns_lookups: Family<DnsLabels, Counter>,
    dns_failures: Family<DnsLabels, Counter>,
    /// Each stream's balancer by listen address, read at scrape time (streams live outside the `App`).
    stream_balancers: Mutex<Vec<(String, Arc<Balancer>)>>,
    /// Each module's last minute, for the status page; kept across reloads like the counters.
    last_minutes: Mutex<HashMap<String, Arc<LastMinute>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamNodeLabels {
    listen: String,
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    listen: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamBytesLabels {
    listen: String,
    /// `up` (client to node) or `down` (node to client).
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

/// Registers each listed handle of `$metrics` in its registry, under a name and a help text: one line a
/// metric. The handles are clones sharing their values with the struct's.
macro_rules! register {
    ($metrics:ident: $($($handle:ident).+ => $name:literal, $help:literal;)*) => {
        $( $metrics.registry.register($name, $help, $metrics.$($handle).+.clone()); )*
    };
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("modproxy"),
            requests: Family::default(),
            // 0.25 ms .. ~8 s.
            latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00025, 2.0, 16))),
            node_up: Family::default(),
            pooled: Family::default(),
            node_in_flight: Family::default(),
            lanes_open: Family::default(),
            lane_requests: Family::default(),
            client_connections: Gauge::default(),
            refused_connections: Counter::default(),
            tls_handshake_failures: Counter::default(),
            tls_certificate_errors: Counter::default(),
            tls_acme_failures: Counter::default(),
            body_budget: BudgetCounters::default(),
            reloads: Family::default(),
            stream_connections: Family::default(),
            stream_open: Family::default(),
            stream_unreachable: Family::default(),
            stream_bytes: Family::default(),
            stream_node_up: Family::default(),
            module_nodes: Family::default(),
            dns_lookups: Family::default(),
            dns_failures: Family::default(),
            stream_balancers: Mutex::new(Vec::new()),
            last_minutes: Mutex::new(HashMap::new()),
        };
        register!(metrics:
            requests => "requests", "Requests answered, by module and status class";
            latency => "request_duration_seconds", "Time to the response head, by module";
            node_up => "node_up", "1 when a backend node takes traffic, 0 while it is masked";
            pooled => "pooled_connections", "Idle pooled connections per node (for a pipelined socket module, every open connection)";
            node_in_flight => "node_in_flight", "Requests in flight per backend node";
            lanes_open => "lanes_open", "Pipelined connections (lanes) open per node, where the module pipelines";
            lane_requests => "lane_requests", "Requests queued or written on a node's lanes whose replies have not come";
            client_connections => "client_connections", "Client connections open now";
            refused_connections => "refused_connections", "Client connections refused at the max_connections limit";
            tls_handshake_failures => "tls_handshake_failures", "TLS handshakes that failed or timed out";
            tls_certificate_errors => "tls_certificate_errors", "Certificate files that failed to load on a reload; the last good certificate serves on";
            tls_acme_failures => "tls_acme_failures", "ACME attempts that failed to obtain or renew a certificate; the current one serves on";
            body_budget.held => "body_memory_held_bytes", "Bytes of request bodies held in memory now, out of server.body_memory";
            body_budget.waits => "body_memory_waits", "Request bodies that found no room in server.body_memory at once and waited";
            body_budget.refusals => "body_memory_refusals", "Request bodies refused for want of room in server.body_memory (503)";
            reloads => "config_reloads", "Configuration reloads (SIGHUP), by result";
            stream_connections => "stream_connections", "Client connections accepted by a [[stream]], by its listen address";
            stream_open => "stream_open_connections", "Forwarded [[stream]] connections open now";
            stream_unreachable => "stream_unreachable", "[[stream]] client connections closed because no node accepted a connection";
            stream_bytes => "stream_bytes", "Bytes forwarded by a [[stream]]: up is client to node, down is node to client";
            stream_node_up => "stream_node_up", "1 when a [[stream]] node takes connections, 0 while it is masked";
            module_nodes => "module_nodes", "Backend nodes a module has now (its DNS names' latest answers included)";
            dns_lookups => "dns_lookups", "DNS lookups of a node's name";
            dns_failures => "dns_failures", "DNS lookups of a node's name that failed or found nothing (the last nodes were kept)";
        );
        metrics
    }

    /// Reports the nodes of the `[[stream]]` on `listen` as `modproxy_stream_node_up` from now on.
    pub fn watch_stream_nodes(&self, listen: &str, balancer: Arc<Balancer>) {
        self.stream_balancers
            .lock()
            .expect("stream balancer list")
            .push((listen.to_owned(), balancer));
    }

    /// The handles of one `[[stream]]`, created once so a connection never allocates labels.
    pub fn stream(&self, listen: &str) -> StreamMetrics {
        let label = StreamLabels {
            listen: listen.to_owned(),
        };
        let bytes = |direction| {
            self.stream_bytes
                .get_or_create(&StreamBytesLabels {
                    listen: listen.to_owned(),
                    direction,
                })
                .clone()
        };
        StreamMetrics {
            connections: self.stream_connections.get_or_create(&label).clone(),
            open: self.stream_open.get_or_create(&label).clone(),
            unreachable: self.stream_unreachable.get_or_create(&label).clone(),
            bytes_up: bytes("up"),
            bytes_down: bytes("down"),
        }
    }

    /// The per-request handles of one module, created once so a request never allocates labels.
    pub fn module(&self, name: &str) -> ModuleMetrics {
        let class = |class| {
            self.requests
                .get_or_create(&RequestLabels {
                    module: name.to_owned(),
                    class,
                })
                .clone()
        };
        let last_minute = Arc::clone(
            self.last_minutes
                .lock()
                .expect("last minute map")
                .entry(name.to_owned())
                .or_default(),
        );
        ModuleMetrics {
            name: name.into(),
            last_minute,
            by_class: [class("1xx"), class("2xx"), class("3xx"), class("4xx"), class("5xx")],
            latency: self
                .latency
                .get_or_create(&ModuleLabel {
                    module: name.to_owned(),
                })
                .clone(),
        }
    }

    /// Counts a reload attempt.
    pub fn reloaded(&self, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                result: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// The lookups and failures of each DNS name followed now: `(name, lookups, failures)`.
    pub fn dns_counts(&self, counts: &[(String, u64, u64)]) {
        for (name, lookups, failures) in counts {
            let labels = DnsLabels { name: name.clone() };
            // Counted by the lookup task; copied here at scrape time.
            (self.dns_lookups.get_or_create(&labels).inner()).store(*lookups, Ordering::Relaxed);
            (self.dns_failures.get_or_create(&labels).inner()).store(*failures, Ordering::Relaxed);
        }
    }

    /// The text exposition, with node state as of now.
    pub fn render(&self, nodes: &[NodeState]) -> String {
        // Nodes of modules removed by a reload disappear from the output.
        self.node_up.clear();
        self.pooled.clear();
        self.node_in_flight.clear();
        self.lanes_open.clear();
        self.lane_requests.clear();
        self.module_nodes.clear();
        for state in nodes {
            let module = ModuleLabel {
                module: state.module.clone(),
            };
            self.module_nodes.get_or_create(&module).inc();
            let labels = NodeLabels {
                module: state.module.clone(),
                node: state.node.clone(),
            };
            self.node_up.get_or_create(&labels).set(i64::from(state.up));
            if let Some(pooled) = state.pooled {
                self.pooled.get_or_create(&labels).set(pooled as i64);
            }
            self.node_in_flight.get_or_create(&labels).set(state.in_flight as i64);
            if let Some(lanes) = state.lanes {
                self.lanes_open.get_or_create(&labels).set(lanes.open as i64);
                self.lane_requests.get_or_create(&labels).set(lanes.requests as i64);
            }
        }
        for (listen, balancer) in self.stream_balancers.lock().expect("stream balancer list").iter() {
            for (index, node) in balancer.live_nodes() {
                let labels = StreamNodeLabels {
                    listen: listen.clone(),
                    node: node.name().to_string(),
                };
                self.stream_node_up
                    .get_or_create(&labels)
                    .set(i64::from(!balancer.is_masked(index)));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Counters and histogram of one module (or of the root site / built-in pages).
#[derive(Debug, Clone)]
pub struct ModuleMetrics {
    /// The module name, also used by the access log.
    pub name: Arc<str>,
    by_class: [Counter; 5],
    latency: Histogram,
    /// The last sixty seconds, for the status page.
    pub last_minute: Arc<LastMinute>,
}

impl ModuleMetrics {
    /// Records one answered request.
    pub fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.latency.observe(elapsed.as_secs_f64());
        self.last_minute
            .record_at(unix_second(), elapsed, status.is_server_error());
    }
}

/// The current Unix time in whole seconds: the clock of [`LastMinute`] windows.
pub fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Counters of one `[[stream]]`.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// Client connections accepted.
    pub connections: Counter,
    /// Forwarded connections open now.
    pub open: Gauge,
    /// Client connections closed because no node accepted.
    pub unreachable: Counter,
    /// Bytes from clients to nodes.
    pub bytes_up: Counter,
    /// Bytes from nodes to clients.
    pub bytes_down: Counter,
}

/// Whether `peer` may read the metrics: loopback always, others only when listed in `allow`.
pub fn allowed(peer: IpAddr, allow: &[ipnet::IpNet]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    peer.is_loopback() || allow.iter().any(|net| net.contains(&peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_always_others_when_listed() {
        let allow: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &[]));
        assert!(allowed("::1".parse().unwrap(), &[]));
        assert!(allowed("::ffff:127.0.0.1".parse().unwrap(), &[]));
        assert!(!allowed("192.168.1.5".parse().unwrap(), &allow));
        assert!(allowed("10.1.2.3".parse().unwrap(), &allow));
        assert!(allowed("::ffff:10.1.2.3".parse().unwrap(), &allow));
    }

    #[test]
    fn renders_requests_latency_and_nodes() {
        let metrics = Metrics::new();
        let s3 = metrics.module("s3");
        s3.record(StatusCode::OK, Duration::from_millis(3));
        s3.record(StatusCode::BAD_GATEWAY, Duration::from_millis(1));
        let text = metrics.render(&[NodeState {
            module: "s3".into(),
            node: "127.0.0.1:1".into(),
            up: false,
            masked_for: Some(Duration::from_secs(30)),
            pooled: Some(2),
            in_flight: 5,
            lanes: Some(LaneLoad { open: 3, requests: 4 }),
        }]);
        assert!(
            text.contains(r#"modproxy_requests_total{module="s3",class="2xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modproxy_requests_total{module="s3",class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modproxy_request_duration_seconds_count{module="s3"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modproxy_node_up{module="s3",node="127.0.0.1:1"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modproxy_pooled_connections{module="s3",node="127.0.0.1:1"} 2"#),
            "{text}"
        );
        for (name, value) in [("node_in_flight", 5), ("lanes_open", 3), ("lane_requests", 4)] {
            let line = format!(r#"modproxy_{name}{{module="s3",node="127.0.0.1:1"}} {value}"#);
            assert!(text.contains(&line), "{line} in {text}");
        }
        let text = metrics.render(&[]);
        assert!(!text.contains("modproxy_node_up{"), "a removed node disappears");
        assert!(!text.contains("modproxy_lanes_open{"), "a removed node disappears");
    }
}
