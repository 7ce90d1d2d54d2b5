//! `/metrics` shows what `[server] body_memory` is doing, on the real binary: the bytes request bodies
//! hold now, the bodies that waited for room, and those refused with 503.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::Proxy;

/// The value of the metric `name` (without labels) in a scrape.
fn metric(proxy: &Proxy, name: &str) -> i64 {
    let text = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn held_bytes_waits_and_refusals_move() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "body_memory = 1000\nbody_chunk_timeout = 30",
        &config(&[socket_module("s3", &[backend.addr], "")]),
    );
    let held = |proxy: &Proxy| metric(proxy, "modproxy_body_memory_held_bytes");
    let waits = |proxy: &Proxy| metric(proxy, "modproxy_body_memory_waits_total");
    let refusals = |proxy: &Proxy| metric(proxy, "modproxy_body_memory_refusals_total");
    assert_eq!((held(&proxy), waits(&proxy), refusals(&proxy)), (0, 0, 0));

    // A body that announces 800 bytes takes them at once, and holds them while it trickles.
    let mut slow = TcpStream::connect(proxy.addr).unwrap();
    slow.write_all(
        b"POST /s3/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 800\r\n\r\n{\"head\":",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while held(&proxy) != 800 {
        assert!(Instant::now() < deadline, "held {} bytes, not 800", held(&proxy));
        std::thread::sleep(Duration::from_millis(20));
    }

    // One more of 500 finds no room: it waits, then is refused.
    let body = envelope("add", serde_json::json!("a".repeat(450)));
    assert!(body.len() > 200);
    assert_eq!(proxy.post("/s3/", &[], &body).status, 503);
    assert_eq!((held(&proxy), waits(&proxy), refusals(&proxy)), (800, 1, 1));

    // A small one fits, and gives its bytes back once answered.
    assert_eq!(
        proxy.post("/s3/", &[], &envelope("add", serde_json::json!(1))).status,
        200
    );
    assert_eq!((held(&proxy), waits(&proxy), refusals(&proxy)), (800, 1, 1));

    // The trickler leaves: its bytes come back.
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(5);
    while held(&proxy) != 0 {
        assert!(Instant::now() < deadline, "still {} bytes held", held(&proxy));
        std::thread::sleep(Duration::from_millis(20));
    }
}
