//! Who the client is: the socket peer, unless the peer is a proxy the operator trusts
//! (`[server] trusted_proxies`), in which case its `X-Forwarded-For` names the client. Pure, so the
//! hostile cases are tested here; `app.rs` calls it where the request's context is built.
//!
//! `X-Forwarded-For` is read from the right: each hop appends the address it saw, so only the entries
//! added by trusted proxies can be believed. The client is the first untrusted address counting from the
//! right; everything left of it was written by the client itself.
//!
//! The scheme the client used ([`scheme`]) is believed from `X-Forwarded-Proto` on the same terms: only
//! a trusted proxy may say it, otherwise it is the listener the request came in on.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// The header a proxy in front names the client with.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// The header a proxy in front names the client's scheme with.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The scheme a client used to reach the proxy (or the trusted proxy in front of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as `X-Forwarded-Proto` writes it.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Put by the server in the extensions of a request that came in on the TLS listener.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The client's scheme: what a trusted `peer` says in `X-Forwarded-Proto` (its last entry, the one the
/// nearest proxy set), else that of the listener (`over_tls`). A value that is neither `http` nor
/// `https` is not believed.
pub fn scheme(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet], over_tls: bool) -> Scheme {
    let listener = if over_tls { Scheme::Https } else { Scheme::Http };
    if !is_trusted(peer.ip(), trusted) {
        return listener;
    }
    let said = headers
        .get_all(X_FORWARDED_PROTO)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .map(str::trim);
    match said {
        Some(proto) if proto.eq_ignore_ascii_case("https") => Scheme::Https,
        Some(proto) if proto.eq_ignore_ascii_case("http") => Scheme::Http,
        _ => listener,
    }
}

/// The client's address for a request that came from `peer` with `headers`. The port is the peer's
/// when the peer is the client, else 0 (a forwarded hop has no port worth trusting).
pub fn client(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    if !is_trusted(peer.ip(), trusted) {
        return peer;
    }
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .collect::<Vec<_>>();
    let mut client = peer.ip();
    for hop in hops.iter().rev() {
        // An entry that is not an address ends the chain: nothing left of it can be believed.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(ip, trusted) {
            break;
        }
    }
    if client == peer.ip() {
        peer
    } else {
        SocketAddr::new(client, 0)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(unmapped)
}

/// Whether `ip` is one of the operator's proxies.
fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = unmapped(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a client is counted as for rate limiting: its IPv4 address, or its IPv6 /64 (one subscriber
/// usually holds a whole /64, so per-address buckets would let it take 2^64 of them).
pub fn rate_key(client: IpAddr) -> IpAddr {
    match unmapped(client) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn with_xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        client(peer.parse().unwrap(), &with_xff(xff), &nets(trusted)).to_string()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        assert_eq!(ip("203.0.113.9:4000", &["1.2.3.4"], &[]), "203.0.113.9:4000");
        assert_eq!(
            ip("203.0.113.9:4000", &["1.2.3.4"], &["10.0.0.0/8"]),
            "203.0.113.9:4000"
        );
    }

    #[test]
    fn a_trusted_peer_names_the_first_untrusted_hop_from_the_right() {
        let trusted = ["10.0.0.0/8", "127.0.0.1/32"];
        assert_eq!(ip("10.0.0.5:80", &["198.51.100.7"], &trusted), "198.51.100.7:0");
        // The client forged the leftmost entry; the proxies appended the rest.
        assert_eq!(
            ip("10.0.0.5:80", &["6.6.6.6, 198.51.100.7, 10.1.1.1"], &trusted),
            "198.51.100.7:0"
        );
        assert_eq!(
            ip("10.0.0.5:80", &["6.6.6.6", "198.51.100.7 , 10.1.1.1"], &trusted),
            "198.51.100.7:0"
        );
        assert_eq!(ip("10.0.0.5:80", &["198.51.100.7:1234"], &trusted), "198.51.100.7:0");
        assert_eq!(ip("10.0.0.5:80", &["[2001:db8::1]:443"], &trusted), "[2001:db8::1]:0");
        // Every hop trusted: the leftmost is the best there is.
        assert_eq!(ip("10.0.0.5:80", &["10.9.9.9, 10.1.1.1"], &trusted), "10.9.9.9:0");
        // No header: the peer.
        assert_eq!(ip("10.0.0.5:80", &[], &trusted), "10.0.0.5:80");
    }

    #[test]
    fn garbage_ends_the_chain() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            ip("10.0.0.5:80", &["6.6.6.6, nonsense, 10.1.1.1"], &trusted),
            "10.1.1.1:0"
        );
        assert_eq!(ip("10.0.0.5:80", &["6.6.6.6, "], &trusted), "10.0.0.5:80");
        assert_eq!(ip("10.0.0.5:80", &["unknown"], &trusted), "10.0.0.5:80");
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_bytes(b"1.2.3.4\xff").unwrap());
        assert_eq!(
            client("10.0.0.5:80".parse().unwrap(), &headers, &nets(&trusted)).to_string(),
            "10.0.0.5:80"
        );
    }

    fn proto(peer: &str, values: &[&'static str], over_tls: bool) -> Scheme {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_PROTO, HeaderValue::from_static(value));
        }
        scheme(peer.parse().unwrap(), &headers, &nets(&["10.0.0.0/8"]), over_tls)
    }

    #[test]
    fn forwarded_proto_is_believed_from_trusted_proxies_only() {
        assert_eq!(proto("203.0.113.9:1", &["https"], false), Scheme::Http);
        assert_eq!(proto("203.0.113.9:1", &["http"], true), Scheme::Https);
        assert_eq!(proto("10.0.0.5:1", &["https"], false), Scheme::Https);
        assert_eq!(proto("10.0.0.5:1", &["HTTP"], true), Scheme::Http);
        // The nearest proxy's entry is the last one.
        assert_eq!(proto("10.0.0.5:1", &["http, https"], false), Scheme::Https);
        assert_eq!(proto("10.0.0.5:1", &["https", "http"], true), Scheme::Http);
        // Nothing, or nothing sensible: the listener.
        assert_eq!(proto("10.0.0.5:1", &[], true), Scheme::Https);
        assert_eq!(proto("10.0.0.5:1", &["gopher"], false), Scheme::Http);
        assert_eq!(proto("[::ffff:10.0.0.5]:1", &["https"], false), Scheme::Https);
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        assert_eq!(
            ip("[::ffff:10.0.0.5]:80", &["198.51.100.7"], &["10.0.0.0/8"]),
            "198.51.100.7:0"
        );
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let key = |s: &str| rate_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.1").to_string(), "192.0.2.1");
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1").to_string(), "192.0.2.1");
    }
}
