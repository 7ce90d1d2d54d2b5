//! The proxy's `[module]` section for tests, built the same way for socket and HTTP modules.

use std::fmt::Display;
use std::net::SocketAddr;

/// One `module_socket` entry forwarding to `nodes`; `extra` is more settings of the entry, e.g.
/// `"fail_timeout = 1"` (a leading comma is allowed).
pub fn socket_module(name: &str, nodes: &[SocketAddr], extra: &str) -> String {
    entry(name, "forward_pass", nodes, extra)
}

/// One `module_http` entry forwarding to `urls` (`http://host:port`); `extra` as for [`socket_module`].
pub fn http_module(name: &str, urls: &[impl Display], extra: &str) -> String {
    entry(name, "proxy_pass", urls, extra)
}

/// A `[module]` section of socket modules.
pub fn config(socket: &[String]) -> String {
    modules(socket, &[])
}

/// A `[module]` section of HTTP modules.
pub fn http_config(http: &[String]) -> String {
    modules(&[], http)
}

/// A `[module]` section with both kinds (either list may be empty).
pub fn modules(socket: &[String], http: &[String]) -> String {
    let mut out = String::from("[module]\n");
    for (key, entries) in [("module_http", http), ("module_socket", socket)] {
        if !entries.is_empty() {
            out.push_str(&format!("{key} = [\n{}\n]\n", entries.join(",\n")));
        }
    }
    out
}

fn entry(name: &str, key: &str, nodes: &[impl Display], extra: &str) -> String {
    let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    let extra = extra.trim_start_matches(',').trim();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!("{{ module = \"{name}\", {key} = \"{}\"{extra} }}", nodes.join(", "))
}
