//! `conf/default.toml`: the seed-compatible configuration, read with serde + toml and resolved into
//! [`Config`], which the rest of the proxy uses. Errors name the file, the line and the key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod key_path;
mod messages;
mod raw;
mod resolve;

use messages::{describe_toml_error, line_of};
use raw::RawConfig;
use resolve::resolve;

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
    /// `[log] access` and `access_format`: where and how each answered request is written; `None` when off.
    pub access_log: Option<AccessLogConfig>,
    /// Every `[[stream]]` section, in config order.
    pub streams: Vec<StreamConfig>,
    /// `[tls]`: the HTTPS listener, when configured.
    pub tls: Option<TlsConfig>,
    /// `[discovery]`: where and how often nodes named in DNS are looked up.
    pub dns: DnsSettings,
}

/// `[discovery]`: how nodes named in DNS are looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSettings {
    /// Where queries go; empty = the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<std::net::SocketAddr>,
    /// The shortest wait before a name is looked up again, whatever its TTL.
    pub min_ttl: std::time::Duration,
    /// The longest wait before a name is looked up again, whatever its TTL.
    pub max_ttl: std::time::Duration,
}

/// `[tls]`, resolved: an HTTPS listener beside the HTTP one.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// Where the HTTPS listener binds (`[tls] listen`, default `[server] listen`, and `port`).
    pub listen: std::net::SocketAddr,
    /// The certificates, in config order; the first is served when no name matches.
    pub certificates: Vec<CertificateFiles>,
    /// Plain-HTTP requests are answered 308 to the same URL over HTTPS.
    pub redirect_http: bool,
    /// The `Strict-Transport-Security` value HTTPS responses carry, when `hsts_max_age` is set.
    pub hsts: Option<http::HeaderValue>,
    /// `acme = { ... }`: certificates obtained and renewed automatically.
    pub acme: Option<AcmeConfig>,
}

/// `[tls] acme`, resolved. Its certificate is the last of [`TlsConfig::certificates`] (marked `managed`).
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The account's contact address.
    pub email: String,
    /// The names the certificate covers (lower case).
    pub domains: Vec<String>,
    /// The ACME directory URL.
    pub directory: String,
    /// A PEM root to trust for the directory's own HTTPS (a private or test ACME server).
    pub ca_root: Option<PathBuf>,
    /// Renew when the certificate expires within this.
    pub renew_before: Duration,
    /// How often expiry is checked (and a failed attempt retried).
    pub check_every: Duration,
    /// Where the account and the certificates are kept: `HOME/certs/acme`.
    pub dir: PathBuf,
    /// How the names are proven (`challenge`).
    pub challenge: AcmeChallenge,
}

/// `[tls] acme.challenge`: how the ACME server checks that the names are this server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum AcmeChallenge {
    /// A file fetched from the plain HTTP port (which must be reachable as port 80).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate the HTTPS listener shows for ALPN `acme-tls/1` (it must be reachable as port 443).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// One `[[tls.certificate]]`: PEM files (absolute) and the server names they answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertificateFiles {
    /// Lower-case names: `example.com`, or `*.example.com` for any one label before it.
    pub names: Vec<String>,
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Written by ACME: missing until the first certificate is obtained, which is not an error.
    pub managed: bool,
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
    /// Most bytes of request bodies held in memory at once, over all clients.
    pub body_memory: u64,
    /// Time allowed to receive a whole request body.
    pub body_timeout: Duration,
    /// Longest pause allowed between a request body's bytes.
    pub body_chunk_timeout: Duration,
    /// Longest a write to a client may wait for it to read.
    pub send_timeout: Duration,
    /// An upgraded connection (a WebSocket) that moves no byte for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// Time allowed to receive a request's headers.
    pub header_timeout: Duration,
    /// Most client connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Addresses besides loopback that may read `/module_proxy_inner_mod/metrics`.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// Whether a connection that opens with a length line is served as a socket-protocol client.
    pub raw_frames: bool,
    /// Whether static sites serve dot-files and dot-directories (`.well-known/` always is).
    pub dotfiles: bool,
    /// Most streams (requests) open at once on one HTTP/2 connection; more are refused (REFUSED_STREAM).
    pub http2_max_streams: u32,
    /// Proxies in front whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether every connection starts with a PROXY protocol header (v1 or v2) naming the client.
    pub proxy_protocol: bool,
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
    /// Most connections open at once; more are closed at once.
    pub max_connections: usize,
}

/// `[log] access` and `access_format`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    /// The access log file (absolute); rotated like the main log.
    pub path: PathBuf,
    /// The line format.
    pub format: AccessFormat,
}

/// `[log] access_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    /// nginx's `combined`, so that existing tools parse it.
    Combined,
    /// One JSON object per line, with the module, node and request id too.
    Json,
}

/// `[log] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: lifecycle events (start, reload, stop) and everything above.
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
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
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
    /// Most requests in flight on one backend connection (for HTTP modules, bodyless `GET` and `HEAD`
    /// only); 0 or 1 sends one at a time.
    pub pipeline: usize,
    /// Socket modules with `pipeline`: most shared connections (lanes) open at once to one node.
    pub max_lanes: usize,
    /// Socket modules with `pipeline`: the share of `timeout` a lane's oldest request may wait before the
    /// lane takes no new requests.
    pub lane_overdue_share: f64,
    /// Socket modules with `pipeline`: how long a lane with nothing to do stays open.
    pub lane_idle_timeout: Duration,
    /// Socket modules: check each request's `data` against its method's schema from `_describe`.
    pub validate: bool,
    /// HTTP modules: send the client's `Host` instead of the upstream's.
    pub pass_host: bool,
    /// HTTP modules: PEM CA certificates trusted for `https://` nodes besides the system's (`ca_file`).
    pub ca_file: Option<PathBuf>,
    /// HTTP modules: `https://` nodes' certificates are not checked (`insecure = true`).
    pub insecure: bool,
    /// Where the module's nodes are found at run time (`discover`), if anywhere.
    pub discover: Option<Discovery>,
}

/// A discovery source of a module (`discover`), with what it needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// `discover = "etcd"`: the addresses registered under `prefix` in the `[discovery] etcd` cluster.
    Etcd {
        /// The cluster's client URLs (`http://host:port`).
        endpoints: Vec<String>,
        /// `etcd_prefix`, or `/modproxy/modules/<module>/`.
        prefix: String,
    },
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
    /// `"generate"`: an id the proxy makes for this request, never one the client sent.
    Generated,
}

/// Per-module traffic policy; every key is off unless set.
#[derive(Debug, Clone, Default, PartialEq)]
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
        resolve(raw, source, home).map_err(|invalid| {
            ConfigError(match invalid.key.offset_in(text) {
                Some(at) => format!("{} line {}: {}", source.display(), line_of(text, at), invalid.message),
                None => format!("{}: {}", source.display(), invalid.message),
            })
        })
    }
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
    fn validate_is_for_socket_modules() {
        let config = parse(
            "[module]\nmodule_socket = [ { module = \"s\", forward_pass = \"127.0.0.1:1\", validate = true } ]\n",
        )
        .unwrap();
        let Module::Socket(s) = &config.modules["s"] else {
            panic!()
        };
        assert!(s.validate);
        let error = parse(
            "[module]\nmodule_http = [ { module = \"h\", proxy_pass = \"http://127.0.0.1:1\", validate = true } ]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("module_http \"h\": validate is for module_socket"),
            "{error}"
        );
    }

    #[test]
    fn pipeline_is_for_kept_connections() {
        let config = parse(concat!(
            "[module]\n",
            "module_socket = [ { module = \"s\", forward_pass = \"127.0.0.1:1\", pipeline = 16 } ]\n",
            "module_http = [ { module = \"h\", proxy_pass = \"http://127.0.0.1:1\", pipeline = 4 } ]\n",
        ))
        .unwrap();
        let (Module::Socket(s), Module::Http(h)) = (&config.modules["s"], &config.modules["h"]) else {
            panic!()
        };
        assert_eq!((s.pipeline, h.pipeline), (16, 4));
        for (entry, needle) in [
            (
                r#"module_http = [ { module = "h", proxy_pass = "http://127.0.0.1:1", pipeline = 4, keepalive = false } ]"#,
                "module_http \"h\": pipeline = 4 needs keepalive",
            ),
            (
                r#"module_socket = [ { module = "s", forward_pass = "127.0.0.1:1", pipeline = 4, keepalive = false } ]"#,
                "module_socket \"s\": pipeline = 4 needs keepalive",
            ),
        ] {
            let error = parse(&format!("[module]\n{entry}\n")).unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
        }
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
            ("[upstream]\ntimeout = -1\n", "line 2: timeout: expected a number of seconds"),
            ("[log]\nlevel = \"loud\"\n", "line 2"),
            ("[module]\nmodule_socket = [ { module = \"a\" } ]\n", "no nodes"),
            ("[module]\nmodule_socket = [ { module = \"a\", forward_pass = \"nohost\" } ]\n", "host:port"),
            ("[module]\nmodule_socket = [ { module = \"a\", ip = \"127.0.0.1\" } ]\n", "both ip and port"),
            ("[module]\nmodule_http = [ { module = \"a\", proxy_pass = \"ftp://x\" } ]\n", "http:// or https://"),
            (
                "[module]\nmodule_http = [ { module = \"a\", proxy_pass = \"https://x\", pipeline = 4 } ]\n",
                "for http:// nodes only",
            ),
            ("[module]\nmodule_http = [ { module = \"a\", proxy_pass = \"http://x\", insecure = true } ]\n", "has none"),
            ("[module]\nmodule_socket = [ { module = \"a\", forward_pass = \"x:1\", ca_file = \"c\" } ]\n", "module_http"),
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
    fn a_module_discovered_in_etcd_gets_the_cluster_and_its_prefix() {
        let config = parse(
            "[discovery]\netcd = [\"http://127.0.0.1:2379\"]\n[module]\nmodule_socket = [\n  \
             { module = \"s\", discover = \"etcd\" },\n  \
             { module = \"t\", discover = \"etcd\", etcd_prefix = \"/x/\" },\n  \
             { module = \"u\", forward_pass = \"h:1\" },\n]\n",
        )
        .unwrap();
        let discover = |name: &str| match &config.modules[name] {
            Module::Socket(upstream) => upstream.discover.clone(),
            other => panic!("{other:?}"),
        };
        let etcd = |prefix: &str| Discovery::Etcd {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: prefix.into(),
        };
        assert_eq!(discover("s"), Some(etcd("/modproxy/modules/s/")));
        assert_eq!(discover("t"), Some(etcd("/x/")));
        assert_eq!(discover("u"), None);
    }

    /// Every key of README's configuration reference, given a value of the wrong kind or out of range:
    /// the message names the line, the key, and what to write.
    #[test]
    fn every_key_with_a_bad_value_is_named_with_its_line() {
        let socket = |entry: &str| {
            format!("[module]\nmodule_socket = [ {{ module = \"s\", forward_pass = \"h:1\", {entry} }} ]\n")
        };
        let http = |entry: &str| {
            format!("[module]\nmodule_http = [ {{ module = \"h\", proxy_pass = \"http://h:1\", {entry} }} ]\n")
        };
        let html = |entry: &str| format!("[module]\nmodule_html = [ {{ module = \"a\", path = \"x\", {entry} }} ]\n");
        let stream = |entry: &str| format!("[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"h:1\"\n{entry}\n");
        let cases: Vec<(String, &str)> =
            vec![
            (
                "[discovery]\ndns_max_ttl = \"long\"\n".into(),
                "line 3: dns_max_ttl: expected a number of seconds",
            ),
            (
                "[discovery]\nnameservers = [\"127.0.0.1\"]\n".into(),
                "line 3: [discovery] nameservers: \"127.0.0.1\" is not an address with a port",
            ),
            (
                "[server]\nport = \"eighty\"\n".into(),
                "line 3: port: expected an integer from 1 to 65535, found the string \"eighty\"",
            ),
            (
                "[server]\nport = 70000\n".into(),
                "line 3: port: expected an integer from 1 to 65535, found 70000",
            ),
            (
                "[server]\nport = 0\n".into(),
                "line 3: port: expected an integer from 1 to 65535, found 0",
            ),
            (
                "[server]\nhttp2_max_streams = \"many\"\n".into(),
                "line 3: http2_max_streams: expected a whole number from 1 up",
            ),
            (
                "[server]\nhttp2_max_streams = 0\n".into(),
                "line 3: [server] http2_max_streams must be at least 1",
            ),
            (
                "[server]\ntrusted_proxies = \"10.0.0.0/8\"\n".into(),
                "line 3: trusted_proxies: expected an array of addresses or networks",
            ),
            (
                "[server]\ntrusted_proxies = [\"proxy.local\"]\n".into(),
                "line 3: [server] trusted_proxies: \"proxy.local\" is not an address",
            ),
            (
                "[server]\nproxy_protocol = \"yes\"\n".into(),
                "line 3: proxy_protocol: expected true or false",
            ),
            (
                "[server]\ndotfiles = 1\n".into(),
                "line 3: dotfiles: expected true or false",
            ),
            (
                "[server]\nlisten = 127\n".into(),
                "line 3: listen: expected an IP address in quotes",
            ),
            (
                "[server]\nlisten = \"localhost\"\n".into(),
                "line 3: [server] listen = \"localhost\" is not an IP address",
            ),
            (
                "[server]\nroot_path = 1\n".into(),
                "line 3: root_path: expected a directory in quotes",
            ),
            ("[server]\nindex = 5\n".into(), "line 3: index: expected file names"),
            (
                "[server]\nindex = \"a/b.html\"\n".into(),
                "line 3: [server] index must list file names",
            ),
            (
                "[server]\nchunked_size = \"10M\"\n".into(),
                "line 3: chunked_size: expected a number of bytes",
            ),
            (
                "[server]\nmax_body = -1\n".into(),
                "line 3: max_body: expected a number of bytes, a whole number like 10485760, found -1",
            ),
            (
                "[server]\nheader_timeout = \"5s\"\n".into(),
                "line 3: header_timeout: expected a number of seconds",
            ),
            (
                "[server]\nmax_connections = 0\n".into(),
                "line 3: [server] max_connections must be at least 1",
            ),
            (
                "[server]\nmax_connections = 1.5\n".into(),
                "line 3: max_connections: expected a whole number from 1 up, found 1.5",
            ),
            (
                "[server]\nmetrics_allow = \"10.0.0.0/8\"\n".into(),
                "line 3: metrics_allow: expected an array of addresses",
            ),
            (
                "[server]\nmetrics_allow = [8]\n".into(),
                "line 3: metrics_allow: expected an array of addresses",
            ),
            (
                "[server]\nmetrics_allow = [\"10.0.0.0/33\"]\n".into(),
                "line 3: [server] metrics_allow: \"10.0.0.0/33\" is not an address",
            ),
            (
                "[server]\nraw_frames = \"yes\"\n".into(),
                "line 3: raw_frames: expected true or false",
            ),
            (
                "[module]\nmodule_html = [ { module = 1, path = \"x\" } ]\n".into(),
                "line 3: module: expected a module name",
            ),
            (
                "[module]\nmodule_html = [ { module = \"a\", path = [] } ]\n".into(),
                "line 3: path: expected a directory",
            ),
            (
                "[module]\nmodule_http = [ { module = \"h\", proxy_pass = 8081 } ]\n".into(),
                "line 3: proxy_pass: expected upstream URLs",
            ),
            (
                http("pass_host = 1"),
                "line 3: pass_host: expected true or false (without quotes), found 1",
            ),
            (
                http("insecure = \"yes\""),
                "line 3: insecure: expected true or false (without quotes)",
            ),
            (
                http("ca_file = 1"),
                "line 3: ca_file: expected a PEM file of CA certificates",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", forward_pass = 21231 } ]\n".into(),
                "line 3: forward_pass: expected host:port nodes",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", forward_pass = [ { addr = 1 } ] } ]\n".into(),
                "line 3: forward_pass: expected host:port nodes",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", forward_pass = \"h:1 weight=0\" } ]\n".into(),
                "line 3: module_socket \"s\": node \"h:1\" has weight 0",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", ip = 127, port = 1 } ]\n".into(),
                "line 3: ip: expected an IP address in quotes",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", ip = \"h\", port = 65536 } ]\n".into(),
                "line 3: port: expected an integer from 1 to 65535, found 65536",
            ),
            (
                "[module]\nmodule_socket = [ { module = \"s\", ip = \"h\", port = 0 } ]\n".into(),
                "line 3: module_socket \"s\": port: expected an integer from 1 to 65535, found 0",
            ),
            (
                socket("balance = \"fastest\""),
                "line 3: balance: expected \"random\", \"round_robin\" or \"least_conn\", found the string \"fastest\"",
            ),
            (
                socket("rate_limit = 10"),
                "line 3: rate_limit: expected a table like { rate = 10, burst = 20 }",
            ),
            (
                socket("rate_limit = { rate = \"fast\" }"),
                "line 3: rate_limit.rate: expected requests per second",
            ),
            (
                socket("rate_limit = { rate = 1, burst = -1 }"),
                "line 3: rate_limit.burst: expected a whole number from 1",
            ),
            (
                socket("rate_limit = { rate = 0 }"),
                "line 3: module \"s\": rate_limit needs 0 < rate",
            ),
            (
                html("max_conns = \"many\""),
                "line 3: max_conns: expected a whole number from 1 up",
            ),
            (
                html("max_conns = 0"),
                "line 3: module \"a\": max_conns must be at least 1",
            ),
            (
                html("max_conns_wait = -2"),
                "line 3: max_conns_wait: expected a number of seconds",
            ),
            (
                html("add_headers = [\"X-A: 1\"]"),
                "line 3: add_headers: expected a table of headers",
            ),
            (
                html("add_headers = { \"X-A\" = 1 }"),
                "line 3: add_headers.X-A: expected a header value in quotes",
            ),
            (
                socket("pipeline = -1"),
                "line 3: pipeline: expected a whole number from 0 up",
            ),
            (
                socket("max_lanes = \"many\""),
                "line 3: max_lanes: expected a whole number from 1 up",
            ),
            (socket("max_lanes = 0"), "max_lanes must be at least 1"),
            (socket("validate = \"yes\""), "line 3: validate: expected true or false"),
            (
                socket("lane_overdue_share = \"half\""),
                "line 3: lane_overdue_share: expected a share of timeout",
            ),
            (socket("lane_overdue_share = 1.5"), "lane_overdue_share must be above 0 and at most 1"),
            (
                socket("lane_idle_timeout = -1"),
                "line 3: lane_idle_timeout: expected a number of seconds",
            ),
            (socket("lane_idle_timeout = 0"), "lane_idle_timeout must be more than 0"),
            (socket("head = \"x\""), "line 3: head: expected a table of fields"),
            (
                socket("head = { token = 1 }"),
                "line 3: head.token: expected where the field comes from",
            ),
            (
                socket("head = { token = \"cookie\" }"),
                "line 3: module_socket \"s\": head.token = \"cookie\"",
            ),
            (
                socket("connect_timeout = true"),
                "line 3: connect_timeout: expected a number of seconds",
            ),
            (
                socket("timeout = \"30s\""),
                "line 3: timeout: expected a number of seconds",
            ),
            (
                socket("fail_timeout = -1"),
                "line 3: fail_timeout: expected a number of seconds, like 5 or 0.5 (from 0 up to a year), found -1",
            ),
            (
                socket("max_frame = 1e9"),
                "line 3: max_frame: expected a number of bytes",
            ),
            (
                socket("keepalive = \"no\""),
                "line 3: keepalive: expected true or false",
            ),
            (
                socket("discover = \"consul\""),
                "line 3: discover: expected where the module's nodes are registered: \"etcd\"",
            ),
            (
                socket("discover = \"etcd\""),
                "line 3: module_socket \"s\": discover = \"etcd\" needs [discovery] etcd",
            ),
            (
                socket("etcd_prefix = 5"),
                "line 3: etcd_prefix: expected an etcd key prefix in quotes",
            ),
            (
                socket("etcd_prefix = \"/m/\""),
                "line 3: module_socket \"s\": etcd_prefix needs discover = \"etcd\"",
            ),
            (
                format!(
                    "[discovery]\netcd = [\"http://e:2379\"]\n{}",
                    socket("discover = \"etcd\", etcd_prefix = \"/m\"")
                ),
                "line 5: module_socket \"s\": etcd_prefix \"/m\" must end with '/'",
            ),
            (
                "[discovery]\netcd = \"http://127.0.0.1:2379\"\n".into(),
                "line 3: etcd: expected an array of etcd client URLs",
            ),
            (
                "[upstream]\nconnect_timeout = \"3\"\n".into(),
                "line 3: connect_timeout: expected a number of seconds",
            ),
            (
                "[upstream]\ntimeout = -1\n".into(),
                "line 3: timeout: expected a number of seconds",
            ),
            (
                "[upstream]\nfail_timeout = [60]\n".into(),
                "line 3: fail_timeout: expected a number of seconds",
            ),
            (
                "[upstream]\nmax_frame = -5\n".into(),
                "line 3: max_frame: expected a number of bytes",
            ),
            (
                "[upstream]\nkeepalive = 0\n".into(),
                "line 3: keepalive: expected true or false",
            ),
            (
                "[log]\nlevel = \"loud\"\n".into(),
                "line 3: level: expected \"error\", \"warn\", \"info\" or \"debug\", found the string \"loud\"",
            ),
            (
                "[log]\naccess = 5\n".into(),
                "line 3: access: expected a file in quotes, like \"logs/access.log\", or \"off\"",
            ),
            (
                "[log]\naccess_format = \"clf\"\n".into(),
                "line 3: access_format: expected \"combined\" or \"json\"",
            ),
            (
                "[[stream]]\nlisten = 15432\nproxy_pass = \"h:1\"\n".into(),
                "line 3: listen: expected an address with a port",
            ),
            (
                "[[stream]]\nlisten = \"15432\"\nproxy_pass = \"h:1\"\n".into(),
                "line 3: [[stream]] listen = \"15432\" is not an address with a port",
            ),
            (
                "[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = 5432\n".into(),
                "line 4: proxy_pass: expected host:port nodes",
            ),
            (
                "[[stream]]\nlisten = \"127.0.0.1:1\"\nproxy_pass = \"nohost\"\n".into(),
                "line 4: [[stream]] 127.0.0.1:1: node \"nohost\" must be host:port",
            ),
            (
                stream("connect_timeout = \"1\""),
                "line 5: connect_timeout: expected a number of seconds",
            ),
            (
                stream("fail_timeout = false"),
                "line 5: fail_timeout: expected a number of seconds",
            ),
            (
                stream("idle_timeout = -10"),
                "line 5: idle_timeout: expected a number of seconds",
            ),
            (
                "[[stream]]\nlisten = \"127.0.0.1:1\"\n".into(),
                "line 2: missing key 'proxy_pass' in [[stream]]",
            ),
            (
                "server = 5\n".into(),
                "line 2: server: expected a section: [server] on a line of its own",
            ),
            (
                "[module]\nmodule_socket = 5\n".into(),
                "line 3: module_socket: expected an array of entries",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, needle) in cases {
            // A first line, so that line numbers are counted, not assumed.
            let text = format!("# modproxy\n{text}");
            let err = parse(&text)
                .map(|_| "no error".to_owned())
                .unwrap_or_else(|e| e.to_string());
            if !err.starts_with("config: conf/default.toml line ") || !err.contains(needle) {
                wrong.push(format!("{text:?}\n gave {err:?}\n want {needle:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
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
    fn access_log_file_format_or_off() {
        let access = |text: &str| parse(text).unwrap().access_log;
        let default = access("").unwrap();
        assert_eq!(default.path, Path::new("/home/mp/logs/access.log"));
        assert_eq!(default.format, AccessFormat::Combined);
        let json = access("[log]\naccess = \"/var/log/mp.log\"\naccess_format = \"json\"\n").unwrap();
        assert_eq!(
            (json.path.as_path(), json.format),
            (Path::new("/var/log/mp.log"), AccessFormat::Json)
        );
        assert_eq!(access("[log]\naccess = true\n"), Some(default));
        assert_eq!(access("[log]\naccess = \"off\"\n"), None);
        assert_eq!(access("[log]\naccess = false\n"), None);
        assert!(parse("[log]\naccess_format = \"common\"\n").is_err());
    }

    #[test]
    fn tls_section() {
        let config = parse(concat!(
            "[server]\nport = 80\nlisten = \"127.0.0.1\"\n",
            "[tls]\nport = 443\nredirect_http = true\nhsts_max_age = 600\n",
            "[[tls.certificate]]\ncert = \"certs/a.pem\"\nkey = \"certs/a.key\"\n",
            "[[tls.certificate]]\nnames = [\"Shop.Example\", \"*.apps.example\"]\ncert = \"/etc/b.pem\"\nkey = \"/etc/b.key\"\n",
        ))
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.listen.to_string(), "127.0.0.1:443");
        assert!(tls.redirect_http);
        assert_eq!(tls.hsts.unwrap(), "max-age=600");
        assert_eq!(tls.certificates[0].cert, Path::new("/home/mp/certs/a.pem"));
        assert!(tls.certificates[0].names.is_empty());
        assert_eq!(tls.certificates[1].names, ["shop.example", "*.apps.example"]);
        assert_eq!(tls.certificates[1].key, Path::new("/etc/b.key"));
        assert!(parse("").unwrap().tls.is_none(), "HTTPS is off unless [tls] is there");
        let acme = parse(concat!(
            "[tls]\nport = 443\n",
            "acme = { email = \"ops@example.com\", domains = [\"Example.com\", \"www.example.com\"], directory = \"https://acme.test/dir\" }\n",
        ))
        .unwrap()
        .tls
        .unwrap();
        let managed = &acme.certificates[0];
        assert_eq!(managed.names, ["example.com", "www.example.com"]);
        assert_eq!(managed.cert, Path::new("/home/mp/certs/acme/example.com.pem"));
        assert!(managed.managed);
        let acme = acme.acme.unwrap();
        assert_eq!(
            (acme.renew_before, acme.check_every),
            (Duration::from_secs(30 * 86_400), Duration::from_secs(12 * 3600))
        );
        assert_eq!(acme.challenge, AcmeChallenge::Http01, "HTTP-01 unless told otherwise");

        let cert = "[[tls.certificate]]\ncert = \"a\"\nkey = \"b\"\n";
        let cases = [
            (
                "[tls]\nport = 8080\n".to_owned() + cert,
                "HTTPS needs a port of its own",
            ),
            ("[tls]\nport = 8443\n".to_owned(), "has no certificate"),
            (
                "[tls]\nport = 8443\nlisten = \"x\"\n".to_owned() + cert,
                "not an IP address",
            ),
            (format!("[tls]\nport = 8443\n{cert}{cert}"), "#2: names is empty"),
            (
                format!("[tls]\nport = 8443\n{cert}names = [\"*.com\"]\n"),
                "too wide a wildcard",
            ),
            (
                format!("[tls]\nport = 8443\n{cert}names = [\"a.*.com\"]\n"),
                "not a DNS name",
            ),
            (
                "[tls]\nport = 8443\nredirect = true\n".to_owned() + cert,
                "unknown key 'redirect'",
            ),
            (
                "[tls]\nport = 8443\nacme = { email = \"a@b.c\", domains = [\"a.test\"], directory = \"https://acme.test/\", challenge = \"dns-01\" }\n".to_owned(),
                "expected \"http-01\" or \"tls-alpn-01\"",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}");
        }
    }
}
