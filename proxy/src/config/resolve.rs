//! From the file as written to [`Config`]: defaults applied, paths resolved against HOME, every value
//! checked, with messages that say what to write instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::key_path::KeyPath;
use super::raw::{
    AccessSetting, DiscoverFrom, RawAcme, RawBackendModule, RawConfig, RawDiscovery, RawStream, RawTls, RawUpstream,
    Seconds,
};
use super::{
    AccessFormat, AccessLogConfig, AcmeConfig, CertificateFiles, Config, Discovery, DnsSettings, HeadSource, Module,
    Policy, RateLimit, ServerConfig, StreamConfig, TlsConfig, Upstream, INNER_MODULE,
};
/// A value that parsed but cannot be used: what is wrong, and the key (or module entry) to blame, whose
/// line the message will name.
pub(super) struct Invalid {
    pub(super) key: KeyPath,
    pub(super) message: String,
}

impl Invalid {
    fn at(key: KeyPath, message: impl Into<String>) -> Invalid {
        Invalid {
            key,
            message: message.into(),
        }
    }
}

pub(super) fn resolve(raw: RawConfig, source: &Path, home: &Path) -> Result<Config, Invalid> {
    let streams = stream_configs(&raw.stream, &raw.upstream)?;
    let server = &raw.server;
    let key = |name: &str| KeyPath::of(&["server", name]);
    if server.port == 0 {
        return Err(Invalid::at(
            key("port"),
            "port: expected an integer from 1 to 65535, found 0",
        ));
    }
    let listen: IpAddr = server.listen.parse().map_err(|_| {
        Invalid::at(
            key("listen"),
            format!(
                "[server] listen = {:?} is not an IP address (try \"0.0.0.0\" or \"127.0.0.1\")",
                server.listen
            ),
        )
    })?;
    let index = server.index.items(&[' ', ',', '\t', '\n']);
    if index.iter().any(|name| name.contains('/') || name == "..") {
        return Err(Invalid::at(
            key("index"),
            "[server] index must list file names, not paths",
        ));
    }
    if server.max_connections == 0 {
        return Err(Invalid::at(
            key("max_connections"),
            "[server] max_connections must be at least 1",
        ));
    }
    if server.http2_max_streams == 0 {
        return Err(Invalid::at(
            key("http2_max_streams"),
            "[server] http2_max_streams must be at least 1",
        ));
    }
    let networks = |name: &str, list: &[String]| {
        list.iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        Invalid::at(
                            key(name),
                            format!("[server] {name}: {entry:?} is not an address or a network like 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let metrics_allow = networks("metrics_allow", &server.metrics_allow)?;
    let trusted_proxies = networks("trusted_proxies", &server.trusted_proxies)?;
    let server_config = ServerConfig {
        listen,
        port: server.port,
        root_path: home.join(&server.root_path),
        chunked_size: server.chunked_size,
        index,
        max_body: server.max_body,
        body_memory: server.body_memory,
        body_timeout: server.body_timeout.duration(),
        body_chunk_timeout: server.body_chunk_timeout.duration(),
        send_timeout: server.send_timeout.duration(),
        websocket_idle_timeout: server.websocket_idle_timeout.duration(),
        header_timeout: server.header_timeout.duration(),
        max_connections: server.max_connections,
        metrics_allow,
        raw_frames: server.raw_frames,
        dotfiles: server.dotfiles,
        http2_max_streams: server.http2_max_streams,
        trusted_proxies,
        proxy_protocol: server.proxy_protocol,
    };
    let tls = raw
        .tls
        .as_ref()
        .map(|tls| tls_config(tls, &server_config, home))
        .transpose()
        .map_err(|message| Invalid::at(KeyPath::of(&["tls"]), message))?;

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
    // A module's errors name its entry's line.
    for (index, entry) in raw.module.module_html.iter().enumerate() {
        let at = |message| Invalid::at(KeyPath::of(&["module", "module_html"]).index(index), message);
        let policy = policy_of!(entry).map_err(at)?;
        add(
            &entry.module,
            "module_html",
            Module::Html {
                path: home.join(&entry.path),
            },
            policy,
        )
        .map_err(at)?;
    }
    for (list, entries) in [
        ("module_http", &raw.module.module_http),
        ("module_socket", &raw.module.module_socket),
    ] {
        for (index, entry) in entries.iter().enumerate() {
            let at = |message| Invalid::at(KeyPath::of(&["module", list]).index(index), message);
            let upstream = backend_upstream(entry, &raw.upstream, &raw.discovery, list, home).map_err(at)?;
            let policy = policy_of!(entry).map_err(at)?;
            let module = if list == "module_http" {
                Module::Http(upstream)
            } else {
                Module::Socket(upstream)
            };
            add(&entry.module, list, module, policy).map_err(at)?;
        }
    }
    Ok(Config {
        source: source.to_owned(),
        server: server_config,
        modules,
        policies,
        log_level: raw.log.level,
        access_log: access_log(raw.log.access, raw.log.access_format, home),
        streams,
        tls,
        dns: dns_settings(&raw.discovery)?,
    })
}

/// `[discovery]`, resolved.
fn dns_settings(raw: &RawDiscovery) -> Result<DnsSettings, Invalid> {
    let key = |name: &str| KeyPath::of(&["discovery"]).key(name);
    let nameservers = (raw.nameservers.iter())
        .map(|server| {
            server.parse::<std::net::SocketAddr>().map_err(|_| {
                Invalid::at(
                    key("nameservers"),
                    format!("[discovery] nameservers: {server:?} is not an address with a port, like \"127.0.0.1:53\""),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (min_ttl, max_ttl) = (raw.dns_min_ttl.duration(), raw.dns_max_ttl.duration());
    if min_ttl > max_ttl {
        return Err(Invalid::at(
            key("dns_min_ttl"),
            "[discovery] dns_min_ttl must not be above dns_max_ttl",
        ));
    }
    Ok(DnsSettings {
        nameservers,
        min_ttl,
        max_ttl,
    })
}

/// `[log] access`, resolved against HOME; `None` when off.
fn access_log(setting: AccessSetting, format: AccessFormat, home: &Path) -> Option<AccessLogConfig> {
    let file = match setting {
        AccessSetting::Switch(false) => return None,
        AccessSetting::File(file) if file == "off" => return None,
        AccessSetting::Switch(true) => "logs/access.log".to_owned(),
        AccessSetting::File(file) => file,
    };
    Some(AccessLogConfig {
        path: home.join(file),
        format,
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

/// The policy a module entry's keys give; both kinds of entry (`module_html` and the backend ones) have
/// the same policy keys.
macro_rules! policy_of {
    ($entry:expr) => {
        policy(
            &$entry.module,
            $entry.rate_limit,
            $entry.max_conns,
            $entry.max_conns_wait,
            &$entry.add_headers,
        )
    };
}
use policy_of;

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
                "generate" => HeadSource::Generated,
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

fn backend_upstream(
    entry: &RawBackendModule,
    defaults: &RawUpstream,
    discovery: &RawDiscovery,
    list: &str,
    home: &Path,
) -> Result<Upstream, String> {
    let name = &entry.module;
    let nodes: Vec<(String, u32)> = if list == "module_http" {
        if entry.forward_pass.is_some() || entry.ip.is_some() || entry.port.is_some() {
            return Err(format!(
                "module_http {name:?}: use proxy_pass (forward_pass, ip and port are for module_socket)"
            ));
        }
        let urls = match &entry.proxy_pass {
            Some(urls) => urls
                .nodes()
                .map_err(|why| format!("module_http {name:?}: proxy_pass {why}"))?,
            // Its nodes come from etcd.
            None if entry.discover.is_some() => Vec::new(),
            None => return Err(format!("module_http {name:?}: missing proxy_pass")),
        };
        // `srv:NAME` nodes are found through DNS (see discovery::dns).
        for (url, _) in urls.iter().filter(|(url, _)| !url.starts_with("srv:")) {
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
        if entry.ca_file.is_some() || entry.insecure.is_some() {
            return Err(format!(
                "module_socket {name:?}: ca_file and insecure are for module_http's https:// nodes (socket backends speak plain TCP)"
            ));
        }
        let mut nodes = match &entry.forward_pass {
            Some(list) => list
                .nodes()
                .map_err(|why| format!("module_socket {name:?}: forward_pass {why}"))?,
            None => Vec::new(),
        };
        // The seed's older single-node form.
        if entry.port == Some(0) {
            return Err(format!(
                "module_socket {name:?}: port: expected an integer from 1 to 65535, found 0"
            ));
        }
        match (&entry.ip, entry.port) {
            (Some(ip), Some(port)) => nodes.push((format!("{ip}:{port}"), 1)),
            (None, None) => {}
            _ => return Err(format!("module_socket {name:?}: the older form needs both ip and port")),
        }
        // `srv:NAME` nodes are found through DNS (see discovery::dns).
        for (node, _) in nodes.iter().filter(|(node, _)| !node.starts_with("srv:")) {
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
    let discover = discover(entry, discovery, list)?;
    if discover.is_some() && !nodes.is_empty() {
        return Err(format!(
            "{list} {name:?}: discover = \"etcd\" takes the module's nodes from etcd; remove its listed nodes"
        ));
    }
    if nodes.is_empty() && discover.is_none() {
        return Err(format!("{list} {name:?}: no nodes (give at least one address)"));
    }
    let keepalive = entry.keepalive.unwrap_or(defaults.keepalive);
    let pipeline = entry.pipeline.unwrap_or(0);
    let max_lanes = entry.max_lanes.unwrap_or(DEFAULT_MAX_LANES);
    if max_lanes == 0 {
        return Err(format!("{list} {name:?}: max_lanes must be at least 1"));
    }
    let lane_overdue_share = entry.lane_overdue_share.unwrap_or(DEFAULT_LANE_OVERDUE_SHARE);
    if !(lane_overdue_share > 0.0 && lane_overdue_share <= 1.0) {
        return Err(format!(
            "{list} {name:?}: lane_overdue_share must be above 0 and at most 1 (a share of timeout), not {lane_overdue_share}"
        ));
    }
    let lane_idle_timeout = entry
        .lane_idle_timeout
        .map_or(DEFAULT_LANE_IDLE_TIMEOUT, |idle| idle.duration());
    if lane_idle_timeout.is_zero() {
        return Err(format!("{list} {name:?}: lane_idle_timeout must be more than 0"));
    }
    if pipeline > 1 && !keepalive {
        return Err(format!(
            "{list} {name:?}: pipeline = {pipeline} needs keepalive: pipelined requests share kept connections"
        ));
    }
    // Pipelined lanes open plain TCP connections of their own; TLS is only on the pooled ones.
    let https = nodes.iter().any(|node| node.starts_with("https://"));
    if pipeline > 1 && https {
        return Err(format!(
            "{list} {name:?}: pipeline = {pipeline} is for http:// nodes only (https:// nodes take pooled connections)"
        ));
    }
    if !https && (entry.ca_file.is_some() || entry.insecure.is_some()) {
        return Err(format!(
            "{list} {name:?}: ca_file and insecure apply to https:// nodes, and proxy_pass has none"
        ));
    }
    let validate = entry.validate.unwrap_or(false);
    if validate && list != "module_socket" {
        return Err(format!(
            "{list} {name:?}: validate is for module_socket (it checks data against the backend's _describe)"
        ));
    }
    let ca_file = entry.ca_file.as_ref().map(|file| home.join(file));
    crate::tls::upstream::check(&nodes, ca_file.as_deref()).map_err(|why| format!("{list} {name:?}: {why}"))?;
    Ok(Upstream {
        nodes,
        weights,
        balance: entry.balance.unwrap_or_default(),
        head,
        connect_timeout: entry.connect_timeout.unwrap_or(defaults.connect_timeout).duration(),
        timeout: entry.timeout.unwrap_or(defaults.timeout).duration(),
        fail_timeout: entry.fail_timeout.unwrap_or(defaults.fail_timeout).duration(),
        max_frame: entry.max_frame.unwrap_or(defaults.max_frame),
        keepalive,
        pipeline,
        max_lanes,
        lane_overdue_share,
        lane_idle_timeout,
        validate,
        pass_host: entry.pass_host.unwrap_or(false),
        ca_file,
        insecure: entry.insecure.unwrap_or(false),
        discover,
    })
}

/// A module's discovery source: `discover` with the `[discovery]` settings it needs.
fn discover(entry: &RawBackendModule, discovery: &RawDiscovery, list: &str) -> Result<Option<Discovery>, String> {
    let name = &entry.module;
    let Some(DiscoverFrom::Etcd) = entry.discover else {
        return match entry.etcd_prefix {
            Some(_) => Err(format!("{list} {name:?}: etcd_prefix needs discover = \"etcd\"")),
            None => Ok(None),
        };
    };
    if discovery.etcd.is_empty() {
        return Err(format!(
            "{list} {name:?}: discover = \"etcd\" needs [discovery] etcd = [\"http://127.0.0.1:2379\"]"
        ));
    }
    if let Some(url) = discovery.etcd.iter().find(|url| check_http_url(url).is_err()) {
        return Err(format!("[discovery] etcd: {url:?} is not an http://host:port URL"));
    }
    let prefix = match &entry.etcd_prefix {
        // Keys are `<prefix><address>`: without the slash, "/a" would also take "/ab/..."'s members.
        Some(prefix) if !prefix.ends_with('/') => {
            return Err(format!("{list} {name:?}: etcd_prefix {prefix:?} must end with '/'"));
        }
        Some(prefix) => prefix.clone(),
        None => crate::discovery::etcd::default_prefix(name),
    };
    Ok(Some(Discovery::Etcd {
        endpoints: discovery.etcd.clone(),
        prefix,
    }))
}

/// Shared connections per node of a pipelined socket module unless `max_lanes` says otherwise.
const DEFAULT_MAX_LANES: usize = 8;

/// Share of `timeout` a pipelined socket lane's oldest request may wait unless `lane_overdue_share` says
/// otherwise: late enough that a merely slow reply does not retire lanes, early enough that requests
/// stop joining a lane held by a hung one long before they would time out behind it.
const DEFAULT_LANE_OVERDUE_SHARE: f64 = 0.25;

/// How long a pipelined socket lane with nothing to do stays open unless `lane_idle_timeout` says otherwise.
const DEFAULT_LANE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn check_http_url(url: &str) -> Result<(), &'static str> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://");
    }
    if uri.authority().is_none() {
        return Err("has no host");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be scheme://host:port only: the request path is forwarded unchanged");
    }
    Ok(())
}

fn stream_configs(raw: &[RawStream], defaults: &RawUpstream) -> Result<Vec<StreamConfig>, Invalid> {
    let mut streams: Vec<StreamConfig> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.iter().enumerate() {
        let key = |name: &str| KeyPath::of(&["stream"]).index(index).key(name);
        let listen: std::net::SocketAddr = entry.listen.parse().map_err(|_| {
            Invalid::at(
                key("listen"),
                format!(
                    "[[stream]] listen = {:?} is not an address with a port (try \"127.0.0.1:15432\")",
                    entry.listen
                ),
            )
        })?;
        if streams.iter().any(|other| other.listen == listen) {
            return Err(Invalid::at(
                key("listen"),
                format!("[[stream]] listen = \"{listen}\" is configured twice"),
            ));
        }
        let nodes = entry.proxy_pass.items(&[',']);
        if nodes.is_empty() {
            return Err(Invalid::at(
                key("proxy_pass"),
                format!("[[stream]] {listen}: no nodes in proxy_pass (give at least one host:port)"),
            ));
        }
        for node in &nodes {
            check_socket_addr(node)
                .map_err(|why| Invalid::at(key("proxy_pass"), format!("[[stream]] {listen}: node {node:?} {why}")))?;
        }
        let max_connections = entry.max_connections.unwrap_or(1000);
        if max_connections == 0 {
            return Err(Invalid::at(
                key("max_connections"),
                format!("[[stream]] {listen}: max_connections must be at least 1"),
            ));
        }
        streams.push(StreamConfig {
            listen,
            nodes,
            connect_timeout: entry.connect_timeout.unwrap_or(defaults.connect_timeout).duration(),
            fail_timeout: entry.fail_timeout.unwrap_or(defaults.fail_timeout).duration(),
            idle_timeout: entry.idle_timeout.unwrap_or(Seconds(600.0)).duration(),
            max_connections,
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

fn tls_config(raw: &RawTls, server: &ServerConfig, home: &Path) -> Result<TlsConfig, String> {
    let listen = match &raw.listen {
        None => server.listen,
        Some(text) => text
            .parse()
            .map_err(|_| format!("[tls] listen = {text:?} is not an IP address (try \"0.0.0.0\" or \"127.0.0.1\")"))?,
    };
    if raw.port == server.port && listen == server.listen {
        return Err(format!(
            "[tls] port = {} is [server] port too; HTTPS needs a port of its own (443 or 8443, say)",
            raw.port
        ));
    }
    if raw.certificate.is_empty() && raw.acme.is_none() {
        return Err(
            "[tls] has no certificate; add [[tls.certificate]] with cert and key files, or acme = { ... }".into(),
        );
    }
    let mut certificates = Vec::new();
    for (index, entry) in raw.certificate.iter().enumerate() {
        let names = entry
            .names
            .iter()
            .map(|name| {
                let name = name.trim().to_ascii_lowercase();
                check_server_name(&name)
                    .map(|()| name.clone())
                    .map_err(|why| format!("[[tls.certificate]] #{}: name {name:?} {why}", index + 1))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() && index > 0 {
            return Err(format!(
                "[[tls.certificate]] #{}: names is empty; only the first certificate (the default) may go without names",
                index + 1
            ));
        }
        certificates.push(CertificateFiles {
            names,
            cert: home.join(&entry.cert),
            key: home.join(&entry.key),
            managed: false,
        });
    }
    let acme = raw.acme.as_ref().map(|acme| acme_config(acme, home)).transpose()?;
    if let Some(acme) = &acme {
        let stem = &acme.domains[0];
        certificates.push(CertificateFiles {
            names: acme.domains.clone(),
            cert: acme.dir.join(format!("{stem}.pem")),
            key: acme.dir.join(format!("{stem}.key")),
            managed: true,
        });
    }
    let hsts = raw
        .hsts_max_age
        .map(|age| http::HeaderValue::from_str(&format!("max-age={age}")).expect("digits are a header value"));
    Ok(TlsConfig {
        listen: std::net::SocketAddr::new(listen, raw.port),
        certificates,
        redirect_http: raw.redirect_http,
        hsts,
        acme,
    })
}

fn acme_config(raw: &RawAcme, home: &Path) -> Result<AcmeConfig, String> {
    if raw.domains.is_empty() {
        return Err("[tls] acme: domains is empty; list the names to get a certificate for".into());
    }
    let domains = raw
        .domains
        .iter()
        .map(|name| {
            let name = name.trim().to_ascii_lowercase();
            match check_server_name(&name) {
                Ok(()) if !name.starts_with("*.") => Ok(name),
                Ok(()) => Err(format!(
                    "[tls] acme: {name:?}: a wildcard needs DNS-01, which modproxy does not do"
                )),
                Err(why) => Err(format!("[tls] acme: domain {name:?} {why}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !raw.directory.starts_with("https://") {
        return Err(format!(
            "[tls] acme: directory = {:?} must be an https:// URL (Let's Encrypt: https://acme-v02.api.letsencrypt.org/directory)",
            raw.directory
        ));
    }
    if !raw.email.contains('@') {
        return Err(format!("[tls] acme: email = {:?} is not an address", raw.email));
    }
    Ok(AcmeConfig {
        email: raw.email.clone(),
        domains,
        directory: raw.directory.clone(),
        ca_root: raw.ca_root.as_ref().map(|root| home.join(root)),
        renew_before: raw
            .renew_before
            .map_or(std::time::Duration::from_secs(30 * 86_400), Seconds::duration),
        check_every: raw
            .check_every
            .map_or(std::time::Duration::from_secs(12 * 3600), Seconds::duration),
        dir: home.join("certs/acme"),
        challenge: raw.challenge.unwrap_or_default(),
    })
}

/// A DNS name, or `*.` and a DNS name of two labels or more.
fn check_server_name(name: &str) -> Result<(), &'static str> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    if name.starts_with("*.") && !host.contains('.') {
        return Err("is too wide a wildcard; write *.example.com");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("is not a DNS name (a wildcard may only be a leading *.)");
    }
    Ok(())
}
