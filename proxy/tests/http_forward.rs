//! `module_http` through the real binary against real upstream HTTP servers started here: forwarding,
//! header rewriting, pooling, failover and masking, timeouts, never-twice, streaming both ways, a
//! WebSocket spliced through, and `pipeline` (the tests of what it must not change run both ways).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
// `entry` reads as what it builds in the tests below: one module_http entry.
use support::config::{http_config, http_module as entry};
use support::http_upstream::{Behaviour, Upstream};
use support::{free_port, http, repo_html, Proxy};

fn checksum(data: impl IntoIterator<Item = u8>) -> u64 {
    data.into_iter()
        .fold(0u64, |s, b| s.wrapping_mul(31).wrapping_add(b as u64))
}

// ---- the proxy ---------------------------------------------------------------------------------------

/// A proxy with `module_http` entries.
fn proxy(server_extra: &str, entries: &[String]) -> Proxy {
    Proxy::start(server_extra, &http_config(entries))
}

/// Module settings for both ways of keeping upstream connections: pooled, and pipelined.
const BOTH_WAYS: [&str; 2] = ["", "pipeline = 4"];

/// Module settings, the empty ones left out.
fn settings(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn dead_node() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn server_error_page() -> Vec<u8> {
    std::fs::read(repo_html().join("500.html")).unwrap()
}

fn header_values<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"][name]
        .as_array()
        .map(|values| values.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default()
}

// ---- tests -------------------------------------------------------------------------------------------

#[test]
fn method_path_query_and_body_are_forwarded_unchanged() {
    for extra in BOTH_WAYS {
        forwarded_unchanged(extra);
    }
}

fn forwarded_unchanged(extra: &str) {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("s1", &[up.url()], extra)]);
    let r = proxy.post("/s1/adduser?name=admin&x=%2F&y", &[], b"{\"a\":1}");
    assert_eq!(r.status, 200, "{}", r.text());
    let echo = r.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/s1/adduser");
    assert_eq!(echo["query"], "name=admin&x=%2F&y");
    assert_eq!(echo["body"], "{\"a\":1}");
    for method in ["PUT", "PATCH", "DELETE", "OPTIONS", "GET"] {
        let r = proxy.send(&http(method, "/s1/a/b/../c%20d?q", &[], b"payload"));
        let echo = r.json();
        assert_eq!(echo["method"], method);
        assert_eq!(
            echo["path"], "/s1/a/c%20d",
            "dot segments resolved, nothing else changed"
        );
        assert_eq!(echo["body"], "payload");
    }
    let r = proxy.send(&http("HEAD", "/s1/x", &[], b""));
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(r.header("content-length").is_some());
}

#[test]
fn dot_segments_are_resolved_before_routing_and_forwarding() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("api", &[up.url()], "")]);
    for path in ["/api/../admin", "/api/%2e%2E/admin", "/api/.%2e/admin?q=1"] {
        let r = proxy.get(path, &[]);
        assert_eq!(r.status, 404, "{path} is /admin, which is not module api: {}", r.text());
    }
    assert_eq!(up.requests(), 0, "module api was never asked for a path outside it");
    for (path, forwarded) in [
        ("/api/a/%2E%2e/b?q=%2e%2e", "/api/b"),
        ("/other/../api/x/./y", "/api/x/y"),
        ("/api/a%2Fb/../c", "/api/c"),
    ] {
        let echo = proxy.get(path, &[]).json();
        assert_eq!(echo["path"], forwarded, "{path}");
    }
    assert_eq!(proxy.get("/api/a/%2E%2e/b?q=%2e%2e", &[]).json()["query"], "q=%2e%2e");
    for path in [
        "/../etc/passwd",
        "/api/../../admin",
        "/api/..%2Fadmin",
        "/api/..%5cadmin",
    ] {
        assert_eq!(proxy.get(path, &[]).status, 400, "{path}");
    }
    assert_eq!(up.requests(), 4);
}

#[test]
fn headers_are_rewritten_like_a_proxy() {
    for extra in BOTH_WAYS {
        rewritten_like_a_proxy(extra);
    }
}

fn rewritten_like_a_proxy(extra: &str) {
    let up = Upstream::start("a", Behaviour::Echo);
    let with_pass_host = settings(&[extra, "pass_host = true"]);
    let proxy = proxy(
        "",
        &[
            entry("s1", &[up.url()], extra),
            entry("s2", &[up.url()], &with_pass_host),
        ],
    );
    let r = proxy.get(
        "/s1/h",
        &[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Host", "spoofed"),
            ("Connection", "X-Secret"),
            ("X-Secret", "hop"),
            ("Keep-Alive", "timeout=300"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("X-Custom", "kept"),
        ],
    );
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(header_values(&echo, "x-forwarded-for"), ["1.2.3.4, 127.0.0.1"]);
    assert_eq!(header_values(&echo, "x-forwarded-proto"), ["http"]);
    assert_eq!(header_values(&echo, "x-forwarded-host"), ["test"]);
    assert_eq!(header_values(&echo, "host"), [up.addr.to_string().as_str()]);
    assert_eq!(header_values(&echo, "x-custom"), ["kept"]);
    for hop in ["x-secret", "keep-alive", "proxy-authorization", "te", "upgrade"] {
        assert!(
            header_values(&echo, hop).is_empty(),
            "{hop} reached the upstream: {echo}"
        );
    }
    // And on the way back.
    assert_eq!(r.header("x-up"), Some("yes"));
    assert_eq!(r.header("keep-alive"), None);
    assert_eq!(r.header("x-hop"), None);

    let echo = proxy.get("/s2/h", &[]).json();
    assert_eq!(
        header_values(&echo, "host"),
        ["test"],
        "pass_host keeps the client's Host"
    );
    let echo = proxy.get("/s1/h", &[]).json();
    assert_eq!(header_values(&echo, "x-forwarded-for"), ["127.0.0.1"]);
}

#[test]
fn conflicting_framing_cannot_smuggle_a_request() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("s1", &[up.url()], "")]);
    // Content-Length says 5, the chunked body says 4 and is followed by a second request. The connection
    // stays open (no `Connection: close`), so a proxy that read past the first request would forward
    // "GET /s1/smuggled" too; RFC 9112 (6.3) says to close after answering such a message instead.
    let raw = b"POST /s1/a HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\
Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\nGET /s1/smuggled HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    stream.write_all(raw).unwrap();
    let mut answered = Vec::new();
    let _ = stream.read_to_end(&mut answered);
    let answered = String::from_utf8_lossy(&answered);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        up.requests(),
        1,
        "the upstream got exactly the one request; the proxy answered:\n{answered}"
    );
    assert_eq!(
        answered.matches("HTTP/1.1 ").count(),
        1,
        "one answer, then closed:\n{answered}"
    );
    assert!(!answered.contains("smuggled"), "{answered}");
    // A second, clean request on the pooled upstream connection is still just itself.
    let echo = proxy.get("/s1/after", &[]).json();
    assert_eq!(echo["path"], "/s1/after");
    assert_eq!(up.requests(), 2, "the upstream saw a smuggled request");
}

#[test]
fn upstream_connections_are_pooled() {
    let pooled = Upstream::start("a", Behaviour::Echo);
    let single = Upstream::start("b", Behaviour::Echo);
    let proxy = proxy(
        "",
        &[
            entry("pooled", &[pooled.url()], ""),
            entry("single", &[single.url()], "keepalive = false"),
        ],
    );
    for _ in 0..5 {
        assert_eq!(proxy.get("/pooled/x", &[]).status, 200);
        assert_eq!(proxy.get("/single/x", &[]).status, 200);
    }
    assert_eq!(pooled.requests(), 5);
    // One connection, or two when the pool's checkout raced a fresh connect under load.
    assert!(
        pooled.connections() <= 2,
        "five requests opened {} upstream connections",
        pooled.connections()
    );
    assert_eq!(single.connections(), 5, "keepalive = false: a connection per request");
}

#[test]
fn a_connect_failure_moves_the_request_to_another_node() {
    let up = Upstream::start("alive", Behaviour::Echo);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}\n[log]\naccess_format = \"json\"\n",
            http_config(&[entry("s1", &[dead_node(), up.url()], "")])
        ),
    );
    for i in 0..10 {
        let body = format!("request {i}");
        let r = proxy.post("/s1/x", &[], body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.json()["body"],
            body.as_str(),
            "the body went to the second node intact"
        );
    }
    assert_eq!(up.requests(), 10);
    // The access log names the node that answered.
    let wanted = up.url().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !proxy
        .access_json()
        .iter()
        .any(|l| l["path"] == "/s1/x" && l["node"] == wanted.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "no access line with node {wanted}:\n{}",
            proxy.access_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_node_down_is_502_with_the_error_page() {
    for extra in BOTH_WAYS {
        let settings = settings(&["connect_timeout = 1", extra]);
        let proxy = proxy("", &[entry("s1", &[dead_node(), dead_node()], &settings)]);
        let r = proxy.get("/s1/x", &[]);
        assert_eq!(r.status, 502, "{extra}");
        assert_eq!(r.body, server_error_page());
        assert!(
            proxy.log().contains("no node of module 's1' is reachable"),
            "{}",
            proxy.log()
        );
    }
}

/// With its only node masked the module still tries it; once it answers it is taken back, so the
/// requests after it neither warn nor count it down.
#[test]
fn a_masked_node_that_answers_is_taken_back() {
    let dead = dead_node();
    let proxy = proxy("", &[entry("s1", std::slice::from_ref(&dead), "fail_timeout = 60")]);
    assert_eq!(proxy.get("/s1/x", &[]).status, 502);
    let port: u16 = dead.rsplit(':').next().unwrap().parse().unwrap();
    let up = Upstream::start_on(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        "back",
        Behaviour::Echo,
    );
    for _ in 0..5 {
        assert_eq!(proxy.get("/s1/x", &[]).status, 200);
    }
    assert_eq!(up.requests(), 5);
    assert_eq!(
        proxy.log().matches("every node is masked").count(),
        1,
        "{}",
        proxy.log()
    );
}

#[test]
fn no_response_headers_within_timeout_is_504() {
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_secs(3)));
    for extra in BOTH_WAYS {
        let proxy = proxy("", &[entry("s1", &[slow.url()], &settings(&["timeout = 0.5", extra]))]);
        let started = Instant::now();
        let r = proxy.get("/s1/x", &[]);
        assert_eq!(r.status, 504, "{extra}");
        assert_eq!(r.body, server_error_page());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}

#[test]
fn a_slow_upload_is_not_a_slow_upstream() {
    // The response wait is timed from the last body byte sent, not from the start of the request.
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("s1", &[up.url()], "timeout = 2")]);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = "POST /s1/slow-upload HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    // 3 s of upload against a 2 s timeout, with gaps well inside it.
    for _ in 0..10 {
        stream.write_all(b"5\r\nslow;\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let response = support::parse_response(&got).unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["len"], 50);
}

#[test]
fn a_failed_node_is_masked_for_fail_timeout() {
    // Margins are wide so a loaded machine cannot make the healthy node look slow.
    let slow = Upstream::start("slow", Behaviour::Slow(Duration::from_secs(5)));
    let fast = Upstream::start("fast", Behaviour::Echo);
    let fail_timeout = Duration::from_secs(4);
    let proxy = proxy(
        "",
        &[entry("s1", &[slow.url(), fast.url()], "timeout = 1, fail_timeout = 4")],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.requests() == 0 {
        assert!(Instant::now() < deadline, "the slow node never got a request");
        proxy.get("/s1/x", &[]);
    }
    // Masked now: everything goes to the fast node.
    let masked_at = Instant::now();
    let hits = slow.requests();
    for _ in 0..10 {
        let r = proxy.get("/s1/x", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["node"], "fast");
    }
    assert_eq!(slow.requests(), hits, "a masked node gets no traffic");
    assert!(
        masked_at.elapsed() < fail_timeout - Duration::from_millis(500),
        "test too slow to prove masking"
    );
    // After fail_timeout it is tried again.
    std::thread::sleep(
        (masked_at + fail_timeout + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while slow.requests() == hits {
        assert!(Instant::now() < deadline, "the slow node was never unmasked");
        proxy.get("/s1/x", &[]);
    }
}

#[test]
fn a_request_that_reached_an_upstream_is_never_sent_again() {
    let first = Upstream::start("drop1", Behaviour::DropAfterHead);
    let second = Upstream::start("drop2", Behaviour::DropAfterHead);
    let proxy = proxy("", &[entry("s1", &[first.url(), second.url()], "")]);
    for (n, request) in [
        http("POST", "/s1/pay", &[], b"{\"amount\":100}"),
        http("GET", "/s1/x", &[], b""),
        http("PUT", "/s1/y", &[], b"z"),
    ]
    .iter()
    .enumerate()
    {
        let r = proxy.send(request);
        assert_eq!(r.status, 502);
        assert_eq!(r.body, server_error_page());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            first.connections() + second.connections(),
            n + 1,
            "one attempt per request, never a second"
        );
        assert_eq!(first.requests() + second.requests(), n + 1);
    }
}

#[test]
fn bodies_over_max_body_get_413() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("max_body = 1000", &[entry("s1", &[up.url()], "")]);
    let r = proxy.post("/s1/x", &[], &[b'x'; 1001]);
    assert_eq!(r.status, 413);
    assert_eq!(r.body, server_error_page());
    assert_eq!(up.requests(), 0, "refused before any upstream saw it");

    // Declared as chunked: refused once the limit is crossed.
    let mut raw =
        b"POST /s1/x HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        raw.extend_from_slice(b"3e8\r\n");
        raw.extend_from_slice(&[b'y'; 1000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = proxy.send(&raw);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(proxy.post("/s1/x", &[], &[b'x'; 1000]).status, 200);
}

#[test]
fn response_bodies_stream_without_waiting_for_the_end() {
    for extra in BOTH_WAYS {
        streamed_without_waiting(extra);
    }
}

fn streamed_without_waiting(extra: &str) {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("s1", &[up.url()], extra)]);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&http("GET", "/s1/trickle", &[], b"")).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(6).any(|w| w == b"first;") {
        let n = stream
            .read(&mut buf)
            .expect("the first part arrived while the upstream still held the rest");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    up.seen.gate.notify_one();
    stream.read_to_end(&mut got).unwrap();
    let response = support::parse_response(&got).unwrap();
    assert_eq!(response.text(), "first;second", "{:?}", String::from_utf8_lossy(&got));
}

#[test]
fn request_bodies_stream_without_waiting_for_the_end() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("s1", &[up.url()], "")]);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head =
        "POST /s1/upload-probe HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(b"1000\r\n").unwrap();
    stream.write_all(&[b'a'; 4096]).unwrap();
    stream.write_all(b"\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !up.seen.first_upload_bytes.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the upstream saw nothing before the body ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    stream.write_all(b"4\r\nrest\r\n0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let echo = support::parse_response(&got).unwrap().json();
    assert_eq!(echo["len"], 4100);
}

/// 256 MiB up and 512 MiB down through the proxy, checked byte for byte (by checksum), while its
/// peak memory stays flat.
#[test]
fn large_bodies_pass_through_in_bounded_memory() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("max_body = 1073741824", &[entry("s1", &[up.url()], "")]);
    assert_eq!(proxy.get("/s1/warm", &[]).status, 200);
    let (rss_before, _) = proxy.memory_kib();

    let upload: u64 = 256 << 20;
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head =
        format!("PUT /s1/upload HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {upload}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let chunk: Vec<u8> = (0..1024 * 1024).map(|i| (i % 253) as u8).collect();
    for _ in 0..(upload >> 20) {
        stream.write_all(&chunk).unwrap();
    }
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let echo = support::parse_response(&got).unwrap().json();
    assert_eq!(echo["len"], upload);
    let expected = checksum((0..(upload >> 20)).flat_map(|_| chunk.iter().copied()));
    assert_eq!(echo["sum"], expected);

    let download: u64 = 512 << 20;
    let (status, _, received) = proxy.download(&http("GET", &format!("/s1/stream?bytes={download}"), &[], b""), |_| {});
    assert_eq!(status, 200);
    assert_eq!(received, download);

    let (_, hwm_after) = proxy.memory_kib();
    let growth = hwm_after.saturating_sub(rss_before);
    eprintln!(
        "256 MiB up + 512 MiB down: VmRSS before {rss_before} KiB, VmHWM after {hwm_after} KiB, growth {growth} KiB"
    );
    assert!(growth < 16 * 1024, "peak memory grew by {growth} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_spliced_and_outlives_the_response_timeout() {
    let ws = Upstream::start("ws", Behaviour::WebSocket);
    let proxy = tokio::task::spawn_blocking(move || proxy("", &[entry("chat", &[ws.url()], "timeout = 1")]))
        .await
        .unwrap();
    let url = format!("ws://{}/chat/room?user=1", proxy.addr);
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("handshake through the proxy");
    assert_eq!(response.status(), 101);
    use tokio_tungstenite::tungstenite::Message;
    socket.send(Message::text("hello")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hello"));
    // Longer than the module's timeout: the upgraded connection is not cut.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let big = vec![7u8; 1 << 20];
    socket.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::binary(big));
    socket.send(Message::text("again")).await.unwrap();
    assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("again"));
    socket.close(None).await.unwrap();
    drop(proxy);
}

// ---- pipeline --------------------------------------------------------------------------------------------

/// A raw HTTP/1.1 upstream for the pipelining tests. It reads each connection's requests one after
/// another and answers each by the last segment of its path, with the bytes written out below.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (counted, answered) = (Arc::clone(&connections), Arc::clone(&requests));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                let answered = Arc::clone(&answered);
                std::thread::spawn(move || serve_scripted(stream, &answered));
            }
        });
        Scripted {
            addr,
            connections,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve_scripted(mut stream: TcpStream, answered: &AtomicUsize) {
    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
    while let Some((request_line, _)) = support::read_request(&mut reader) {
        answered.fetch_add(1, Ordering::SeqCst);
        let mut words = request_line.split(' ');
        let method = words.next().unwrap_or_default();
        let case = words.next().unwrap_or_default().rsplit('/').next().unwrap_or_default();
        let response: &[u8] = match (method, case) {
            ("HEAD", "length") => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
            (_, "length") => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nlength",
            (_, "chunked") => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nchu\r\n4;x=y\r\nnked\r\n0\r\nx-sum: 7\r\n\r\n",
            (_, "hints") => b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhints",
            (_, "empty") => b"HTTP/1.1 204 No Content\r\n\r\n",
            (_, "close") => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nclose",
            (_, "garbage") => b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
            // Both framings: which one the upstream meant is anybody's guess.
            (_, "both") => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            // A body delimited by the close, cut short by a reset (below).
            (_, "reset") => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npartial",
            // `Connection` names `Content-Length`: the client does not get it, but it frames the body.
            (_, "listed") => b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 6\r\n\r\nlisted",
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        };
        if stream.write_all(response).is_err() || matches!(case, "close" | "garbage") {
            // Whatever else this connection carried goes unanswered, as `Connection: close` said.
            return;
        }
        if case == "reset" {
            // Long enough for the proxy to have passed the head and the first bytes on.
            std::thread::sleep(Duration::from_millis(200));
            return reset(&stream);
        }
    }
}

/// Makes the closing of `stream` a reset (RST) rather than an end of stream (FIN), as when an upstream
/// crashes mid-response.
fn reset(stream: &TcpStream) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let clone = stream.try_clone().unwrap();
    clone.set_nonblocking(true).unwrap();
    // Linger is the socket's, so it holds for the other handles, whose drop then sends the reset.
    tokio::net::TcpStream::from_std(clone)
        .unwrap()
        .set_zero_linger()
        .unwrap();
}

/// `count` requests at once, each a `(method, path)` from `make`; the responses in the same order.
fn concurrent(addr: SocketAddr, count: usize, make: fn(usize) -> (&'static str, String)) -> Vec<support::Response> {
    let threads: Vec<_> = (0..count)
        .map(|i| {
            std::thread::spawn(move || {
                let (method, path) = make(i);
                support::send_raw(addr, &http(method, &path, &[], b""))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn pipelined_requests_share_connections_and_each_gets_its_own_response() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let responses = concurrent(proxy.addr, 100, |i| ("GET", format!("/p/item/{i}?n={i}")));
    for (i, response) in responses.iter().enumerate() {
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
        let echo = response.json();
        assert_eq!(
            echo["path"],
            format!("/p/item/{i}"),
            "request {i} got another's response"
        );
        assert_eq!(echo["query"], format!("n={i}"));
    }
    assert_eq!(up.requests(), 100);
    // Never more than 8 on one connection: 100 at once need at least 13, and are given no more.
    assert!(
        up.connections() <= 13,
        "{} connections for 100 requests",
        up.connections()
    );
}

#[test]
fn pipelined_responses_are_read_in_every_framing() {
    const CASES: [(&str, &str, u16, &str); 6] = [
        ("GET", "length", 200, "length"),
        ("GET", "chunked", 200, "chunked"),
        ("GET", "hints", 200, "hints"),
        ("GET", "empty", 204, ""),
        ("HEAD", "length", 200, ""),
        ("GET", "close", 200, "close"),
    ];
    let up = Scripted::start();
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let responses = concurrent(proxy.addr, 60, |i| (CASES[i % 6].0, format!("/p/{}", CASES[i % 6].1)));
    for (i, response) in responses.iter().enumerate() {
        let (method, case, status, body) = CASES[i % 6];
        assert_eq!(
            (response.status, response.text().as_str()),
            (status, body),
            "{method} {case} (request {i})"
        );
    }
    if let Some(head) = responses.iter().find(|r| r.status == 200 && r.body.is_empty()) {
        assert_eq!(
            head.header("content-length"),
            Some("6"),
            "HEAD keeps the length it describes"
        );
    }
    // The ten `close` answers each ended a connection, and what waited behind them went out again.
    assert_eq!(up.requests.load(Ordering::SeqCst), 60, "each request was answered once");
    assert!(up.connections.load(Ordering::SeqCst) > 1);
}

#[test]
fn a_pipelined_response_that_is_not_http_is_502_and_the_next_request_gets_a_new_connection() {
    let up = Scripted::start();
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let r = proxy.get("/p/garbage", &[]);
    assert_eq!(r.status, 502);
    assert_eq!(r.body, server_error_page());
    assert!(proxy.log().contains("malformed response head"), "{}", proxy.log());
    let r = proxy.get("/p/length", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "length"));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

/// Writes `raw` to a new connection and reads until the proxy closes it; panics if that takes longer
/// than a few seconds (a body that never ends), and gives back the raw bytes.
fn read_to_close(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    if let Err(error) = stream.read_to_end(&mut bytes) {
        panic!(
            "the response did not end ({error}); got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    bytes
}

#[test]
fn a_pipelined_body_is_framed_by_a_content_length_that_connection_names() {
    let up = Scripted::start();
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    for _ in 0..2 {
        let raw = read_to_close(proxy.addr, &http("GET", "/p/listed", &[], b""));
        let r = support::parse_response(&raw).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "listed"));
    }
    let r = proxy.get("/p/length", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "length"));
    // The body ended where its length said, so the connection carried the next requests too.
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pipelined_response_with_both_length_and_transfer_encoding_is_502() {
    let up = Scripted::start();
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let r = proxy.get("/p/both", &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.body, server_error_page());
    assert!(
        proxy.log().contains("both Content-Length and Transfer-Encoding"),
        "{}",
        proxy.log()
    );
    // What followed on that connection could not be trusted either: the next request gets a new one.
    let r = proxy.get("/p/length", &[]);
    assert_eq!((r.status, r.text().as_str()), (200, "length"));
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn a_pipelined_body_delimited_by_the_close_and_cut_by_a_reset_is_aborted() {
    let up = Scripted::start();
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let raw = read_to_close(proxy.addr, &http("GET", "/p/reset", &[], b""));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:?}");
    assert!(text.contains("partial"), "{text:?}");
    // The head went out before the reset, so the client learns of it from a body that does not end well:
    // no last chunk, nor a length that the bytes reach.
    let r = support::parse_response(&raw).unwrap();
    assert_eq!(r.header("transfer-encoding"), Some("chunked"), "{text:?}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a reset body was passed on as whole: {text:?}"
    );
}

#[test]
fn a_pipelined_get_is_sent_at_most_three_times_then_502() {
    let up = Upstream::start("drop", Behaviour::DropAfterHead);
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 8")]);
    let r = proxy.get("/p/x", &[]);
    assert_eq!(r.status, 502);
    std::thread::sleep(Duration::from_millis(100));
    // GET may be sent again (RFC 9110, 9.2.2): twice more, each time on a new connection.
    assert_eq!((up.requests(), up.connections()), (3, 3));
    assert!(proxy.log().contains("on each of three attempts"), "{}", proxy.log());
    // A POST never goes on a lane, so never twice.
    assert_eq!(proxy.post("/p/x", &[], b"{}").status, 502);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.requests(), 4);
}

#[test]
fn a_client_that_leaves_mid_body_does_not_stall_the_module() {
    let up = Upstream::start("a", Behaviour::Echo);
    let proxy = proxy("", &[entry("p", &[up.url()], "pipeline = 4")]);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
        .write_all(&http("GET", &format!("/p/stream?bytes={}", 256 << 20), &[], b""))
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 64 * 1024];
    while got < (1 << 20) {
        got += stream.read(&mut buf).unwrap();
    }
    drop(stream);
    for i in 0..5 {
        let r = proxy.get(&format!("/p/after/{i}"), &[]);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["path"], format!("/p/after/{i}"));
    }
    let download: u64 = 32 << 20;
    let (status, _, received) = proxy.download(&http("GET", &format!("/p/stream?bytes={download}"), &[], b""), |_| {});
    assert_eq!((status, received), (200, download));
}
