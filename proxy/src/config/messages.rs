//! Turning toml and serde errors into messages for people: file, line, the key, and what to write
//! instead; a "did you mean" when an unknown key is close to a known one.

use std::path::Path;

use super::key_path::KeyPath;
use super::ConfigError;

pub(super) fn describe_toml_error(error: &toml::de::Error, text: &str, source: &Path) -> ConfigError {
    let span = error.span().unwrap_or(0..0);
    let at = span.start.min(text.len());
    let line = line_of(text, at);
    let section = section_at(text, at);
    let message = error.message().trim_end();
    let detail = if let Some((key, expected)) = unknown_field(message) {
        let mut detail = format!("unknown key '{key}' in {section}");
        if let Some(close) = closest(key, &expected) {
            detail.push_str(&format!(" (did you mean '{close}'?)"));
        } else if !expected.is_empty() {
            detail.push_str(&format!(" (known keys: {})", expected.join(", ")));
        }
        detail
    } else if let Some(key) = missing_field(message) {
        // The span is the table that lacks the key, which may be a `[[stream]]` header itself.
        let line_end = text[at..].find('\n').map_or(text.len(), |n| at + n);
        format!("missing key '{key}' in {}", section_at(text, line_end))
    } else if let Some(path) = error.span().and_then(|_| KeyPath::at(text, at)) {
        let found = text.get(span.clone()).map(found).unwrap_or_default();
        let expected = expected(&path).map_or_else(
            || message.to_owned(),
            |what| format!("expected {}", what.replace("KEY", &path.to_string())),
        );
        format!("{}: {expected}{found}", path.short_name())
    } else {
        format!("{message} in {section}")
    };
    ConfigError(format!("{} line {line}: {detail}", source.display()))
}

/// The 1-based line that holds byte `at`.
pub(super) fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// What a person should write for a key, by the key and where it is. Every key of README's configuration
/// reference is here; `None` for a key this table does not know (serde's own words are used then).
fn expected(path: &KeyPath) -> Option<&'static str> {
    const SECONDS: &str = "a number of seconds, like 5 or 0.5 (from 0 up to a year)";
    const BYTES: &str = "a number of bytes, a whole number like 10485760";
    const BOOLEAN: &str = "true or false (without quotes)";
    const PORT: &str = "an integer from 1 to 65535";
    const AT_LEAST_ONE: &str = "a whole number from 1 up";
    let section = path.keys().next()?;
    let mut keys = path.keys().rev();
    let key = keys.next()?;
    let parent = keys.next().unwrap_or_default();
    Some(match (section, parent, key) {
        (_, "head", _) if key != "head" => "where the field comes from: \"header:NAME\", \"remote_addr\" or \"generate\"",
        (_, "add_headers", _) => "a header value in quotes, like \"no-store\"",
        ("server", _, "port") | ("module", _, "port") => PORT,
        ("server", _, "listen") => "an IP address in quotes, like \"0.0.0.0\" or \"127.0.0.1\"",
        ("server", _, "root_path") | ("module", _, "path") => "a directory in quotes, like \"html\" or \"/opt/site\"",
        ("server", _, "index") => "file names: a string like \"index.html index.htm\" or an array of strings",
        ("server", _, "chunked_size" | "max_body" | "body_memory") | (_, _, "max_frame") => BYTES,
        ("server" | "stream", _, "max_connections") | (_, _, "max_conns") => AT_LEAST_ONE,
        ("server", _, "metrics_allow" | "trusted_proxies") => {
            "an array of addresses or networks in quotes, like [\"10.0.0.0/8\"]"
        }
        ("server", _, "http2_max_streams") => AT_LEAST_ONE,
        ("server", _, "raw_frames" | "proxy_protocol" | "dotfiles") | (_, _, "keepalive" | "pass_host" | "insecure") => {
            BOOLEAN
        }
        ("stream", _, "listen") => "an address with a port in quotes, like \"127.0.0.1:15432\"",
        ("stream", _, "proxy_pass") => "host:port nodes: a string like \"10.0.0.5:5432, 10.0.0.6:5432\" or an array of strings",
        ("module", _, "module") => "a module name in quotes, like \"api\"",
        ("module", _, "discover") => "where the module's nodes are registered: \"etcd\"",
        ("module", _, "etcd_prefix") => "an etcd key prefix in quotes, like \"/modproxy/modules/api/\"",
        ("discovery", _, "etcd") => "an array of etcd client URLs, like [\"http://127.0.0.1:2379\"]",
        ("module", _, "proxy_pass") => "upstream URLs: a string like \"http://127.0.0.1:8081, http://127.0.0.1:8082\" or an array of strings",
        ("module", _, "forward_pass") => "host:port nodes: a string like \"127.0.0.1:21231, 127.0.0.1:21232 weight=3\" or an array of strings and { addr = \"host:port\", weight = N } tables",
        ("module", _, "ca_file") => "a PEM file of CA certificates in quotes, like \"certs/upstream-ca.pem\"",
        ("module", _, "addr") => "a node address in quotes, like \"127.0.0.1:21231\"",
        ("module", _, "weight") => "a whole number from 1 to 4294967295",
        ("module", _, "ip") => "an IP address in quotes, like \"127.0.0.1\"",
        ("module", _, "balance") => "\"random\", \"round_robin\" or \"least_conn\"",
        ("module", _, "rate_limit") => "a table like { rate = 10, burst = 20 }",
        ("module", "rate_limit", "rate") => "requests per second, a number like 10 or 0.5",
        ("module", "rate_limit", "burst") => "a whole number from 1 to 4294967295",
        ("module", _, "add_headers") => "a table of headers, like { \"Cache-Control\" = \"no-store\" }",
        ("module", _, "head") => "a table of fields, like { token = \"header:Authorization\" }",
        ("module", _, "max_lanes") => AT_LEAST_ONE,
        ("module", _, "lane_overdue_share") => "a share of timeout: a number above 0 and at most 1, like 0.25",
        ("module", _, "lane_idle_timeout") => SECONDS,
        ("module", _, "validate") => BOOLEAN,
        ("module", _, "pipeline") => "a whole number from 0 up (2 or more sends requests without waiting)",
        (_, _, "connect_timeout" | "timeout" | "fail_timeout" | "idle_timeout" | "max_conns_wait" | "header_timeout" | "body_timeout" | "body_chunk_timeout" | "send_timeout" | "websocket_idle_timeout") => SECONDS,
        ("discovery", _, "nameservers") => "an array of addresses with ports in quotes, like [\"127.0.0.1:53\"]",
        ("discovery", _, "dns_min_ttl" | "dns_max_ttl") => SECONDS,
        ("server" | "upstream" | "log" | "discovery", "", _) if key == section => "a section: [KEY] on a line of its own, its keys below it",
        ("stream", "", "stream") => "[[stream]] sections, each with listen and proxy_pass below it",
        ("module", "module", "module_html" | "module_http" | "module_socket") => "an array of entries, like [ { module = \"api\", ... } ]",
        ("log", _, "access") => "a file in quotes, like \"logs/access.log\", or \"off\" (or true / false)",
        ("tls", "acme", "challenge") => "\"http-01\" or \"tls-alpn-01\"",
        ("log", _, "access_format") => "\"combined\" or \"json\"",
        ("log", _, "level") => "\"error\", \"warn\", \"info\" or \"debug\"",
        _ => return None,
    })
}

/// `, found …` for the value as written: strings and numbers quoted as they are, long values cut short.
fn found(raw: &str) -> String {
    let raw = raw.trim();
    let kind = match raw.chars().next() {
        Some('"' | '\'') => "the string ",
        Some('[') => "the array ",
        Some('{') => "the table ",
        Some(_) => "",
        None => return String::new(),
    };
    let shown: String = if raw.chars().count() > 40 {
        raw.chars().take(37).chain("...".chars()).collect()
    } else {
        raw.to_owned()
    };
    format!(", found {kind}{shown}")
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

/// Picks the key out of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
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

    #[test]
    fn closest_only_suggests_near_misses() {
        assert_eq!(closest("timout", &["timeout", "fail_timeout"]), Some("timeout"));
        assert_eq!(closest("banana", &["timeout", "port"]), None);
    }
}
