//! The header rewriting of a reverse proxy, as pure functions: hop-by-hop headers out (RFC 9110 7.6.1),
//! `X-Forwarded-*` in, `Host` chosen.

use std::net::{IpAddr, Ipv4Addr};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Version};

use crate::client_address::Scheme;

/// Headers that describe one connection, never the message, beyond those `Connection` lists.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

// Named once: a `&str` name is parsed and hashed on every lookup.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const EXPECT: HeaderName = header::EXPECT;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether a request asks to switch protocols (WebSocket and other `Upgrade`s): HTTP/1.1 with an
/// `Upgrade` header and `upgrade` among the `Connection` options.
pub fn is_upgrade_request(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11 && headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, option: &str) -> bool {
    connection_options(headers).any(|o| o.eq_ignore_ascii_case(option))
}

/// Whether `name` is hop-by-hop whatever `Connection` lists (see [`strip_hop_by_hop`]).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || *name == KEEP_ALIVE || *name == EXPECT || name.as_str().starts_with("proxy-")
}

/// The options `Connection` lists, which name further hop-by-hop headers (`close`, `keep-alive`, ...).
pub fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
}

/// Removes the hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`, `Proxy-*`,
/// `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`; and `Expect`, which hyper's server has already
/// answered with `100 Continue` when the body is read. When `upgrading`, `Upgrade` is kept and
/// `Connection: upgrade` is set again: that pair is what asks the next hop to switch protocols.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let listed: Vec<HeaderName> = connection_options(headers)
        .filter_map(|o| HeaderName::from_bytes(o.as_bytes()).ok())
        .collect();
    // Found in one pass over the names, since most messages carry none of them: a lookup per
    // candidate would cost every request a dozen hashes.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| (is_hop_by_hop(name) || listed.contains(name)) && !(upgrading && *name == header::UPGRADE))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// `X-Forwarded-For`: every value the request already carried, in order, then the peer's address.
pub fn forwarded_for(existing: &HeaderMap, peer: IpAddr) -> HeaderValue {
    let mut v4 = [0; 15];
    let v6;
    let ip: &[u8] = match peer.to_canonical() {
        IpAddr::V4(ip) => {
            let length = write_ipv4(&mut v4, ip);
            &v4[..length]
        }
        ip => {
            v6 = ip.to_string();
            v6.as_bytes()
        }
    };
    let mut earlier_values = existing.get_all(X_FORWARDED_FOR).iter().peekable();
    if earlier_values.peek().is_none() {
        // Every byte came from an IP address.
        return HeaderValue::from_bytes(ip).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    }
    let mut value: Vec<u8> = Vec::with_capacity(64);
    for earlier in earlier_values {
        let earlier = trim_ascii(earlier.as_bytes());
        if earlier.is_empty() {
            continue;
        }
        value.extend_from_slice(earlier);
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(ip);
    // Every byte came from a valid header value or an IP address.
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Writes `ip` in dotted decimal to the front of `out`, returning its length: what `Display` writes,
/// without the formatting machinery, which cost as much as the rest of the header rewriting together.
fn write_ipv4(out: &mut [u8; 15], ip: Ipv4Addr) -> usize {
    let mut length = 0;
    let mut push = |byte: u8| {
        out[length] = byte;
        length += 1;
    };
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if octet >= 100 {
            push(b'0' + octet / 100);
        }
        if octet >= 10 {
            push(b'0' + octet / 10 % 10);
        }
        push(b'0' + octet % 10);
    }
    length
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// The request headers as the upstream should see them.
///
/// `client_host` is the host the client asked for (its `Host` header, or the URL's authority for
/// HTTP/2). `Host` itself depends on the node and is set once it is chosen (see [`upstream_host`]).
/// `proto` is the client's scheme, as [`client_address::scheme`](crate::client_address::scheme)
/// decided it: whatever the client itself wrote in `X-Forwarded-Proto` is replaced.
pub fn upstream_request_headers(
    mut headers: HeaderMap,
    upgrading: bool,
    peer: IpAddr,
    client_host: Option<&HeaderValue>,
    proto: Scheme,
) -> HeaderMap {
    let forwarded_for = forwarded_for(&headers, peer);
    // Both framings at once is how requests are smuggled; the body was read as chunked, so a
    // Content-Length would lie to the upstream (RFC 9112 6.3).
    if headers.contains_key(header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut headers, upgrading);
    // Room for the headers added below, at once rather than by doubling as they come.
    headers.reserve(4);
    headers.insert(X_FORWARDED_FOR, forwarded_for);
    headers.insert(X_FORWARDED_PROTO, proto.header_value());
    headers.remove(X_FORWARDED_HOST);
    if let Some(host) = client_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers
}

/// The `Host` a node is sent: the client's with `pass_host` (when it named one), otherwise the node's
/// own `host:port`.
pub fn upstream_host<'a>(
    client_host: Option<&'a HeaderValue>,
    pass_host: bool,
    node_host: &'a HeaderValue,
) -> &'a HeaderValue {
    match client_host {
        Some(client) if pass_host => client,
        _ => node_host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn names(headers: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret, , bad header name"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("expect", "100-continue"),
            ("x-custom", "kept"),
            ("content-type", "text/plain"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(names(&headers), ["content-length", "content-type", "x-custom"]);
    }

    #[test]
    fn upgrade_pair_survives_when_upgrading() {
        let mut headers = map(&[
            ("connection", "Upgrade, x-secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("sec-websocket-key", "k"),
        ]);
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(names(&headers), ["connection", "sec-websocket-key", "upgrade"]);
        assert_eq!(headers["connection"], "upgrade");
    }

    #[test]
    fn upgrade_detection() {
        let ws = map(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(Version::HTTP_11, &ws));
        assert!(!is_upgrade_request(Version::HTTP_10, &ws));
        assert!(!is_upgrade_request(Version::HTTP_11, &map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(
            Version::HTTP_11,
            &map(&[("connection", "upgrade")])
        ));
        assert!(!is_upgrade_request(
            Version::HTTP_11,
            &map(&[("connection", "upgraded"), ("upgrade", "websocket")])
        ));
    }

    #[test]
    fn forwarded_for_appends() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(forwarded_for(&HeaderMap::new(), peer), "10.0.0.9");
        assert_eq!(
            forwarded_for(&map(&[("x-forwarded-for", "1.2.3.4")]), peer),
            "1.2.3.4, 10.0.0.9"
        );
        assert_eq!(
            forwarded_for(
                &map(&[("x-forwarded-for", " 1.2.3.4, 5.6.7.8 "), ("x-forwarded-for", "")]),
                peer
            ),
            "1.2.3.4, 5.6.7.8, 10.0.0.9"
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(forwarded_for(&HeaderMap::new(), mapped), "127.0.0.1");
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(forwarded_for(&HeaderMap::new(), v6), "::1");
        for octets in [[0, 0, 0, 0], [255, 255, 255, 255], [1, 20, 100, 9], [10, 200, 3, 99]] {
            let ip = IpAddr::from(octets);
            assert_eq!(forwarded_for(&HeaderMap::new(), ip), ip.to_string().as_str());
        }
    }

    #[test]
    fn upstream_headers() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let client = map(&[
            ("host", "example.com"),
            ("x-forwarded-host", "spoofed"),
            ("x-forwarded-proto", "https"),
            ("connection", "close"),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let host = Some(HeaderValue::from_static("example.com"));
        let upstream = HeaderValue::from_static("127.0.0.1:8081");
        let out = upstream_request_headers(client, false, peer, host.as_ref(), Scheme::Http);
        assert_eq!(upstream_host(host.as_ref(), false, &upstream), "127.0.0.1:8081");
        assert_eq!(out["x-forwarded-host"], "example.com");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-for"], "9.9.9.9, 127.0.0.1");
        assert!(!out.contains_key("connection"));
        assert_eq!(upstream_host(host.as_ref(), true, &upstream), "example.com");
        let both = map(&[("transfer-encoding", "chunked"), ("content-length", "5")]);
        let out = upstream_request_headers(both, false, peer, None, Scheme::Http);
        assert!(!out.contains_key("content-length") && !out.contains_key("transfer-encoding"));
        let out = upstream_request_headers(HeaderMap::new(), false, peer, None, Scheme::Https);
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(
            upstream_host(None, true, &upstream),
            "127.0.0.1:8081",
            "no client host to pass: the upstream's"
        );
        assert!(!out.contains_key("x-forwarded-host"));
    }
}
