//! `X-Forwarded-Proto` on requests forwarded to `module_http` upstreams, through the real binary: the
//! proxy says which scheme the client used, and believes a client's own claim only from a trusted proxy.
//! (Over the TLS listener it says `https`: see `tls.rs`.)

mod support;

use serde_json::Value;
use support::config::{http_config, http_module};
use support::http_upstream::{Behaviour, Upstream};
use support::Proxy;

/// What the upstream saw in `X-Forwarded-Proto` when the client sent `claimed`.
fn seen(proxy: &Proxy, claimed: &[(&str, &str)]) -> Vec<String> {
    let echo: Value = proxy.get("/web/x", claimed).json();
    echo["headers"]["x-forwarded-proto"]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn forwarded_proto_is_the_listeners_unless_a_trusted_proxy_says_otherwise() {
    let up = Upstream::start("a", Behaviour::Echo);
    let modules = http_config(&[http_module("web", &[up.url()], "")]);

    let untrusted = Proxy::start("trusted_proxies = [\"10.0.0.0/8\"]", &modules);
    assert_eq!(seen(&untrusted, &[]), ["http"]);
    assert_eq!(
        seen(&untrusted, &[("X-Forwarded-Proto", "https")]),
        ["http"],
        "a client's own claim is replaced"
    );

    let trusted = Proxy::start("trusted_proxies = [\"127.0.0.1\"]", &modules);
    assert_eq!(seen(&trusted, &[("X-Forwarded-Proto", "https")]), ["https"]);
    assert_eq!(seen(&trusted, &[("X-Forwarded-Proto", "gopher")]), ["http"]);
    assert_eq!(seen(&trusted, &[]), ["http"]);
}
