//! A reload keeps the runtime of every module whose configuration did not change: its masked nodes,
//! pooled connections and lanes live on, so a reload under load is invisible to clients.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, Proxy};

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// Rewrites the proxy's `[module]` section to `modules` and sends SIGHUP.
fn reload_with(proxy: &Proxy, modules: &str) {
    let server = std::fs::read_to_string(proxy.config_path()).unwrap();
    let server = &server[..server.find("[module]").unwrap()];
    std::fs::write(proxy.config_path(), format!("{server}{modules}")).unwrap();
    proxy.signal("HUP");
}

fn reloads(proxy: &Proxy) -> f64 {
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    metric(&metrics, r#"modproxy_config_reloads_total{result="ok"}"#).unwrap_or(0.0)
}

fn wait_for(mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 5 s");
}

#[test]
fn a_node_masked_before_a_reload_stays_masked_when_its_module_is_unchanged() {
    let live = Backend::start(Style::SpaceKeepAlive);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let kept = socket_module("s3", &[dead, live.addr], "balance = \"round_robin\", fail_timeout = 60");
    let proxy = Proxy::start("", &config(std::slice::from_ref(&kept)));
    let up = |proxy: &Proxy| {
        let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
        metric(&metrics, &format!(r#"modproxy_node_up{{module="s3",node="{dead}"}}"#))
    };
    // Round robin tries the dead node within two requests; its refused connect masks it.
    for _ in 0..2 {
        assert_eq!(proxy.post("/s3/", &[], &envelope("x", json!(1))).status, 200);
    }
    assert_eq!(up(&proxy), Some(0.0), "masked before the reload");

    // Another module is added; s3's entry is the same.
    let other = Backend::start(Style::SpaceKeepAlive);
    reload_with(&proxy, &config(&[kept, socket_module("s4", &[other.addr], "")]));
    wait_for(|| reloads(&proxy) == 1.0);
    assert_eq!(up(&proxy), Some(0.0), "still masked after the reload");
}

#[test]
fn reloads_under_load_lose_and_truncate_nothing() {
    let sequenced = Backend::start(Style::Sequenced(Duration::from_millis(2)));
    let pooled = Backend::start(Style::SpaceKeepAlive);
    let other = Backend::start(Style::SpaceKeepAlive);
    let kept = [
        socket_module("piped", &[sequenced.addr], "pipeline = 16"),
        socket_module("pooled", &[pooled.addr], ""),
    ];
    let proxy = Arc::new(Proxy::start("", &config(&kept)));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut sent = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let module = if sent % 2 == 0 { "/piped/" } else { "/pooled/" };
                    let data = json!({ "client": client, "n": sent });
                    let response = proxy.post(module, &[], &envelope("x", data.clone()));
                    assert_eq!(response.status, 200, "{module} request {sent}: {}", response.text());
                    assert_eq!(response.json()["echo"]["data"], data, "{module}: each reply is its own");
                    sent += 1;
                }
                sent
            })
        })
        .collect();

    // A reload every 100 ms for 3 s, alternately adding and removing an unrelated module.
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut modules = kept.to_vec();
        if count % 2 == 0 {
            modules.push(socket_module("other", &[other.addr], ""));
        }
        reload_with(&proxy, &config(&modules));
        count += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let sent: u32 = clients.into_iter().map(|client| client.join().unwrap()).sum();
    assert!(sent > 40, "the clients kept sending: {sent}");
    wait_for(|| reloads(&proxy) >= 1.0);
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    assert_eq!(
        metric(&metrics, r#"modproxy_requests_total{module="piped",class="5xx"}"#).unwrap_or(0.0)
            + metric(&metrics, r#"modproxy_requests_total{module="pooled",class="5xx"}"#).unwrap_or(0.0),
        0.0,
        "no request failed"
    );
    // Kept runtimes keep their connections: a handful, not one per reload.
    assert!(
        pooled.connections() <= 8,
        "pooled connections survive reloads: {} opened",
        pooled.connections()
    );
}

/// A keep-alive backend that answers the first request of each connection, then, after `linger`, closes
/// its side cleanly (FIN) without reading anything more.
fn reply_once_then_fin(linger: Duration) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&served);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut line = [0u8; 12];
                stream.read_exact(&mut line).unwrap();
                let len: usize = std::str::from_utf8(&line[..10]).unwrap().trim().parse().unwrap();
                let mut payload = vec![0u8; len];
                stream.read_exact(&mut payload).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                stream
                    .write_all(&[format!("{len:>10}\r\n").as_bytes(), &payload].concat())
                    .unwrap();
                std::thread::sleep(linger);
                stream.shutdown(std::net::Shutdown::Both).unwrap();
            });
        }
    });
    (addr, served)
}

#[test]
fn a_kept_connection_the_backend_closed_cleanly_is_replaced_not_failed() {
    let (addr, served) = reply_once_then_fin(Duration::from_millis(100));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[addr], "fail_timeout = 60")]));
    for n in 0..3 {
        let body = envelope("x", json!(n));
        let response = proxy.post("/s3/", &[], &body);
        assert_eq!(response.status, 200, "request {n}: {}", response.text());
        assert_eq!(response.body, body, "request {n} echoed");
        // Between requests the backend closes the connection the proxy kept.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(served.load(Ordering::SeqCst), 3);
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    assert_eq!(
        metric(&metrics, &format!(r#"modproxy_node_up{{module="s3",node="{addr}"}}"#)),
        Some(1.0),
        "a clean close masks nothing"
    );
}
