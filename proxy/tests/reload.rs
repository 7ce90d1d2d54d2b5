//! A reload keeps the runtime of every module whose configuration did not change: its masked nodes,
//! pooled connections and lanes live on, so a reload under load is invisible to clients.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{config, http_module, modules, socket_module};
use support::http_upstream::{Behaviour, Upstream};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, http, Proxy};

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

/// Downloads `path` whole on a connection of its own: the status and an FNV-1a hash of the body.
fn download(addr: SocketAddr, path: &str) -> (u16, usize, u64) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(&http("GET", path, &[], b"")).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let response = support::parse_response(&bytes).expect("an HTTP response");
    (response.status, response.body.len(), fnv(&response.body))
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn reloads_during_pipelined_downloads_cut_no_body_short() {
    const SIZE: usize = 5 * 1024 * 1024;
    let upstream = Upstream::start("u", Behaviour::Echo);
    let sequenced = Backend::start(Style::Sequenced(Duration::from_millis(2)));
    let other = Backend::start(Style::SpaceKeepAlive);
    let piped = socket_module("piped", &[sequenced.addr], "pipeline = 16");
    // `timeout` alternates, so every other reload replaces the download module's runtime and its lanes.
    let downloads = |timeout: u32| http_module("dl", &[upstream.url()], &format!("pipeline = 8, timeout = {timeout}"));
    let proxy = Arc::new(Proxy::start(
        "",
        &modules(std::slice::from_ref(&piped), &[downloads(30)]),
    ));
    let expected = fnv(&vec![b'x'; SIZE]);
    let fds = || std::fs::read_dir(format!("/proc/{}/fd", proxy.pid())).unwrap().count();
    let fds_before = fds();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut done = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    if client % 2 == 0 {
                        let got = download(proxy.addr, &format!("/dl/stream?bytes={SIZE}"));
                        assert_eq!(got, (200, SIZE, expected), "download {done} of client {client}");
                    } else {
                        let data = json!({ "client": client, "n": done });
                        let response = proxy.post("/piped/", &[], &envelope("x", data.clone()));
                        assert_eq!(response.status, 200, "post {done}: {}", response.text());
                        assert_eq!(response.json()["echo"]["data"], data, "each reply is its own");
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();

    // A reload every 100 ms for 3 s: an unrelated module comes and goes, and `dl` changes every other time.
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let mut socket = vec![piped.clone()];
        if count % 2 == 0 {
            socket.push(socket_module("other", &[other.addr], ""));
        }
        reload_with(&proxy, &modules(&socket, &[downloads(30 + count / 2 % 2)]));
        count += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let done: Vec<u32> = clients.into_iter().map(|client| client.join().unwrap()).collect();
    eprintln!("requests per client: {done:?}");
    assert!(done.iter().all(|&n| n > 0), "every client got through: {done:?}");
    wait_for(|| reloads(&proxy) >= 1.0);
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    for module in ["dl", "piped"] {
        let failed = metric(
            &metrics,
            &format!(r#"modproxy_requests_total{{module="{module}",class="5xx"}}"#),
        );
        assert_eq!(failed.unwrap_or(0.0), 0.0, "no {module} request failed");
    }
    // A replaced module's shared connections close once their replies are in: none is left behind.
    eprintln!("descriptors: {fds_before} before, {} after", fds());
    wait_for(|| fds() <= fds_before + 4);
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
