//! Hostile clients: malformed requests, oversized heads, slow senders and connection floods. Each gets a
//! clear status or a closed connection, and the server keeps serving everyone else. Request smuggling
//! through `module_http` (HTTP/1 framing tricks, and HTTP/2 headers that would split an HTTP/1 request)
//! is checked against a raw upstream that records every byte it gets.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::{parse_response, Proxy};

fn still_serves(proxy: &Proxy) {
    assert_eq!(proxy.get("/", &[]).status, 200, "the server keeps serving");
}

#[test]
fn malformed_request_lines_get_400() {
    let proxy = Proxy::start("", "");
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        let response = proxy.send(raw);
        assert!(
            matches!(response.status, 400 | 505),
            "{:?} gave {}",
            String::from_utf8_lossy(raw),
            response.status
        );
        still_serves(&proxy);
    }
}

#[test]
fn oversized_heads_get_431() {
    let proxy = Proxy::start("", "");
    let huge = "a".repeat(100 * 1024);
    let response = proxy.get("/", &[("X-Huge", &huge)]);
    assert_eq!(response.status, 431);
    let long_path = format!("/{}", "p".repeat(100 * 1024));
    assert_eq!(proxy.get(&long_path, &[]).status, 431);
    still_serves(&proxy);
}

#[test]
fn slow_header_senders_are_cut_off_and_others_served() {
    let proxy = Proxy::start("header_timeout = 1", "");
    // Slowloris: many connections that dribble a request head and never finish it.
    let mut slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = TcpStream::connect(proxy.addr).unwrap();
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            stream
        })
        .collect();
    let started = Instant::now();
    for _ in 0..10 {
        still_serves(&proxy);
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "normal clients are served while slow ones wait"
    );
    std::thread::sleep(Duration::from_millis(300));
    for stream in &mut slow {
        let _ = stream.write_all(b"a");
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Every slow connection must be closed by the proxy (end of stream or reset, a 408 allowed
    // before it) by this deadline; one still open when it passes fails the test.
    let deadline = Instant::now() + Duration::from_secs(3);
    for (i, stream) in slow.iter_mut().enumerate() {
        let mut got = Vec::new();
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("slow client {i} still open after header_timeout")
                }
                Err(_) => break,
            }
        }
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
            "slow client {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    still_serves(&proxy);
}

#[test]
fn connections_over_the_limit_are_refused_cleanly() {
    let go = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("max_connections = 4", &config(&[socket_module("s3", &[go.addr], "")]));
    let keep_alive_post = |stream: &mut TcpStream| {
        let body = envelope("x", json!(1));
        let head = format!(
            "POST /s3/ HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(&[head.as_bytes(), &body].concat()).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        parse_response(&buf[..n]).unwrap().status
    };
    // Fill every slot (retrying while the harness's readiness probe still holds one).
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            (0..50)
                .find_map(|_| {
                    let mut stream = TcpStream::connect(proxy.addr).unwrap();
                    let admitted = keep_alive_post(&mut stream) == 200;
                    std::thread::sleep(Duration::from_millis(if admitted { 0 } else { 100 }));
                    admitted.then_some(stream)
                })
                .expect("a free slot")
        })
        .collect();
    // The fifth is answered 503 and closed.
    let response = proxy.get("/", &[]);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("1"));
    // The ones already open keep being served.
    for stream in &mut held {
        assert_eq!(keep_alive_post(stream), 200);
    }
    // A slot frees when a connection closes (as soon as the server has seen it close).
    drop(held.pop());
    let freed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        proxy.get("/", &[]).status == 200
    });
    assert!(freed, "a closed connection gives its slot back");
    let log = proxy.log();
    assert!(log.contains("connection refused: at [server] max_connections"), "{log}");
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    assert!(!metrics.contains("modproxy_refused_connections_total 0"), "{metrics}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An HTTP/2 (prior knowledge) client connection to `addr`, driven by a task of its own.
async fn http2_client<B>(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<hyper::Result<()>>,
)
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

#[test]
fn http2_with_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Empty};
    let proxy = Proxy::start("", "");
    let runtime = runtime();
    let index = std::fs::read(support::repo_html().join("index.html")).unwrap();
    runtime.block_on(async {
        let (mut sender, _connection) = http2_client(proxy.addr).await;
        // Several requests on the one connection, one after another.
        for _ in 0..3 {
            let request = http::Request::get(format!("http://{}/", proxy.addr))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), index);
        }
    });
}

/// HTTP/2 has no header timer: an HTTP/2 connection that moves no byte for `header_timeout` is told to go
/// away and closed (dropped, if the client does not answer), so idle clients cannot hold connection
/// slots for ever.
#[test]
fn an_idle_http2_connection_is_closed() {
    let proxy = Proxy::start("header_timeout = 1", "");
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    // The preface and an empty SETTINGS frame, then nothing.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(error) => panic!("still open after {:?}: {error}", started.elapsed()),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(!received.is_empty(), "the server's SETTINGS came first");

    // A client that answers (hyper's) is told to go away after its last request, and its connection ends.
    let runtime = runtime();
    runtime.block_on(async {
        let (mut sender, connection) = http2_client(proxy.addr).await;
        let request = http::Request::get(format!("http://{}/", proxy.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
        // Ended by the server (cleanly, or with a broken pipe when the client's last write crossed the
        // close), rather than held open.
        let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(matches!(ended, Ok(Ok(_))), "{ended:?}");
    });
}

/// The idle bound is on bytes, not on requests: an HTTP/2 request whose backend answers after more than
/// `header_timeout` is still answered.
#[test]
fn a_slow_http2_request_outlives_the_idle_bound() {
    use http_body_util::{BodyExt, Full};
    let slow = Backend::start(Style::Slow(Duration::from_secs(2)));
    let proxy = Proxy::start("header_timeout = 1", &config(&[socket_module("s3", &[slow.addr], "")]));
    let runtime = runtime();
    let (status, body) = runtime.block_on(async {
        let (mut sender, _connection) = http2_client(proxy.addr).await;
        let request = http::Request::post(format!("http://{}/s3/", proxy.addr))
            .body(Full::new(bytes::Bytes::from(envelope("x", json!(7)))))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        (status, response.into_body().collect().await.unwrap().to_bytes())
    });
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["echo"]["data"], 7, "{reply}");
}

#[test]
fn backend_pools_are_bounded_per_node() {
    // 300 requests in flight at once need 300 backend connections; afterwards the pool keeps at most
    // 256 of them idle (socket_forward::pool's MAX_IDLE_PER_NODE) and closes the rest.
    // Each reply takes 2 s, so all 300 overlap even when threads start slowly on a loaded machine.
    let slow = Backend::start(Style::Slow(Duration::from_secs(2)));
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[slow.addr], "")]));
    let addr = proxy.addr;
    let clients: Vec<_> = (0..300)
        .map(|_| {
            std::thread::spawn(move || {
                support::send_raw(addr, &support::http("POST", "/s3/", &[], &envelope("x", json!(1)))).status
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 200);
    }
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let pooled: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!(
                "modproxy_pooled_connections{{module=\"s3\",node=\"{}\"}} ",
                slow.addr
            ))
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pool gauge:\n{metrics}"));
    assert!(
        slow.connections() > 256,
        "the load needed more connections than the pool keeps"
    );
    assert!(pooled <= 256.0 && pooled > 0.0, "{pooled} idle connections pooled");
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_SETTINGS: u8 = 0x4;
const H2_GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const END_STREAM: u8 = 0x1;

/// `GET /` as an HPACK block of static-table entries (`:method GET`, `:scheme http`, `:path /`) and a
/// literal `:authority: x`; its stream stays open (no END_STREAM).
fn h2_get_headers(stream: u32) -> Vec<u8> {
    h2_frame(H2_HEADERS, END_HEADERS, stream, &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'])
}

/// Frames the server sends on `stream` until it closes the connection or `wait` passes.
fn h2_read_frames(stream: &mut TcpStream, wait: Duration) -> Vec<(u8, u32, Vec<u8>)> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let mut frames = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let len = (usize::from(bytes[at]) << 16) | (usize::from(bytes[at + 1]) << 8) | usize::from(bytes[at + 2]);
        let id = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        let end = (at + 9 + len).min(bytes.len());
        frames.push((bytes[at + 3], id, bytes[at + 9..end].to_vec()));
        at = end;
    }
    frames
}

/// A connection's streams are bounded: the server advertises `[server] http2_max_streams` and refuses a
/// stream over it (REFUSED_STREAM), while the ones within it are answered.
#[test]
fn http2_streams_over_the_limit_are_refused() {
    let proxy = Proxy::start("http2_max_streams = 3", "");
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    for id in [1, 3, 5, 7] {
        out.extend(h2_get_headers(id));
    }
    stream.write_all(&out).unwrap();
    let frames = h2_read_frames(&mut stream, Duration::from_secs(2));
    let settings = &frames.iter().find(|(kind, _, _)| *kind == H2_SETTINGS).unwrap().2;
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3) = 3.
    assert!(
        settings.chunks(6).any(|s| s == [0, 3, 0, 0, 0, 3]),
        "advertised: {settings:?}"
    );
    let refused: Vec<u32> = frames
        .iter()
        .filter(|(kind, _, payload)| *kind == H2_RST_STREAM && payload == &[0, 0, 0, 7])
        .map(|(_, id, _)| *id)
        .collect();
    assert_eq!(refused, [7], "{frames:?}");
    for id in [1, 3, 5] {
        assert!(
            frames.iter().any(|(kind, sid, _)| *kind == H2_HEADERS && *sid == id),
            "stream {id} answered: {frames:?}"
        );
    }

    // The default is 100, not hyper's 200.
    let proxy = Proxy::start("", "");
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream
        .write_all(
            &[
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
                &h2_frame(H2_SETTINGS, 0, 0, &[]),
            ]
            .concat(),
        )
        .unwrap();
    let frames = h2_read_frames(&mut stream, Duration::from_millis(500));
    let settings = &frames.iter().find(|(kind, _, _)| *kind == H2_SETTINGS).unwrap().2;
    assert!(
        settings.chunks(6).any(|s| s == [0, 3, 0, 0, 0, 100]),
        "advertised: {settings:?}"
    );
}

/// Rapid reset (CVE-2023-44487): a client that opens and cancels streams thousands of times is told to
/// go away and closed, and a well-behaved client on another connection gets every answer meanwhile.
#[test]
fn an_http2_rapid_reset_flood_is_closed_and_others_served() {
    use http_body_util::Empty;
    let proxy = Proxy::start("", "");
    let mut flood = TcpStream::connect(proxy.addr).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        out.extend(h2_get_headers(id));
        // CANCEL (0x8).
        out.extend(h2_frame(H2_RST_STREAM, 0, id, &[0, 0, 0, 8]));
    }
    let writer = {
        let mut flood = flood.try_clone().unwrap();
        // The server may close before it has read everything: a failed write is part of the outcome.
        std::thread::spawn(move || {
            let _ = flood.write_all(&out);
        })
    };
    let runtime = runtime();
    runtime.block_on(async {
        let (mut sender, _connection) = http2_client(proxy.addr).await;
        for _ in 0..50 {
            let request = http::Request::get(format!("http://{}/", proxy.addr))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
        }
    });
    let frames = h2_read_frames(&mut flood, Duration::from_secs(5));
    writer.join().unwrap();
    assert!(
        frames.iter().any(|(kind, _, _)| *kind == H2_GOAWAY),
        "no GOAWAY among {} frames",
        frames.len()
    );
    still_serves(&proxy);
}

/// With `[server] proxy_protocol = true`, every connection starts with a PROXY header (v1 text or v2
/// binary) that names the client; a connection without a valid one is closed unanswered.
#[test]
fn proxy_protocol_headers_name_the_client_and_are_required() {
    let backend = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start(
        "proxy_protocol = true",
        &config(&[socket_module(
            "s3",
            &[backend.addr],
            ", head = { client_ip = \"remote_addr\" }",
        )]),
    );
    let body = envelope("x", json!(1));
    let post = support::http("POST", "/s3/", &[], &body);
    let client_ip = |header: &[u8]| {
        let response = proxy.send(&[header, &post].concat());
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["echo"]["head"]["client_ip"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        client_ip(b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 80\r\n"),
        "198.51.100.7"
    );
    assert_eq!(
        client_ip(b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 80\r\n"),
        "2001:db8::7"
    );
    let mut v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend([203, 0, 113, 9, 10, 0, 0, 1, 0x15, 0xb3, 0, 80]);
    assert_eq!(client_ip(&v2), "203.0.113.9");
    // A v2 LOCAL header (a health check by the balancer itself): the socket peer is the client.
    assert_eq!(client_ip(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"), "127.0.0.1");
    let access = proxy.access_log();
    assert!(access.contains("198.51.100.7 - - ["), "{access}");

    for bad in [
        &post[..],
        b"PROXY TCP4 999.1.1.1 10.0.0.1 5555 80\r\n",
        b"PROXY TCP4 198.51.100.7 10.0.0.1 5555\r\n",
        b"PROXY TCP4 2001:db8::7 10.0.0.1 5555 80\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x04\x01\x02\x03\x04",
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
    ] {
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(&[bad, &post].concat());
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        assert!(
            got.is_empty(),
            "{:?} was answered: {:?}",
            String::from_utf8_lossy(bad),
            String::from_utf8_lossy(&got)
        );
    }
    still_served_with_header(&proxy);
}

fn still_served_with_header(proxy: &Proxy) {
    let response = proxy.send(&[&b"PROXY UNKNOWN\r\n"[..], &support::http("GET", "/", &[], b"")].concat());
    assert_eq!(response.status, 200);
}

// ---- request smuggling through module_http ----------------------------------------------------------

/// What a raw upstream saw: every byte, per connection, and the request line of each request it parsed.
#[derive(Default)]
struct Recorded {
    bytes: Vec<Vec<u8>>,
    requests: Vec<String>,
}

/// A raw TCP upstream that records every byte it receives and answers each request it parses. Its parser
/// is the lenient kind smuggling preys on: bare LF ends lines, `chunked` anywhere in `Transfer-Encoding`
/// means chunked, else the first `Content-Length` counts. Two requests where the client sent one would
/// show here as a second request line.
fn recording_upstream() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Recorded>>) {
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let shared = Arc::clone(&recorded);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let recorded = Arc::clone(&shared);
            std::thread::spawn(move || serve_recorded(stream, &recorded));
        }
    });
    (addr, recorded)
}

fn serve_recorded(mut stream: TcpStream, recorded: &std::sync::Mutex<Recorded>) {
    let index = {
        let mut recorded = recorded.lock().unwrap();
        recorded.bytes.push(Vec::new());
        recorded.bytes.len() - 1
    };
    let mut buffer: Vec<u8> = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // Parse every whole request buffered so far.
        while let Some((line, used)) = lenient_request(&buffer) {
            buffer.drain(..used);
            recorded.lock().unwrap().requests.push(line);
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                recorded.lock().unwrap().bytes[index].extend_from_slice(&buf[..n]);
                buffer.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// One whole request at the front of `bytes`: its request line and the bytes it used.
fn lenient_request(bytes: &[u8]) -> Option<(String, usize)> {
    let mut lines = Vec::new();
    let mut at = 0;
    loop {
        let end = at + bytes[at..].iter().position(|&b| b == b'\n')?;
        let line = String::from_utf8_lossy(&bytes[at..end])
            .trim_end_matches('\r')
            .to_owned();
        at = end + 1;
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let header = |name: &str| {
        lines.iter().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        loop {
            let end = at + bytes[at..].iter().position(|&b| b == b'\n')?;
            let size_line = String::from_utf8_lossy(&bytes[at..end]).trim().to_owned();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or(""), 16).unwrap_or(0);
            at = end + 1;
            if size == 0 {
                // Trailers, up to an empty line.
                loop {
                    let end = at + bytes[at..].iter().position(|&b| b == b'\n')?;
                    let empty = bytes[at..end].iter().all(|&b| b == b'\r');
                    at = end + 1;
                    if empty {
                        return Some((lines[0].clone(), at));
                    }
                }
            }
            at += size;
            let end = at + bytes.get(at..)?.iter().position(|&b| b == b'\n')?;
            at = end + 1;
        }
    }
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    (bytes.len() >= at + length).then(|| (lines[0].clone(), at + length))
}

/// What became of one hostile request through `module_http`: the client's answer (status, if any), and
/// what the upstream parsed and received on account of it.
fn smuggle(proxy: &Proxy, recorded: &std::sync::Mutex<Recorded>, raw: &[u8]) -> (Option<u16>, Vec<String>, Vec<u8>) {
    let before = {
        let recorded = recorded.lock().unwrap();
        (
            recorded.requests.len(),
            recorded.bytes.iter().map(Vec::len).sum::<usize>(),
        )
    };
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(raw).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    // Whatever the upstream was going to get has come by now.
    std::thread::sleep(Duration::from_millis(100));
    let recorded = recorded.lock().unwrap();
    let requests = recorded.requests[before.0..].to_vec();
    let bytes: Vec<u8> = recorded.bytes.concat()[before.1..].to_vec();
    (parse_response(&answer).map(|r| r.status), requests, bytes)
}

/// The proxy with one `module_http` module, `web`, in front of `upstream`, logging at debug level (where
/// a connection refused for a malformed request is logged).
fn proxy_in_front_of(upstream: std::net::SocketAddr) -> Proxy {
    Proxy::start(
        "",
        &format!(
            "[log]\nlevel = \"debug\"\n[module]\nmodule_http = [ {{ module = \"web\", proxy_pass = \"http://{upstream}\" }} ]\n"
        ),
    )
}

/// The request a smuggler hides after the one the proxy sees.
const SMUGGLED: &str = "GET /web/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";

/// Requests whose framing is ambiguous or malformed, each with `SMUGGLED` (or nothing) after it, through
/// `module_http`. Whatever the proxy makes of one, the upstream never parses two requests from it: either
/// the proxy refuses it with 400 (and a log line) and the upstream sees nothing, or it forwards it framed
/// one way only and the upstream parses exactly one. (Duplicate unequal `Content-Length` at the static
/// site is in `malformed_request_lines_get_400`, and Content-Length then Transfer-Encoding on a kept-alive
/// connection in `http_forward.rs::conflicting_framing_cannot_smuggle_a_request`.)
#[test]
fn smuggling_attempts_reach_the_upstream_as_one_request_or_not_at_all() {
    let (upstream, recorded) = recording_upstream();
    let proxy = proxy_in_front_of(upstream);
    let post = "POST /web/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    let refused: &[(&str, String)] = &[
        (
            "unequal duplicate Content-Length",
            format!(
                "{post}Content-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
        ),
        (
            "a Content-Length list",
            format!("{post}Content-Length: 5, 5\r\n\r\nhello"),
        ),
        (
            "Transfer-Encoding: chunked, identity",
            format!("{post}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding: identity with Content-Length",
            format!("{post}Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "a space before the colon",
            format!("{post}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "obs-fold hiding chunked",
            format!("{post}Content-Length: 5\r\nTransfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "obs-fold",
            "GET /web/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: 1\r\n 2\r\n\r\n".to_owned(),
        ),
        (
            "bare LF in chunk lines",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n{SMUGGLED}"),
        ),
        (
            "bare LF after a chunk size",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
        ),
        (
            "a chunk size over 64 bits",
            format!("{post}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\nhello\r\n0\r\n\r\n{SMUGGLED}"),
        ),
    ];
    // RFC 9112 6.1 and 6.3: Transfer-Encoding wins over Content-Length, which is dropped on the way.
    let forwarded: &[(&str, String)] = &[
        (
            "Transfer-Encoding then Content-Length",
            format!("{post}Transfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "Transfer-Encoding twice",
            format!("{post}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "equal duplicate Content-Length",
            format!("{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ),
        (
            "bare LF ending head lines",
            "GET /web/a HTTP/1.1\nHost: x\nConnection: close\n\n".to_owned(),
        ),
    ];
    for (case, raw) in refused {
        let (status, requests, bytes) = smuggle(&proxy, &recorded, raw.as_bytes());
        assert_eq!(status, Some(400), "{case}");
        assert!(
            requests.is_empty(),
            "{case}: the upstream parsed {requests:?} from {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    for (case, raw) in forwarded {
        let (status, requests, bytes) = smuggle(&proxy, &recorded, raw.as_bytes());
        assert_eq!(status, Some(200), "{case}");
        assert_eq!(
            requests,
            [raw.split("\r\n").next().unwrap().split('\n').next().unwrap()],
            "{case}: the upstream got {:?}",
            String::from_utf8_lossy(&bytes)
        );
        let header_count = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
        assert!(
            !(header_count.contains("content-length") && header_count.contains("transfer-encoding")),
            "{case}: both framings went up: {header_count:?}"
        );
    }
    // Nothing that went before left an upstream connection half-way through a request.
    let (status, requests, _) = smuggle(
        &proxy,
        &recorded,
        b"GET /web/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        (status, requests),
        (Some(200), vec!["GET /web/after HTTP/1.1".to_owned()])
    );
    // One log line per refusal: the connection's parse error, or the body's read error.
    let log = proxy.log();
    let logged = log
        .lines()
        .filter(|line| line.contains("client connection ended with an error") || line.contains("http request refused"))
        .count();
    assert_eq!(logged, refused.len(), "{log}");
}

/// HTTP/2 to HTTP/1: a header name or value with CR, LF or NUL (or an upper-case name) could become a
/// second request on the HTTP/1 side. Over h2c, each is refused as malformed (the connection ends with
/// PROTOCOL_ERROR), with a log line, and the upstream sees nothing; the same request without them is
/// answered, so the encoding is right.
#[test]
fn http2_header_values_with_cr_or_lf_never_reach_an_http1_upstream() {
    let (upstream, recorded) = recording_upstream();
    let proxy = proxy_in_front_of(upstream);
    // `GET /web/a` with `:authority: x` and one literal header (HPACK, not Huffman-coded).
    let request = |name: &str, value: &[u8]| {
        let mut block = vec![0x82, 0x86, 0x04, 6];
        block.extend_from_slice(b"/web/a");
        block.extend_from_slice(&[0x41, 0x01, b'x', 0x00, name.len() as u8]);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value);
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
        out.extend(h2_frame(H2_HEADERS, END_HEADERS | END_STREAM, 1, &block));
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.write_all(&out).unwrap();
        h2_read_frames(&mut stream, Duration::from_secs(2))
    };
    let hostile: [(&str, &[u8]); 6] = [
        ("x-a", b"1\r\nGET /web/smuggled HTTP/1.1\r\nHost: x"),
        ("x-a", b"1\nX-B: 2"),
        ("x-a", b"1\r"),
        ("x-a", b"1\x00"),
        ("x-a\r\nx-b", b"1"),
        ("X-A", b"1"),
    ];
    for (name, value) in hostile {
        let frames = request(name, value);
        let case = format!("{name:?}: {:?}", String::from_utf8_lossy(value));
        assert!(
            !frames.iter().any(|(kind, id, _)| *kind == H2_HEADERS && *id == 1),
            "{case}: answered"
        );
        let protocol_error = |payload: &[u8], at: usize| payload.get(at..at + 4) == Some(&[0, 0, 0, 1][..]);
        assert!(
            frames
                .iter()
                .any(|(kind, _, payload)| (*kind == H2_GOAWAY && protocol_error(payload, 4))
                    || (*kind == H2_RST_STREAM && protocol_error(payload, 0))),
            "{case}: no PROTOCOL_ERROR in {frames:?}"
        );
        assert!(recorded.lock().unwrap().requests.is_empty(), "{case}");
    }
    let log = proxy.log();
    let logged = log.matches("client connection ended with an error").count();
    assert_eq!(logged, hostile.len(), "{log}");

    let frames = request("x-a", b"1");
    assert!(
        frames.iter().any(|(kind, id, _)| *kind == H2_HEADERS && *id == 1),
        "{frames:?}"
    );
    assert_eq!(recorded.lock().unwrap().requests, ["GET /web/a HTTP/1.1"]);
}
