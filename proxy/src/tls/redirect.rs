//! `[tls] redirect_http`: where a plain-HTTP request is sent instead. Pure, so that hostile `Host`
//! values are tested here.

use http::uri::Authority;
use http::Uri;

/// The path ACME's HTTP-01 challenge is fetched from over plain HTTP; never redirected.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The HTTPS URL for a plain-HTTP request to `uri` with `Host: host`, when it should be redirected:
/// `None` for ACME challenges and for a request whose host is missing or malformed (it is served as is).
pub fn https_location(uri: &Uri, host: Option<&str>, https_port: u16) -> Option<String> {
    if uri.path().starts_with(ACME_CHALLENGE_PREFIX) {
        return None;
    }
    let authority: Authority = uri.authority().map(|a| a.as_str()).or(host)?.parse().ok()?;
    // `http` accepts a userinfo and a port of letters; neither is a host to send a client to.
    if authority.as_str().contains('@') {
        return None;
    }
    let name = authority.host();
    if authority.as_str().len() > name.len() && authority.port_u16().is_none() {
        return None;
    }
    let target = if https_port == 443 {
        name.to_owned()
    } else {
        format!("{name}:{https_port}")
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(format!("https://{target}{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(uri: &str, host: Option<&str>, port: u16) -> Option<String> {
        https_location(&uri.parse().unwrap(), host, port)
    }

    #[test]
    fn keeps_host_path_and_query_and_swaps_the_port() {
        assert_eq!(
            location("/a/b?c=1", Some("example.com:8080"), 8443).as_deref(),
            Some("https://example.com:8443/a/b?c=1")
        );
        assert_eq!(
            location("/", Some("example.com"), 443).as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            location("/x", Some("[::1]:80"), 443).as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            location("http://other.example/p", Some("example.com"), 443).as_deref(),
            Some("https://other.example/p")
        );
    }

    #[test]
    fn acme_challenges_and_bad_hosts_are_not_redirected() {
        assert_eq!(
            location("/.well-known/acme-challenge/tok", Some("example.com"), 443),
            None
        );
        for host in ["", "evil.com/path", "a b", "user@evil.com", "example.com:port"] {
            assert_eq!(location("/", Some(host), 443), None, "{host:?}");
        }
        assert_eq!(location("/", None, 443), None);
    }
}
