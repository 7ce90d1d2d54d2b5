//! `conf/default.toml`: the seed-compatible configuration, read with serde + toml and resolved into
//! [`Config`], which the rest of the proxy uses. Errors name the file, the line and the key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The name of the built-in module that serves `HOME/html` whatever the config says.
pub const INNER_MODULE: &str = "module_proxy_inner_mod";

/// A configuration error, already phrased for a person: file, line, key and what to do.
#[derive(Debug, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(String);

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// Every configured module by name.
    pub modules: HashMap<String, Module>,
    /// Every configured module's traffic policy, by name.
    pub policies: HashMap<String, Policy>,
    /// `[log] level`.
    pub log_level: LogLevel,
    /// Every `[[stream]]` section, in config order.
    pub streams: Vec<StreamConfig>,
}

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bind address.
    pub listen: IpAddr,
    /// HTTP listen port.
    pub port: u16,
    /// The root site's directory (absolute).
    pub root_path: PathBuf,
    /// Files larger than this are streamed.
    pub chunked_size: u64,
    /// Index file names tried for a directory, in order.
    pub index: Vec<String>,
    /// Request bodies larger than this get 413.
    pub max_body: u64,
    /// Time allowed to receive a request's headers.
    pub header_timeout: Duration,
    /// Most client connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Addresses besides loopback that may read `/module_proxy_inner_mod/metrics`.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Whether a connection that opens with a length line is served as a socket-protocol client.
    pub raw_frames: bool,
}

/// One `[[stream]]`: a TCP port whose connections are forwarded, bytes unchanged, to a balanced node.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Where the proxy listens.
    pub listen: std::net::SocketAddr,
    /// `host:port` of each node, in config order.
    pub nodes: Vec<String>,
    /// Time allowed to open a connection to a node.
    pub connect_timeout: Duration,
    /// How long a node that refused a connection is skipped.
    pub fail_timeout: Duration,
    /// A connection with no bytes in either direction for this long is closed.
    pub idle_timeout: Duration,
}

/// `[log] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: one access line per request, and everything above.
    Info,
    /// Details of connections and pools.
    Debug,
}

impl LogLevel {
    /// The matching `tracing` level.
    pub fn as_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Error => tracing::Level::ERROR,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Debug => tracing::Level::DEBUG,
        }
    }
}

/// What a module does.
#[derive(Debug, Clone)]
pub enum Module {
    /// `module_html`: a static sub-site served from `path`.
    Html {
        /// The sub-site's directory (absolute).
        path: PathBuf,
    },
    /// `module_http`: reverse proxy to upstream URLs.
    Http(Upstream),
    /// `module_socket`: HTTP → length-line socket gateway.
    Socket(Upstream),
}

/// A balanced group of backend nodes and the settings used to talk to them.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `host:port` of each node (socket modules) or `http://host:port` (HTTP modules), in config order.
    pub nodes: Vec<String>,
    /// Each node's weight (1 unless set with `weight=N`), in the same order.
    pub weights: Vec<u32>,
    /// How a node is chosen.
    pub balance: Balance,
    /// Socket modules: `head` fields the proxy sets before framing, overwriting the client's.
    pub head: Vec<(String, HeadSource)>,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a reply (socket) or response headers (HTTP).
    pub timeout: Duration,
    /// How long a failed node is skipped.
    pub fail_timeout: Duration,
    /// Largest reply frame accepted from a socket backend.
    pub max_frame: usize,
    /// Whether backend connections are reused.
    pub keepalive: bool,
    /// HTTP modules: send the client's `Host` instead of the upstream's.
    pub pass_host: bool,
}

/// The node-selection policy of a module (`balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted random among healthy nodes (the default).
    #[default]
    Random,
    /// Weighted round robin among healthy nodes.
    RoundRobin,
    /// The healthy node with the fewest requests in flight per unit of weight.
    LeastConn,
}

/// Where the proxy takes a `head` field from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadSource {
    /// `"header:NAME"`: that request header (the field is removed when the header is absent).
    Header(http::HeaderName),
    /// `"remote_addr"`: the client's IP address.
    RemoteAddr,
    /// `"generate"`: the request's id (its `X-Request-Id`, passed through or generated).
    RequestId,
}

/// Per-module traffic policy; every key is off unless set.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Token bucket per client address.
    pub rate_limit: Option<RateLimit>,
    /// Most requests in flight to the module at once.
    pub max_conns: Option<usize>,
    /// How long a request waits for a `max_conns` slot before it gets 503.
    pub max_conns_wait: Duration,
    /// Response headers added to every response of the module.
    pub add_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// `rate_limit = { rate = 10, burst = 20 }`: requests per second, and how many may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second per client address.
    pub rate: f64,
    /// Requests a client may make at once before the rate applies (default: one second's worth).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl Config {
    /// Reads and resolves a config file. Relative paths inside it resolve against `home`.
    pub fn load(path: &Path, home: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::parse(&text, path, home)
    }

    /// Parses config text; `source` is only used in messages.
    pub fn parse(text: &str, source: &Path, home: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| describe_toml_error(&e, text, source))?;
        resolve(raw, source, home).map_err(|e| ConfigError(format!("{}: {e}", source.display())))
    }
}

// ---- the file as written -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    // Seed keys that describe the deployment; accepted and unused.
    #[serde(default, rename = "name")]
    _name: Option<toml::Value>,
    #[serde(default, rename = "version")]
    _version: Option<toml::Value>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    module: RawModules,
    #[serde(default)]
    upstream: RawUpstream,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    stream: Vec<RawStream>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    port: u16,
    listen: String,
    root_path: String,
    chunked_size: u64,
    index: StringList,
    max_body: u64,
    header_timeout: Seconds,
    max_connections: usize,
    metrics_allow: Vec<String>,
    raw_frames: bool,
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
            header_timeout: Seconds(10.0),
            max_connections: 10_000,
            metrics_allow: Vec::new(),
            raw_frames: false,
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModules {
    #[serde(default)]
    module_html: Vec<RawHtmlModule>,
    #[serde(default)]
    module_http: Vec<RawBackendModule>,
    #[serde(default)]
    module_socket: Vec<RawBackendModule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHtmlModule {
    module: String,
    path: String,
    rate_limit: Option<RateLimit>,
    max_conns: Option<usize>,
    max_conns_wait: Option<Seconds>,
    #[serde(default)]
    add_headers: HashMap<String, String>,
}

/// One `module_http` or `module_socket` entry; which keys are required depends on the list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackendModule {
    module: String,
    proxy_pass: Option<NodeList>,
    forward_pass: Option<NodeList>,
    balance: Option<Balance>,
    head: Option<HashMap<String, String>>,
    rate_limit: Option<RateLimit>,
    max_conns: Option<usize>,
    max_conns_wait: Option<Seconds>,
    #[serde(default)]
    add_headers: HashMap<String, String>,
    ip: Option<String>,
    port: Option<u16>,
    pass_host: Option<bool>,
    connect_timeout: Option<Seconds>,
    timeout: Option<Seconds>,
    fail_timeout: Option<Seconds>,
    max_frame: Option<usize>,
    keepalive: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    connect_timeout: Seconds,
    timeout: Seconds,
    fail_timeout: Seconds,
    max_frame: usize,
    keepalive: bool,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    level: LogLevel,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { level: LogLevel::Info }
    }
}

/// Backend nodes: a comma-separated string (`"a:1, b:2 weight=3"`) or an array of strings and
/// `{ addr = "…", weight = N }` tables.
#[derive(Deserialize)]
#[serde(untagged)]
enum NodeList {
    Text(String),
    Array(Vec<NodeItem>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NodeItem {
    Text(String),
    Table(NodeTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeTable {
    addr: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

impl NodeList {
    /// Each node's address and weight.
    fn nodes(&self) -> Result<Vec<(String, u32)>, String> {
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
fn node_with_weight(text: &str) -> Result<(String, u32), String> {
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
enum StringList {
    Text(String),
    Array(Vec<String>),
}

impl StringList {
    fn items(&self, separators: &[char]) -> Vec<String> {
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
struct Seconds(f64);

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
    fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

// ---- resolution ------------------------------------------------------------------------------------

fn resolve(raw: RawConfig, source: &Path, home: &Path) -> Result<Config, String> {
    let streams = stream_configs(&raw.stream, &raw.upstream)?;
    let server = &raw.server;
    let listen: IpAddr = server.listen.parse().map_err(|_| {
        format!(
            "[server] listen = {:?} is not an IP address (try \"0.0.0.0\" or \"127.0.0.1\")",
            server.listen
        )
    })?;
    let index = server.index.items(&[' ', ',', '\t', '\n']);
    if index.iter().any(|name| name.contains('/') || name == "..") {
        return Err("[server] index must list file names, not paths".into());
    }
    if server.max_connections == 0 {
        return Err("[server] max_connections must be at least 1".into());
    }
    let metrics_allow = server
        .metrics_allow
        .iter()
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("[server] metrics_allow: {entry:?} is not an address or a network like 10.0.0.0/8")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let server_config = ServerConfig {
        listen,
        port: server.port,
        root_path: home.join(&server.root_path),
        chunked_size: server.chunked_size,
        index,
        max_body: server.max_body,
        header_timeout: server.header_timeout.duration(),
        max_connections: server.max_connections,
        metrics_allow,
        raw_frames: server.raw_frames,
    };

    let mut modules = HashMap::new();
    let mut policies = HashMap::new();
    let mut add = |name: &str, list: &str, module: Module, policy: Policy| -> Result<(), String> {
        validate_module_name(name).map_err(|why| format!("{list}: module {name:?} {why}"))?;
        policies.insert(name.to_owned(), policy);
        if modules.insert(name.to_owned(), module).is_some() {
            return Err(format!(
                "{list}: module {name:?} is configured twice; module names must be unique"
            ));
        }
        Ok(())
    };
    for entry in &raw.module.module_html {
        let policy = policy(
            &entry.module,
            entry.rate_limit,
            entry.max_conns,
            entry.max_conns_wait,
            &entry.add_headers,
        )?;
        add(
            &entry.module,
            "module_html",
            Module::Html {
                path: home.join(&entry.path),
            },
            policy,
        )?;
    }
    for (list, entries) in [
        ("module_http", &raw.module.module_http),
        ("module_socket", &raw.module.module_socket),
    ] {
        for entry in entries {
            let upstream = backend_upstream(entry, &raw.upstream, list)?;
            let policy = policy(
                &entry.module,
                entry.rate_limit,
                entry.max_conns,
                entry.max_conns_wait,
                &entry.add_headers,
            )?;
            let module = if list == "module_http" {
                Module::Http(upstream)
            } else {
                Module::Socket(upstream)
            };
            add(&entry.module, list, module, policy)?;
        }
    }
    Ok(Config {
        source: source.to_owned(),
        server: server_config,
        modules,
        policies,
        log_level: raw.log.level,
        streams,
    })
}

fn validate_module_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name == INNER_MODULE {
        return Err("is reserved for the built-in pages");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err("may only hold letters, digits, '-', '_' and '.' (it is a URL path segment)");
    }
    Ok(())
}

fn policy(
    name: &str,
    rate_limit: Option<RateLimit>,
    max_conns: Option<usize>,
    max_conns_wait: Option<Seconds>,
    add_headers: &HashMap<String, String>,
) -> Result<Policy, String> {
    if let Some(limit) = rate_limit {
        if !(limit.rate > 0.0 && limit.rate <= 1e9) || limit.burst == Some(0) {
            return Err(format!(
                "module {name:?}: rate_limit needs 0 < rate <= 1e9 (requests per second) and burst >= 1"
            ));
        }
    }
    if max_conns == Some(0) {
        return Err(format!("module {name:?}: max_conns must be at least 1"));
    }
    let mut headers: Vec<_> = add_headers
        .iter()
        .map(|(header, value)| {
            let header = http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("module {name:?}: add_headers: {header:?} is not a header name"))?;
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                format!("module {name:?}: add_headers: the value of {header} is not a valid header value")
            })?;
            Ok((header, value))
        })
        .collect::<Result<_, String>>()?;
    headers.sort_by(|a: &(http::HeaderName, _), b| a.0.as_str().cmp(b.0.as_str()));
    Ok(Policy {
        rate_limit,
        max_conns,
        max_conns_wait: max_conns_wait.unwrap_or(Seconds(5.0)).duration(),
        add_headers: headers,
    })
}

fn head_rules(name: &str, head: &HashMap<String, String>) -> Result<Vec<(String, HeadSource)>, String> {
    let mut rules = head
        .iter()
        .map(|(field, source)| {
            if field == "method" {
                return Err(format!("module_socket {name:?}: head.method is the client's to choose"));
            }
            let source = match source.as_str() {
                "remote_addr" => HeadSource::RemoteAddr,
                "generate" => HeadSource::RequestId,
                other => {
                    let header = other.strip_prefix("header:").ok_or(format!(
                        "module_socket {name:?}: head.{field} = {other:?}: use \"header:NAME\", \"remote_addr\" or \"generate\""
                    ))?;
                    HeadSource::Header(
                        http::HeaderName::from_bytes(header.as_bytes())
                            .map_err(|_| format!("module_socket {name:?}: head.{field}: {header:?} is not a header name"))?,
                    )
                }
            };
            Ok((field.clone(), source))
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(rules)
}

fn backend_upstream(entry: &RawBackendModule, defaults: &RawUpstream, list: &str) -> Result<Upstream, String> {
    let name = &entry.module;
    let nodes: Vec<(String, u32)> = if list == "module_http" {
        if entry.forward_pass.is_some() || entry.ip.is_some() || entry.port.is_some() {
            return Err(format!(
                "module_http {name:?}: use proxy_pass (forward_pass, ip and port are for module_socket)"
            ));
        }
        let urls = entry
            .proxy_pass
            .as_ref()
            .ok_or(format!("module_http {name:?}: missing proxy_pass"))?;
        let urls = urls
            .nodes()
            .map_err(|why| format!("module_http {name:?}: proxy_pass {why}"))?;
        for (url, _) in &urls {
            check_http_url(url).map_err(|why| format!("module_http {name:?}: proxy_pass {url:?} {why}"))?;
        }
        if entry.head.is_some() {
            return Err(format!("module_http {name:?}: head shaping is for module_socket"));
        }
        urls.into_iter()
            .map(|(u, w)| (u.trim_end_matches('/').to_owned(), w))
            .collect()
    } else {
        if entry.proxy_pass.is_some() || entry.pass_host.is_some() {
            return Err(format!(
                "module_socket {name:?}: use forward_pass (proxy_pass and pass_host are for module_http)"
            ));
        }
        let mut nodes = match &entry.forward_pass {
            Some(list) => list
                .nodes()
                .map_err(|why| format!("module_socket {name:?}: forward_pass {why}"))?,
            None => Vec::new(),
        };
        // The seed's older single-node form.
        match (&entry.ip, entry.port) {
            (Some(ip), Some(port)) => nodes.push((format!("{ip}:{port}"), 1)),
            (None, None) => {}
            _ => return Err(format!("module_socket {name:?}: the older form needs both ip and port")),
        }
        for (node, _) in &nodes {
            check_socket_addr(node).map_err(|why| format!("module_socket {name:?}: node {node:?} {why}"))?;
        }
        nodes
    };
    if let Some((node, _)) = nodes.iter().find(|(_, weight)| *weight == 0) {
        return Err(format!(
            "{list} {name:?}: node {node:?} has weight 0; remove it instead"
        ));
    }
    let head = head_rules(name, entry.head.as_ref().unwrap_or(&HashMap::new()))?;
    let (nodes, weights): (Vec<String>, Vec<u32>) = nodes.into_iter().unzip();
    if nodes.is_empty() {
        return Err(format!("{list} {name:?}: no nodes (give at least one address)"));
    }
    Ok(Upstream {
        nodes,
        weights,
        balance: entry.balance.unwrap_or_default(),
        head,
        connect_timeout: entry.connect_timeout.unwrap_or(defaults.connect_timeout).duration(),
        timeout: entry.timeout.unwrap_or(defaults.timeout).duration(),
        fail_timeout: entry.fail_timeout.unwrap_or(defaults.fail_timeout).duration(),
        max_frame: entry.max_frame.unwrap_or(defaults.max_frame),
        keepalive: entry.keepalive.unwrap_or(defaults.keepalive),
        pass_host: entry.pass_host.unwrap_or(false),
    })
}

fn check_http_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL")?;
    if uri.scheme_str() != Some("http") {
        return Err("must start with http:// (upstream TLS is not supported)");
    }
    if uri.authority().is_none() {
        return Err("has no host");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be scheme://host:port only: the request path is forwarded unchanged");
    }
    Ok(())
}

/// One `[[stream]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    listen: String,
    proxy_pass: StringList,
    connect_timeout: Option<Seconds>,
    fail_timeout: Option<Seconds>,
    idle_timeout: Option<Seconds>,
}

fn stream_configs(raw: &[RawStream], defaults: &RawUpstream) -> Result<Vec<StreamConfig>, String> {
    let mut streams: Vec<StreamConfig> = Vec::with_capacity(raw.len());
    for entry in raw {
        let listen: std::net::SocketAddr = entry.listen.parse().map_err(|_| {
            format!(
                "[[stream]] listen = {:?} is not an address with a port (try \"127.0.0.1:15432\")",
                entry.listen
            )
        })?;
        if streams.iter().any(|other| other.listen == listen) {
            return Err(format!("[[stream]] listen = \"{listen}\" is configured twice"));
        }
        let nodes = entry.proxy_pass.items(&[',']);
        if nodes.is_empty() {
            return Err(format!(
                "[[stream]] {listen}: no nodes in proxy_pass (give at least one host:port)"
            ));
        }
        for node in &nodes {
            check_socket_addr(node).map_err(|why| format!("[[stream]] {listen}: node {node:?} {why}"))?;
        }
        streams.push(StreamConfig {
            listen,
            nodes,
            connect_timeout: entry.connect_timeout.unwrap_or(defaults.connect_timeout).duration(),
            fail_timeout: entry.fail_timeout.unwrap_or(defaults.fail_timeout).duration(),
            idle_timeout: entry.idle_timeout.unwrap_or(Seconds(600.0)).duration(),
        });
    }
    Ok(streams)
}

fn check_socket_addr(node: &str) -> Result<(), &'static str> {
    let (host, port) = node.rsplit_once(':').ok_or("must be host:port")?;
    if host.is_empty() {
        return Err("has no host");
    }
    port.parse::<u16>().map_err(|_| "has a bad port")?;
    Ok(())
}

// ---- error messages -----------------------------------------------------------------------------------

fn describe_toml_error(error: &toml::de::Error, text: &str, source: &Path) -> ConfigError {
    let at = error.span().map(|span| span.start).unwrap_or(0);
    let line = text[..at.min(text.len())].matches('\n').count() + 1;
    let section = section_at(text, at);
    let message = error.message();
    let detail = match unknown_field(message) {
        Some((key, expected)) => {
            let mut detail = format!("unknown key '{key}' in {section}");
            if let Some(close) = closest(key, &expected) {
                detail.push_str(&format!(" (did you mean '{close}'?)"));
            } else if !expected.is_empty() {
                detail.push_str(&format!(" (known keys: {})", expected.join(", ")));
            }
            detail
        }
        None => format!("{} in {section}", message.trim_end()),
    };
    ConfigError(format!("{} line {line}: {detail}", source.display()))
}

/// The `[table]` header in force at byte `at`, for messages.
fn section_at(text: &str, at: usize) -> String {
    text[..at.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find_map(|line| {
            // `[[stream]]` heads an array of tables; any other `[[` starts a value (a nested array).
            if let Some(rest) = line.strip_prefix("[[") {
                let name = rest.split("]]").next().unwrap_or(rest).trim();
                let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                return is_name.then(|| format!("[[{name}]]"));
            }
            line.starts_with('[')
                .then(|| line.split(']').next().unwrap_or(line).to_owned() + "]")
        })
        .unwrap_or_else(|| "the top level".to_owned())
}

/// Picks apart serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are
/// no fields").
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).collect();
    Some((key, expected))
}

/// The known key nearest to `key`, if it is near enough to be a typo.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("conf/default.toml"), Path::new("/home/mp"))
    }

    #[test]
    fn seed_config_runs_unchanged() {
        let config = parse(
            r#"
name = "ModuleProxy"
version = "1.0"
[server]
port = 8080
root_path = "html"
chunked_size = 10485760
index = "index.html index.htm"
[module]
module_html = [ { module = "store", path = "/opt/vue/" } ]
module_http = [ { module = "s2", proxy_pass = "http://127.0.0.1:8081, http://127.0.0.1:8082" } ]
module_socket = [ { module = "s3", forward_pass = """
    127.0.0.1:21231,
    127.0.0.1:21232
""" }, { module = "old", ip = "127.0.0.1", port = 21233 } ]
[log]
level = "info"
"#,
        )
        .unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.server.root_path, Path::new("/home/mp/html"));
        assert_eq!(config.server.index, ["index.html", "index.htm"]);
        let Module::Socket(s3) = &config.modules["s3"] else {
            panic!("s3 is a socket module")
        };
        assert_eq!(s3.nodes, ["127.0.0.1:21231", "127.0.0.1:21232"]);
        assert_eq!(s3.fail_timeout, Duration::from_secs(60));
        let Module::Socket(old) = &config.modules["old"] else {
            panic!("old is a socket module")
        };
        assert_eq!(old.nodes, ["127.0.0.1:21233"]);
        let Module::Http(s2) = &config.modules["s2"] else {
            panic!("s2 is an http module")
        };
        assert_eq!(s2.nodes, ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]);
        assert!(matches!(&config.modules["store"], Module::Html { path } if path == Path::new("/opt/vue/")));
    }

    #[test]
    fn defaults_and_overrides() {
        let config = parse(
            r#"
[upstream]
timeout = 5
[module]
module_socket = [ { module = "a", forward_pass = ["127.0.0.1:1"], timeout = 0.5, keepalive = false } ]
module_http = [ { module = "b", proxy_pass = ["http://127.0.0.1:2/"] } ]
"#,
        )
        .unwrap();
        assert_eq!(config.server.listen.to_string(), "0.0.0.0");
        assert_eq!(config.server.max_body, 10 * 1024 * 1024);
        assert_eq!(config.log_level, LogLevel::Info);
        let Module::Socket(a) = &config.modules["a"] else {
            panic!()
        };
        assert_eq!((a.timeout, a.keepalive), (Duration::from_millis(500), false));
        assert_eq!(a.connect_timeout, Duration::from_secs(3));
        let Module::Http(b) = &config.modules["b"] else {
            panic!()
        };
        assert_eq!(b.timeout, Duration::from_secs(5));
        assert_eq!(b.nodes, ["http://127.0.0.1:2"]);
    }

    #[test]
    fn unknown_key_names_line_section_and_suggestion() {
        let err = parse(
            "[server]\nport = 1\n\n[module]\nmodule_socket = [ { module = \"s3\", forward_pas = \"127.0.0.1:1\" } ]\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config: conf/default.toml line 5: unknown key 'forward_pas' in [module] (did you mean 'forward_pass'?)"
        );
        let err = parse("[sever]\nport = 1\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1: unknown key 'sever'") && err.contains("did you mean 'server'"),
            "{err}"
        );
        let err = parse("[server]\nport = 1\nchunk_size = 5\n").unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("did you mean 'chunked_size'"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_explained() {
        let cases = [
            ("[server]\nport = 70000\n", "line 2"),
            ("[server]\nlisten = \"localhost\"\n", "not an IP address"),
            ("[module]\nmodule_html = [ { module = \"a\", path = \"x\", rate_limit = { rate = 1e12 } } ]\n", "rate <= 1e9"),
            ("[server]\nmax_connections = 0\n", "at least 1"),
            ("[server]\nmetrics_allow = [\"10.0.0.0/33\"]\n", "not an address or a network"),
            ("[upstream]\ntimeout = -1\n", "not a duration"),
            ("[log]\nlevel = \"loud\"\n", "line 2"),
            ("[module]\nmodule_socket = [ { module = \"a\" } ]\n", "no nodes"),
            ("[module]\nmodule_socket = [ { module = \"a\", forward_pass = \"nohost\" } ]\n", "host:port"),
            ("[module]\nmodule_socket = [ { module = \"a\", ip = \"127.0.0.1\" } ]\n", "both ip and port"),
            ("[module]\nmodule_http = [ { module = \"a\", proxy_pass = \"https://x\" } ]\n", "http://"),
            ("[module]\nmodule_http = [ { module = \"a\", proxy_pass = \"http://x/p\" } ]\n", "host:port only"),
            ("[module]\nmodule_http = [ { module = \"a\", forward_pass = \"x:1\" } ]\n", "use proxy_pass"),
            ("[module]\nmodule_html = [ { module = \"a/b\", path = \"x\" } ]\n", "URL path segment"),
            ("[module]\nmodule_html = [ { module = \"module_proxy_inner_mod\", path = \"x\" } ]\n", "reserved"),
            (
                "[module]\nmodule_html = [ { module = \"a\", path = \"x\" } ]\nmodule_socket = [ { module = \"a\", forward_pass = \"h:1\" } ]\n",
                "configured twice",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with("config: conf/default.toml"), "{err}");
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn streams_and_raw_frames() {
        let config = parse(
            r#"
[server]
raw_frames = true
[upstream]
connect_timeout = 2
[[stream]]
listen = "127.0.0.1:15432"
proxy_pass = "db1:5432, db2:5432"
[[stream]]
listen = "0.0.0.0:16379"
proxy_pass = ["127.0.0.1:6379"]
idle_timeout = 30
fail_timeout = 5
"#,
        )
        .unwrap();
        assert!(config.server.raw_frames);
        assert_eq!(config.streams.len(), 2);
        let db = &config.streams[0];
        assert_eq!(db.listen.to_string(), "127.0.0.1:15432");
        assert_eq!(db.nodes, ["db1:5432", "db2:5432"]);
        assert_eq!(
            (db.connect_timeout, db.fail_timeout, db.idle_timeout),
            (
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_secs(600)
            )
        );
        let cache = &config.streams[1];
        assert_eq!(
            (cache.fail_timeout, cache.idle_timeout),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        assert!(!parse("").unwrap().server.raw_frames, "raw_frames is off by default");

        let cases = [
            ("[[stream]]\nlisten = \"15432\"\nproxy_pass = \"a:1\"\n", "not an address with a port"),
            ("[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"\"\n", "no nodes"),
            ("[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"nohost\"\n", "host:port"),
            (
                "[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"a:1\"\n[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"a:1\"\n",
                "configured twice",
            ),
            (
                "[server]\nport = 1\n[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pas = \"a:1\"\n",
                "line 5: unknown key 'proxy_pas' in [[stream]] (did you mean 'proxy_pass'?)",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn closest_only_suggests_near_misses() {
        assert_eq!(closest("timout", &["timeout", "fail_timeout"]), Some("timeout"));
        assert_eq!(closest("banana", &["timeout", "port"]), None);
    }
}
