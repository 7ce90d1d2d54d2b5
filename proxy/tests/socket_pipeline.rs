//! `pipeline = N` on a socket module: requests share backend connections, N at most on each, and every
//! reply still reaches its own request. Against the real binary and real TCP backends that accept
//! pipelining (`Style::Sequenced`, as the SDKs do).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, http, send_raw, Proxy};

/// `count` requests at once, each carrying its number; returns (status, the number echoed back) for each.
fn concurrent_posts(addr: SocketAddr, path: &'static str, count: usize) -> Vec<(u16, Option<i64>)> {
    let threads: Vec<_> = (0..count)
        .map(|i| {
            std::thread::spawn(move || {
                let response = send_raw(addr, &http("POST", path, &[], &envelope("add", json!({ "i": i }))));
                (response.status, response.json()["echo"]["data"]["i"].as_i64())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_requests_share_connections_and_each_gets_its_own_reply() {
    let backend = Backend::start(Style::Sequenced(Duration::ZERO));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], ", pipeline = 8")]));
    let results = concurrent_posts(proxy.addr, "/s3/", 200);
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result, (200, Some(i as i64)), "request {i}");
    }
    assert_eq!(backend.requests(), 200);
    // The backend answers one connection's requests one after another, so many wait on each connection;
    // never more than 8, so at least 200 / 8 at the busiest moment would need 25 connections.
    assert!(
        backend.connections() <= 25,
        "{} connections for 200 requests",
        backend.connections()
    );
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let open = format!(r#"modproxy_pooled_connections{{module="s3",node="{}"}} "#, backend.addr);
    let open: usize = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&open))
        .unwrap_or_else(|| panic!("no {open} in\n{metrics}"))
        .parse()
        .unwrap();
    assert!(
        (1..=backend.connections()).contains(&open),
        "the shared connections stay open: {open}"
    );
}

#[test]
fn sequential_requests_keep_to_one_connection() {
    let backend = Backend::start(Style::Sequenced(Duration::ZERO));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[backend.addr], ", pipeline = 4")]));
    for i in 0..20 {
        let response = proxy.post("/s3/", &[], &envelope("add", json!({ "i": i })));
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["echo"]["data"]["i"], i);
    }
    assert_eq!(backend.connections(), 1, "sequential requests keep to one connection");
}

#[test]
fn a_dead_node_is_masked_and_its_requests_go_to_the_live_one() {
    let live = Backend::start(Style::Sequenced(Duration::ZERO));
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(
        "",
        &config(&[socket_module(
            "s3",
            &[live.addr, dead],
            ", pipeline = 4, fail_timeout = 60",
        )]),
    );
    for (i, result) in concurrent_posts(proxy.addr, "/s3/", 40).into_iter().enumerate() {
        assert_eq!(result, (200, Some(i as i64)), "a request refused by a connect goes on");
    }
    assert_eq!(live.requests(), 40);
    assert!(proxy.log().contains("connect failed; node masked"), "{}", proxy.log());
}

#[test]
fn a_backend_that_dies_fails_what_it_held_and_a_restarted_one_is_used_again() {
    let backend = Backend::start(Style::Sequenced(Duration::from_millis(300)));
    let addr = backend.addr;
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s3", &[addr], ", pipeline = 8, fail_timeout = 0.2")]),
    );
    let proxy_addr = proxy.addr;
    let waiting = std::thread::spawn(move || concurrent_posts(proxy_addr, "/s3/", 4));
    std::thread::sleep(Duration::from_millis(150));
    backend.kill();
    for (status, echoed) in waiting.join().unwrap() {
        assert!(
            (status, echoed.is_some()) == (200, true) || (status, echoed) == (502, None),
            "each request is answered or gets 502: {status} {echoed:?}"
        );
    }
    assert!(
        proxy.log().contains("closed the connection before replying"),
        "{}",
        proxy.log()
    );

    let revived = Backend::start_on(TcpListener::bind(addr).unwrap(), Style::Sequenced(Duration::ZERO));
    std::thread::sleep(Duration::from_millis(300));
    let response = proxy.post("/s3/", &[], &envelope("add", json!({ "i": 7 })));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(revived.requests(), 1);
}

#[test]
fn max_lanes_bounds_the_shared_connections_to_a_node() {
    // Each connection's requests are answered one after another, 1.5 s apart: one lane of depth 2 stays
    // full for longer than a request waits for room (1 s).
    let backend = Backend::start(Style::Sequenced(Duration::from_millis(1500)));
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s3", &[backend.addr], ", pipeline = 2, max_lanes = 1")]),
    );
    let mut statuses: Vec<u16> = concurrent_posts(proxy.addr, "/s3/", 4)
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 503, 503],
        "two fit on the one lane; two find no room"
    );
    assert_eq!(backend.connections(), 1, "max_lanes = 1: one shared connection");
}
