//! The one-screen summary that `modproxy check` prints.

use std::fmt::Write;

use crate::config::{Config, Module};

/// Renders `config` for a person: where it listens, the root site, and every module with its nodes.
pub fn render(config: &Config) -> String {
    let server = &config.server;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.source.display());
    let _ = writeln!(out, "listen      {}:{}", server.listen, server.port);
    let _ = writeln!(
        out,
        "root site   {} (index: {})",
        server.root_path.display(),
        server.index.join(" ")
    );
    let _ = writeln!(
        out,
        "limits      max_body {} bytes, header_timeout {:?}",
        server.max_body, server.header_timeout
    );
    let _ = writeln!(out, "log level   {:?}", config.log_level);
    if server.raw_frames {
        let _ = writeln!(
            out,
            "raw frames  on: socket-protocol clients are served on the HTTP port too"
        );
    }
    if let Some(tls) = &config.tls {
        let names: Vec<String> = tls
            .certificates
            .iter()
            .map(|cert| match cert.names.as_slice() {
                [] => "(default)".to_owned(),
                names => names.join(","),
            })
            .collect();
        let _ = writeln!(
            out,
            "https       {}; certificates: {}{}{}",
            tls.listen,
            names.join(" "),
            if tls.acme.is_some() { " (last from ACME)" } else { "" },
            if tls.redirect_http {
                "; plain HTTP redirects"
            } else {
                ""
            },
        );
    }
    for stream in &config.streams {
        let _ = writeln!(
            out,
            "stream      {} -> {} node(s); connect {:?}, fail_timeout {:?}, idle_timeout {:?}",
            stream.listen,
            stream.nodes.len(),
            stream.connect_timeout,
            stream.fail_timeout,
            stream.idle_timeout
        );
        for node in &stream.nodes {
            let _ = writeln!(out, "      - {node}");
        }
    }
    let mut names: Vec<&String> = config.modules.keys().collect();
    names.sort();
    let _ = writeln!(out, "modules     {}", if names.is_empty() { "none" } else { "" });
    for name in names {
        match &config.modules[name] {
            Module::Html { path } => {
                let _ = writeln!(out, "  /{name}/  html    {}", path.display());
            }
            Module::Http(upstream) | Module::Socket(upstream) => {
                let kind = if matches!(config.modules[name], Module::Http(_)) {
                    "http  "
                } else {
                    "socket"
                };
                let pipeline = if upstream.pipeline > 1 {
                    format!(", pipeline {}", upstream.pipeline)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "  /{name}/  {kind}  {} node(s); timeout {:?}, connect {:?}, fail_timeout {:?}, keepalive {}{pipeline}",
                    upstream.nodes.len(),
                    upstream.timeout,
                    upstream.connect_timeout,
                    upstream.fail_timeout,
                    upstream.keepalive
                );
                for node in &upstream.nodes {
                    let _ = writeln!(out, "      - {node}");
                }
                if upstream.insecure {
                    let _ = writeln!(
                        out,
                        "      warning: insecure = true: https:// nodes' certificates are not checked (anyone on the path can read and change this traffic; prefer ca_file)"
                    );
                }
            }
        }
    }
    out
}
