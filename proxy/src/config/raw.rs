//! The configuration file as written: serde structs that mirror its keys, with the seed's alternative
//! spellings (lists as strings or arrays, weights inside node strings, durations as any number).

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::{AccessFormat, AcmeChallenge, Balance, LogLevel, RateLimit};
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    // Seed keys that describe the deployment; accepted and unused.
    #[serde(default, rename = "name")]
    pub(super) _name: Option<toml::Value>,
    #[serde(default, rename = "version")]
    pub(super) _version: Option<toml::Value>,
    #[serde(default)]
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) module: RawModules,
    #[serde(default)]
    pub(super) upstream: RawUpstream,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) stream: Vec<RawStream>,
    pub(super) tls: Option<RawTls>,
    #[serde(default)]
    pub(super) discovery: RawDiscovery,
}

/// A module's `discover` value.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum DiscoverFrom {
    Etcd,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) port: u16,
    pub(super) listen: String,
    pub(super) root_path: String,
    pub(super) chunked_size: u64,
    pub(super) index: StringList,
    pub(super) max_body: u64,
    pub(super) body_memory: u64,
    pub(super) body_timeout: Seconds,
    pub(super) body_chunk_timeout: Seconds,
    pub(super) send_timeout: Seconds,
    pub(super) websocket_idle_timeout: Seconds,
    pub(super) header_timeout: Seconds,
    pub(super) max_connections: usize,
    pub(super) metrics_allow: Vec<String>,
    pub(super) raw_frames: bool,
    pub(super) dotfiles: bool,
    pub(super) http2_max_streams: u32,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) proxy_protocol: bool,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            port: 8080,
            listen: "0.0.0.0".into(),
            root_path: "html".into(),
            chunked_size: 10 * 1024 * 1024,
            index: StringList::Text("index.html index.htm".into()),
            max_body: 10 * 1024 * 1024,
            body_memory: 256 * 1024 * 1024,
            body_timeout: Seconds(60.0),
            body_chunk_timeout: Seconds(10.0),
            send_timeout: Seconds(60.0),
            websocket_idle_timeout: Seconds(300.0),
            header_timeout: Seconds(10.0),
            max_connections: 10_000,
            metrics_allow: Vec::new(),
            raw_frames: false,
            dotfiles: false,
            http2_max_streams: 100,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModules {
    #[serde(default)]
    pub(super) module_html: Vec<RawHtmlModule>,
    #[serde(default)]
    pub(super) module_http: Vec<RawBackendModule>,
    #[serde(default)]
    pub(super) module_socket: Vec<RawBackendModule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHtmlModule {
    pub(super) module: String,
    pub(super) path: String,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) max_conns: Option<usize>,
    pub(super) max_conns_wait: Option<Seconds>,
    #[serde(default)]
    pub(super) add_headers: HashMap<String, String>,
}

/// One `module_http` or `module_socket` entry; which keys are required depends on the list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackendModule {
    pub(super) module: String,
    pub(super) proxy_pass: Option<NodeList>,
    pub(super) forward_pass: Option<NodeList>,
    pub(super) balance: Option<Balance>,
    pub(super) head: Option<HashMap<String, String>>,
    pub(super) rate_limit: Option<RateLimit>,
    pub(super) max_conns: Option<usize>,
    pub(super) max_conns_wait: Option<Seconds>,
    #[serde(default)]
    pub(super) add_headers: HashMap<String, String>,
    pub(super) ip: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) pass_host: Option<bool>,
    pub(super) ca_file: Option<String>,
    pub(super) insecure: Option<bool>,
    pub(super) connect_timeout: Option<Seconds>,
    pub(super) timeout: Option<Seconds>,
    pub(super) fail_timeout: Option<Seconds>,
    pub(super) max_frame: Option<usize>,
    pub(super) keepalive: Option<bool>,
    pub(super) pipeline: Option<usize>,
    pub(super) max_lanes: Option<usize>,
    pub(super) lane_overdue_share: Option<f64>,
    pub(super) lane_idle_timeout: Option<Seconds>,
    pub(super) discover: Option<DiscoverFrom>,
    pub(super) etcd_prefix: Option<String>,
    pub(super) validate: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawUpstream {
    pub(super) connect_timeout: Seconds,
    pub(super) timeout: Seconds,
    pub(super) fail_timeout: Seconds,
    pub(super) max_frame: usize,
    pub(super) keepalive: bool,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            connect_timeout: Seconds(3.0),
            timeout: Seconds(30.0),
            fail_timeout: Seconds(60.0),
            max_frame: modproxy_sdk::frame::DEFAULT_MAX_FRAME,
            keepalive: true,
        }
    }
}

/// `[discovery]`: the services modules find their nodes in (etcd), and how names in DNS are looked up.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDiscovery {
    /// The etcd cluster's client URLs, for modules with `discover = "etcd"`.
    pub(super) etcd: Vec<String>,
    pub(super) nameservers: Vec<String>,
    pub(super) dns_min_ttl: Seconds,
    pub(super) dns_max_ttl: Seconds,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        RawDiscovery {
            etcd: Vec::new(),
            nameservers: Vec::new(),
            dns_min_ttl: Seconds(1.0),
            dns_max_ttl: Seconds(300.0),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) level: LogLevel,
    pub(super) access: AccessSetting,
    pub(super) access_format: AccessFormat,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: LogLevel::Info,
            access: AccessSetting::Switch(true),
            access_format: AccessFormat::Combined,
        }
    }
}

/// `[log] access`: a file (relative to HOME), `"off"`, or as before the file existed, `true` (the default
/// file) or `false` (off).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum AccessSetting {
    Switch(bool),
    File(String),
}

/// Backend nodes: a comma-separated string (`"a:1, b:2 weight=3"`) or an array of strings and
/// `{ addr = "…", weight = N }` tables.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NodeList {
    Text(String),
    Array(Vec<NodeItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NodeItem {
    Text(String),
    Table(NodeTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeTable {
    pub(super) addr: String,
    #[serde(default = "one")]
    pub(super) weight: u32,
}

pub(super) fn one() -> u32 {
    1
}

impl NodeList {
    /// Each node's address and weight.
    pub(super) fn nodes(&self) -> Result<Vec<(String, u32)>, String> {
        let items: Vec<&str> = match self {
            NodeList::Text(text) => text.split(',').collect(),
            NodeList::Array(items) => {
                return items
                    .iter()
                    .map(|item| match item {
                        NodeItem::Text(text) => node_with_weight(text),
                        NodeItem::Table(table) => Ok((table.addr.trim().to_owned(), table.weight)),
                    })
                    .filter(|node| node.as_ref().map_or(true, |(addr, _)| !addr.is_empty()))
                    .collect();
            }
        };
        items
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(node_with_weight)
            .collect()
    }
}

/// `"127.0.0.1:21231"` or `"127.0.0.1:21231 weight=3"`.
pub(super) fn node_with_weight(text: &str) -> Result<(String, u32), String> {
    let mut words = text.split_whitespace();
    let addr = words.next().unwrap_or_default().to_owned();
    let mut weight = 1;
    for word in words {
        weight = word
            .strip_prefix("weight=")
            .and_then(|w| w.parse().ok())
            .ok_or(format!("{text:?}: after the address only weight=N may follow"))?;
    }
    Ok((addr, weight))
}

/// A list written either as one string (comma- or space-separated) or as an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StringList {
    Text(String),
    Array(Vec<String>),
}

impl StringList {
    pub(super) fn items(&self, separators: &[char]) -> Vec<String> {
        let split: Vec<&str> = match self {
            StringList::Text(text) => text.split(separators).collect(),
            StringList::Array(items) => items.iter().map(String::as_str).collect(),
        };
        split
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A duration in seconds, written as an integer or a float.
#[derive(Clone, Copy, Deserialize)]
#[serde(try_from = "f64")]
pub(super) struct Seconds(pub(super) f64);

impl TryFrom<f64> for Seconds {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        if (0.0..=86_400.0 * 365.0).contains(&value) {
            Ok(Seconds(value))
        } else {
            Err(format!("{value} is not a duration in seconds (a number from 0 up)"))
        }
    }
}

impl Seconds {
    pub(super) fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

/// One `[[stream]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    pub(super) listen: String,
    pub(super) proxy_pass: StringList,
    pub(super) connect_timeout: Option<Seconds>,
    pub(super) fail_timeout: Option<Seconds>,
    pub(super) idle_timeout: Option<Seconds>,
    pub(super) max_connections: Option<usize>,
}

/// `[tls]` as written: the HTTPS listener.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) port: u16,
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) redirect_http: bool,
    pub(super) hsts_max_age: Option<u64>,
    #[serde(default)]
    pub(super) certificate: Vec<RawCertificate>,
    pub(super) acme: Option<RawAcme>,
}

/// `[tls] acme = { ... }`: certificates obtained and renewed from an ACME server.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAcme {
    pub(super) email: String,
    pub(super) domains: Vec<String>,
    pub(super) directory: String,
    pub(super) ca_root: Option<String>,
    pub(super) renew_before: Option<Seconds>,
    pub(super) check_every: Option<Seconds>,
    pub(super) challenge: Option<AcmeChallenge>,
}

/// One `[[tls.certificate]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    #[serde(default)]
    pub(super) names: Vec<String>,
    pub(super) cert: String,
    pub(super) key: String,
}
