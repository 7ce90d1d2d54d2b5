//! Faults under load: a node dies while traffic flows. Requests not in flight on it succeed (connect
//! failures go to another node), and it takes traffic again after `fail_timeout` once it is back.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::config::{config, http_config, http_module, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{http, send_raw, Proxy};

const CLIENTS: usize = 8;

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

#[test]
fn killing_one_of_three_socket_nodes_under_load() {
    let nodes: Vec<Backend> = (0..3).map(|_| Backend::start(Style::SpaceKeepAlive)).collect();
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let proxy = Proxy::start("", &config(&[socket_module("s3", &addrs, ", fail_timeout = 1")]));
    kill_one_of_three_under_load("socket", &proxy, "/s3/", &nodes, Style::SpaceKeepAlive);
}

#[test]
fn killing_one_of_three_http_upstreams_under_load() {
    let nodes: Vec<Backend> = (0..3).map(|_| Backend::start(Style::Http)).collect();
    let urls: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.addr)).collect();
    let proxy = Proxy::start("", &http_config(&[http_module("api", &urls, "fail_timeout = 1")]));
    kill_one_of_three_under_load("http", &proxy, "/api/x", &nodes, Style::Http);
}

/// Steady load from several clients; node 1 dies, then comes back on the same port.
fn kill_one_of_three_under_load(kind: &str, proxy: &Proxy, path: &'static str, nodes: &[Backend], style: Style) {
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (counts, stop, addr) = (counts.clone(), stop.clone(), proxy.addr);
            std::thread::spawn(move || {
                let request = http("POST", path, &[], &envelope("x", json!(1)));
                while !stop.load(Ordering::SeqCst) {
                    let counter = if send_raw(addr, &request).status == 200 {
                        &counts.ok
                    } else {
                        &counts.failed
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    let before_kill = counts.ok.load(Ordering::SeqCst);
    nodes[1].kill();
    let served_by_victim = nodes[1].requests();
    std::thread::sleep(Duration::from_millis(500));
    let failed_after_kill = counts.failed.load(Ordering::SeqCst);

    // The node comes back on the same port; after fail_timeout (1 s) it is used again.
    let revived = Backend::start_on(TcpListener::bind(addrs[1]).unwrap(), style);
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    let (ok, failed) = (counts.ok.load(Ordering::SeqCst), counts.failed.load(Ordering::SeqCst));
    eprintln!(
        "{kind} faults: {ok} ok, {failed} failed (all at the kill); victim served {served_by_victim} before dying \
         and {} after coming back; {before_kill} ok before the kill",
        revived.requests()
    );
    assert!(before_kill > 50, "load was flowing before the kill");
    assert!(
        failed <= CLIENTS,
        "only requests in flight on the killed node may fail: {failed}"
    );
    assert_eq!(failed, failed_after_kill, "no failures after the kill settled");
    assert!(
        revived.requests() > 0,
        "the node takes traffic again after fail_timeout"
    );
    assert!(ok > before_kill * 2, "traffic kept flowing");
}
