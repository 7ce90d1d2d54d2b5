//! No leaks: the real `modproxy`'s file descriptors and resident memory after 100,000 requests of mixed
//! good and bad input are back near where they were after a warm-up.
//!
//! Every kind of request a hostile or careless client can send is in the mix: good socket calls, bad JSON
//! (400), the wrong method (405), a missing file (404), a body over the limit (413), a dead node (502) and
//! bytes that are not HTTP at all (400). Clients keep their connections alive and reconnect only when
//! the proxy closes one, as browsers do. The same holds with `pipeline` on a socket and an HTTP module,
//! over HTTP/1.1 and over HTTP/2 (driven by h2load).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{config, http_module, modules, socket_module};
use support::http_upstream::{Behaviour, Upstream};
use support::socket_backend::{envelope, Backend, Style};
use support::{free_port, Proxy};

const CLIENTS: usize = 4;
const WARM_UP: usize = 5_000;
const REQUESTS: usize = 100_000;

/// `make soak` raises the count (MODPROXY_SOAK_REQUESTS); `make test` runs the default.
fn requests() -> usize {
    std::env::var("MODPROXY_SOAK_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS)
}

/// The pipelined runs' share of [`requests`]: a fifth, so that `make test` stays short.
fn pipelined_requests() -> usize {
    requests() / 5
}
const MAX_BODY: usize = 1024;

/// The mix on pipelined modules: socket calls and HTTP GETs sharing connections, with bad input among them.
const PIPELINED_MIX: [Kind; 12] = [
    Kind::Good,
    Kind::Web,
    Kind::Good,
    Kind::WebLarge,
    Kind::BadJson,
    Kind::Web,
    Kind::Good,
    Kind::TooLarge,
    Kind::Web,
    Kind::Missing,
    Kind::Good,
    Kind::Web,
];

/// One kind of request and the status it must get.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Good,
    BadJson,
    WrongMethod,
    Missing,
    TooLarge,
    DeadNode,
    NotHttp,
    Static,
    /// A GET through the pipelined HTTP module.
    Web,
    /// A 256 KiB GET through the pipelined HTTP module: streamed from its lane.
    WebLarge,
}

/// The mix: mostly good calls, every bad kind often enough to show a leak.
const MIX: [Kind; 12] = [
    Kind::Good,
    Kind::BadJson,
    Kind::Good,
    Kind::WrongMethod,
    Kind::Good,
    Kind::Missing,
    Kind::Good,
    Kind::TooLarge,
    Kind::Good,
    Kind::DeadNode,
    Kind::Static,
    Kind::NotHttp,
];

impl Kind {
    fn request(self) -> (Vec<u8>, u16) {
        let post = |path: &str, body: &[u8]| {
            let mut raw = format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(body);
            raw
        };
        match self {
            Kind::Good => (post("/echo/", &envelope("add", json!({"a": 1, "b": 2}))), 200),
            Kind::BadJson => (post("/echo/", b"{\"head\": not json"), 400),
            Kind::WrongMethod => (b"GET /echo/ HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 405),
            Kind::Missing => (b"GET /no/such/file.html HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 404),
            Kind::TooLarge => (post("/echo/", &vec![b' '; MAX_BODY * 2]), 413),
            Kind::DeadNode => (post("/dead/", &envelope("add", json!(null))), 502),
            Kind::NotHttp => (b"\x16\x03\x01 this is not HTTP\r\n\r\n".to_vec(), 400),
            Kind::Static => (b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
            Kind::Web => (b"GET /web/item HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200),
            Kind::WebLarge => (
                b"GET /web/stream?bytes=262144 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
                200,
            ),
        }
    }
}

/// A keep-alive client that reconnects whenever the proxy closes its connection.
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    connects: usize,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            connects: 0,
        }
    }

    /// Sends one request and returns the response's status.
    fn exchange(&mut self, raw: &[u8]) -> u16 {
        let conn = self.conn.get_or_insert_with(|| {
            let stream = TcpStream::connect(self.addr).expect("connect to the proxy");
            stream.set_nodelay(true).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            self.connects += 1;
            BufReader::new(stream)
        });
        conn.get_mut().write_all(raw).expect("send a request");
        let (status, keep_alive) = read_response(conn);
        if !keep_alive {
            self.conn = None;
        }
        status
    }

    fn close(&mut self) {
        self.conn = None;
    }
}

/// Reads one response and skips its body; returns its status and whether the connection stays open.
fn read_response(conn: &mut BufReader<TcpStream>) -> (u16, bool) {
    let mut line = String::new();
    conn.read_line(&mut line).expect("read the status line");
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {line:?}"));
    let (mut length, mut chunked, mut close) = (0usize, false, false);
    loop {
        line.clear();
        conn.read_line(&mut line).expect("read a header");
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').expect("a header line");
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().expect("a length"),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).expect("read a chunk size");
            let size = usize::from_str_radix(line.trim(), 16).expect("a chunk size");
            skip(conn, size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        skip(conn, length);
    }
    (status, !close)
}

fn skip(conn: &mut BufReader<TcpStream>, n: usize) {
    let skipped = std::io::copy(&mut conn.by_ref().take(n as u64), &mut std::io::sink()).expect("read a body");
    assert_eq!(skipped, n as u64, "the body was cut short");
}

/// Sends `total` requests of `mix` from `CLIENTS` threads, checking every status; returns the connections
/// opened.
fn drive(addr: SocketAddr, total: usize, mix: &'static [Kind]) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let requests: Vec<_> = mix.iter().map(|kind| (*kind, kind.request())).collect();
                let mut client = Client::new(addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (kind, (raw, expected)) = &requests[i % requests.len()];
                    let status = client.exchange(raw);
                    assert_eq!(status, *expected, "request {i}: {kind:?}");
                }
                client.close();
                client.connects
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a client thread panicked"))
        .sum()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The descriptor count once it has stopped changing (the proxy has closed what its clients closed), or
/// as soon as it is down to `at_most`.
fn settled_fds(pid: u32, at_most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = open_fds(pid);
    let mut steady = 0;
    while last > at_most && steady < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = open_fds(pid);
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }
    last
}

#[test]
fn descriptors_and_memory_return_to_where_they_were_after_100k_mixed_requests() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start(
        &format!("max_body = {MAX_BODY}"),
        &config(&[
            socket_module("echo", &[backend.addr], ""),
            socket_module("dead", &[dead], ", connect_timeout = 1"),
        ]),
    );
    let pid = proxy.pid();

    drive(proxy.addr, WARM_UP, &MIX);
    let fds_before = settled_fds(pid, 0);
    let (rss_before, _) = proxy.memory_kib();

    let started = Instant::now();
    let requests = requests();
    let connects = drive(proxy.addr, requests, &MIX);
    let took = started.elapsed();

    let fds_after = settled_fds(pid, fds_before);
    let (rss_after, peak) = proxy.memory_kib();
    println!(
        "{requests} requests in {took:.1?} ({:.0}/s) over {connects} connections; \
         fds {fds_before} -> {fds_after}; VmRSS {rss_before} KiB -> {rss_after} KiB (peak {peak} KiB)",
        requests as f64 / took.as_secs_f64()
    );
    assert!(
        backend.requests() >= (WARM_UP + requests) * 5 / 12,
        "the good calls reached the backend"
    );
    assert!(
        fds_after <= fds_before + 2,
        "descriptors leaked: {fds_before} after warm-up, {fds_after} after {requests} requests"
    );
    // The allocator keeps some freed memory; a leak of even 100 bytes per request would be ~10 MiB.
    let allowed = rss_before + (rss_before / 5).max(4 * 1024);
    assert!(
        rss_after <= allowed,
        "memory grew from {rss_before} KiB to {rss_after} KiB (allowed {allowed} KiB)"
    );
}

/// A proxy with a pipelined socket module `echo` and a pipelined HTTP module `web`, its backends kept alive
/// beside it.
fn pipelined_proxy() -> (Proxy, Backend, Upstream) {
    let backend = Backend::start(Style::Sequenced(Duration::ZERO));
    let upstream = Upstream::start("u", Behaviour::Echo);
    let proxy = Proxy::start(
        &format!("max_body = {MAX_BODY}"),
        &modules(
            &[socket_module("echo", &[backend.addr], "pipeline = 16")],
            &[http_module("web", &[upstream.url()], "pipeline = 8")],
        ),
    );
    (proxy, backend, upstream)
}

/// Descriptors back to where they were after `run`, and memory near; `what` names the run.
fn leaks_nothing(proxy: &Proxy, what: &str, warm_up: impl Fn(), run: impl Fn()) {
    let pid = proxy.pid();
    warm_up();
    let fds_before = settled_fds(pid, 0);
    let (rss_before, _) = proxy.memory_kib();
    let started = Instant::now();
    run();
    let took = started.elapsed();
    let fds_after = settled_fds(pid, fds_before);
    let (rss_after, peak) = proxy.memory_kib();
    println!(
        "{what}: {:.1?}; fds {fds_before} -> {fds_after}; VmRSS {rss_before} KiB -> {rss_after} KiB (peak {peak} KiB)",
        took
    );
    // Shared connections stay open between runs (idle ones close after lane_idle_timeout); a few more
    // may have opened under the run's load.
    assert!(
        fds_after <= fds_before + 4,
        "{what}: descriptors leaked: {fds_before} after warm-up, {fds_after} after"
    );
    let allowed = rss_before + (rss_before / 5).max(4 * 1024);
    assert!(
        rss_after <= allowed,
        "{what}: memory grew from {rss_before} KiB to {rss_after} KiB (allowed {allowed} KiB)"
    );
}

#[test]
fn pipelined_socket_and_http_modules_leak_nothing_over_http1() {
    let (proxy, backend, upstream) = pipelined_proxy();
    let requests = pipelined_requests();
    leaks_nothing(
        &proxy,
        &format!("{requests} HTTP/1.1 requests on pipelined modules"),
        || {
            drive(proxy.addr, WARM_UP, &PIPELINED_MIX);
        },
        || {
            drive(proxy.addr, requests, &PIPELINED_MIX);
        },
    );
    assert!(
        backend.requests() >= (WARM_UP + requests) / 3,
        "the socket calls reached the backend"
    );
    assert!(
        upstream.requests() >= (WARM_UP + requests) / 3,
        "the GETs reached the upstream"
    );
}

/// `h2load` (Debian's nghttp2-client) sends `total` requests over HTTP/2 with prior knowledge, 4
/// connections of up to 16 streams each, half of them socket calls and half GETs; every one must be 2xx.
fn h2load(addr: SocketAddr, total: usize) {
    let body = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body.path(), envelope("add", json!({"a": 1, "b": 2}))).unwrap();
    let runs = [
        vec![
            "-d".to_owned(),
            body.path().display().to_string(),
            format!("http://{addr}/echo/"),
        ],
        vec![
            format!("http://{addr}/web/item"),
            format!("http://{addr}/web/stream?bytes=65536"),
        ],
    ];
    for args in runs {
        let n = (total / 2).to_string();
        let output = std::process::Command::new("h2load")
            .args(["-n", &n, "-c", "4", "-m", "16"])
            .args(&args)
            .output()
            .expect("h2load runs (apt-get install nghttp2-client; `make test` installs it)");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "h2load {args:?}: {text}");
        let done = format!("{n} succeeded, 0 failed, 0 errored");
        assert!(text.contains(&done), "h2load {args:?}: wanted {done:?} in\n{text}");
        let all_2xx = format!("status codes: {n} 2xx");
        assert!(
            text.contains(&all_2xx),
            "h2load {args:?}: wanted {all_2xx:?} in\n{text}"
        );
    }
}

#[test]
fn pipelined_socket_and_http_modules_leak_nothing_over_http2() {
    let (proxy, _backend, _upstream) = pipelined_proxy();
    let requests = pipelined_requests();
    leaks_nothing(
        &proxy,
        &format!("{requests} HTTP/2 requests on pipelined modules"),
        || h2load(proxy.addr, WARM_UP),
        || h2load(proxy.addr, requests),
    );
}

/// Idle keep-alive connections hold no request buffers: the server parks them without hyper's (about
/// 25 KB each, see `server/http1_parking.rs`). 800 connections, each served one GET and then quiet, must cost well
/// under 10 KB each.
#[test]
fn idle_keep_alive_connections_hold_no_buffers() {
    const IDLE: usize = 800;
    let proxy = Proxy::start("", "");
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let serve_one = |conn: &mut BufReader<TcpStream>| {
        conn.get_mut().write_all(get).unwrap();
        assert_eq!(read_response(conn), (200, true), "served and kept alive");
    };
    // Warm-up, so that the heap holds what any request needs.
    let mut warm: Vec<_> = (0..50)
        .map(|_| BufReader::new(TcpStream::connect(proxy.addr).unwrap()))
        .collect();
    warm.iter_mut().for_each(serve_one);
    drop(warm);
    std::thread::sleep(Duration::from_millis(200));
    let (before, _) = proxy.memory_kib();

    let mut idle: Vec<_> = (0..IDLE)
        .map(|_| BufReader::new(TcpStream::connect(proxy.addr).unwrap()))
        .collect();
    idle.iter_mut().for_each(serve_one);
    // Longer than the wait before a quiet connection is parked.
    std::thread::sleep(Duration::from_millis(300));
    let (after, _) = proxy.memory_kib();
    let per_connection = after.saturating_sub(before) * 1024 / IDLE as u64;
    println!("VmRSS {before} KiB -> {after} KiB with {IDLE} idle connections: {per_connection} B each");
    assert!(per_connection < 10 * 1024, "{per_connection} bytes per idle connection");
    // Still alive: each is served again.
    idle.iter_mut().take(20).for_each(serve_one);
}
