//! Large static files over every transport the proxy speaks, each body compared byte for byte with the
//! file: plain HTTP/1.1 (where they go out with `sendfile`, through placeholders that must never reach
//! the client as zeros), HTTP/1.1 over TLS, h2c and h2 over TLS. Keep-alive with several files in a row,
//! pipelining, ranges, HEAD, and a file truncated while it is sent (the client must see a cut response).

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use support::test_ca::{rustls_client_trusting, TestCa};
use support::{copy_dir, free_port, repo_html, Proxy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Files over the 64 KiB read whole, around and across the 256 KiB placeholder span, and past what a
/// socket buffer takes at once; and a small one served from memory between them.
const FILES: &[(&str, usize)] = &[
    ("a.bin", 64 * 1024 + 1),
    ("b.bin", 3 * 1024 * 1024 + 12_345),
    ("small.txt", 100),
    ("c.bin", 256 * 1024),
    ("d.bin", 9 * 1024 * 1024 + 7),
];

/// Bytes no placeholder could pass for (no run of zeros), different at every offset.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 255) as u8 + 1
        })
        .collect()
}

struct Site {
    proxy: Proxy,
    tls_port: u16,
    ca: TestCa,
}

fn start() -> Site {
    let ca = TestCa::new();
    let home = tempfile::tempdir().unwrap();
    let site = home.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    for (seed, (name, len)) in FILES.iter().enumerate() {
        std::fs::write(site.join(name), pattern(*len, seed as u32)).unwrap();
    }
    copy_dir(&repo_html(), &home.path().join("html"));
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    let (cert, key, _) = ca.leaf(&["site.test"]);
    std::fs::write(home.path().join("cert.pem"), cert).unwrap();
    std::fs::write(home.path().join("cert.key"), key).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let config = format!(
        "[server]\nport = {port}\nlisten = \"127.0.0.1\"\nroot_path = \"site\"\n[tls]\nport = {tls_port}\n\
         [[tls.certificate]]\nnames = [\"site.test\"]\ncert = \"cert.pem\"\nkey = \"cert.key\"\n"
    );
    std::fs::write(home.path().join("conf/default.toml"), config).unwrap();
    let proxy = Proxy::start_in(home, port);
    Site { proxy, tls_port, ca }
}

impl Site {
    fn contents(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.proxy.home.path().join("site").join(name)).unwrap()
    }

    async fn plain(&self) -> TcpStream {
        TcpStream::connect(self.proxy.addr).await.unwrap()
    }

    async fn tls(&self, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let mut config = rustls_client_trusting(CertificateDer::from(self.ca.issuer.der().to_vec()));
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", self.tls_port)).await.unwrap();
        let stream = connector
            .connect(ServerName::try_from("site.test").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
        stream
    }
}

fn request(method: &str, path: &str, range: Option<&str>) -> hyper::Request<Empty<Bytes>> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("http://site.test{path}"))
        .header("host", "site.test");
    if let Some(range) = range {
        builder = builder.header("range", range);
    }
    builder.body(Empty::new()).unwrap()
}

/// What every transport must get right: each file whole and exact, a small one between large ones, a
/// range, HEAD, and a large file again after them; `send` sends one request on one connection.
async fn every_kind_of_request<F, Fut>(site: &Site, send: F)
where
    F: Fn(hyper::Request<Empty<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = (u16, hyper::HeaderMap, Vec<u8>)>,
{
    for round in 0..2 {
        for (name, len) in FILES {
            let (status, headers, body) = send(request("GET", &format!("/{name}"), None)).await;
            assert_eq!(status, 200, "{name}");
            assert_eq!(headers["content-length"], len.to_string().as_str());
            assert!(
                body == site.contents(name),
                "{name} (round {round}): the bytes differ from the file's"
            );
        }
    }
    let d = site.contents("d.bin");
    let (status, _, body) = send(request("GET", "/d.bin", Some("bytes=1000-3000000"))).await;
    assert_eq!(status, 206);
    assert!(body == d[1000..=3_000_000], "the range's bytes differ from the file's");
    let (status, headers, body) = send(request("HEAD", "/d.bin", None)).await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers["content-length"], d.len().to_string().as_str());
    let (status, _, body) = send(request("GET", "/d.bin", None)).await;
    assert_eq!(status, 200);
    assert!(
        body == d,
        "d.bin after a range and HEAD: the bytes differ from the file's"
    );
}

async fn http1_requests<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(site: &Site, io: T) {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    let connection = tokio::spawn(connection);
    let sender = tokio::sync::Mutex::new(sender);
    every_kind_of_request(site, |request| async {
        let mut sender = sender.lock().await;
        sender.ready().await.expect("the connection was kept alive");
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status.as_u16(), parts.headers, body)
    })
    .await;
    drop(sender);
    connection.await.unwrap().unwrap();
}

async fn http2_requests<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(site: &Site, io: T) {
    let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    every_kind_of_request(site, |request| {
        let mut sender = sender.clone();
        async move {
            let response = sender.send_request(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes().to_vec();
            (parts.status.as_u16(), parts.headers, body)
        }
    })
    .await;
    // And several at once on the one connection.
    let all = FILES.iter().map(|(name, _)| {
        let mut sender = sender.clone();
        async move {
            let response = sender
                .send_request(request("GET", &format!("/{name}"), None))
                .await
                .unwrap();
            (name, response.into_body().collect().await.unwrap().to_bytes())
        }
    });
    for (name, body) in futures_util::future::join_all(all).await {
        assert!(
            body == site.contents(name),
            "{name} at once: the bytes differ from the file's"
        );
    }
    drop(sender);
    connection.abort();
}

#[tokio::test]
async fn plain_http1_sends_every_file_exactly() {
    let site = start();
    http1_requests(&site, site.plain().await).await;
}

#[tokio::test]
async fn http1_over_tls_sends_every_file_exactly() {
    let site = start();
    http1_requests(&site, site.tls(b"http/1.1").await).await;
}

#[tokio::test]
async fn h2c_sends_every_file_exactly() {
    let site = start();
    http2_requests(&site, site.plain().await).await;
}

#[tokio::test]
async fn h2_over_tls_sends_every_file_exactly() {
    let site = start();
    http2_requests(&site, site.tls(b"h2").await).await;
}

/// Reads one response with a `Content-Length` from `io` (bytes past its head already in `pending`):
/// status, body, and whether the connection ended before the body did.
async fn read_response<T: AsyncRead + Unpin>(io: &mut T, pending: &mut Vec<u8>) -> (u16, Vec<u8>, bool) {
    let mut chunk = vec![0u8; 256 * 1024];
    let (status, length, start) = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map(|n| n.trim().parse().unwrap())
                .unwrap();
            break (head[9..12].parse().unwrap(), length, end + 4);
        }
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the response head");
        pending.extend_from_slice(&chunk[..n]);
    };
    pending.drain(..start);
    while pending.len() < length {
        match io.read(&mut chunk).await {
            Ok(n) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return (status, std::mem::take(pending), true),
        }
    }
    let body = pending.drain(..length).collect();
    (status, body, false)
}

#[tokio::test]
async fn pipelined_requests_on_plain_http1_get_their_own_files_in_order() {
    let site = start();
    let mut stream = site.plain().await;
    let names = ["b.bin", "small.txt", "a.bin", "d.bin", "c.bin"];
    let requests: String = names
        .iter()
        .map(|name| format!("GET /{name} HTTP/1.1\r\nHost: site.test\r\n\r\n"))
        .collect();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    for name in names {
        let (status, body, cut) = read_response(&mut stream, &mut pending).await;
        assert_eq!((status, cut), (200, false), "{name}");
        assert!(
            body == site.contents(name),
            "{name}, pipelined: the bytes differ from the file's"
        );
    }
}

/// A file truncated while it is sent: the connection ends short of the `Content-Length`, never a shorter
/// body passed off as whole, and what came is the file's own bytes up to its new end. Past that, bytes
/// that `sendfile` had queued on the socket before the truncation are the page cache's as it is when
/// they leave (zero-copy; nginx's `sendfile` does the same), so only `copied` (bytes read into user space
/// first) also promises the old bytes there.
async fn a_truncated_file_cuts_the_response<T: AsyncRead + AsyncWrite + Unpin>(site: &Site, mut io: T, copied: bool) {
    let name = "cut.bin";
    let path = site.proxy.home.path().join("site").join(name);
    let len = 48 << 20;
    let original = pattern(len, 99);
    std::fs::write(&path, &original).unwrap();
    io.write_all(format!("GET /{name} HTTP/1.1\r\nHost: site.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Read the head and a little, then let the proxy fill the socket buffers and wait.
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    while pending.len() < 64 * 1024 {
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        pending.extend_from_slice(&chunk[..n]);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // Promptly: a connection left open for its next request (`header_timeout`, 10 s) ends too, later.
    let (status, body, cut) = tokio::time::timeout(Duration::from_secs(5), read_response(&mut io, &mut pending))
        .await
        .expect("the connection was neither finished nor cut");
    assert_eq!(status, 200);
    assert!(cut, "a response of {} bytes passed for the whole file", body.len());
    assert!(body.len() < len);
    let checked = if copied { body.len() } else { body.len().min(1 << 20) };
    let differ = body[..checked].iter().zip(&original).position(|(a, b)| a != b);
    assert!(
        differ.is_none(),
        "the bytes before the cut ({} of them) differ from the file's from offset {differ:?}",
        body.len()
    );
}

#[tokio::test]
async fn a_file_truncated_while_sent_over_plain_http1_is_cut() {
    let site = start();
    a_truncated_file_cuts_the_response(&site, site.plain().await, false).await;
}

#[tokio::test]
async fn a_file_truncated_while_sent_over_tls_is_cut() {
    let site = start();
    a_truncated_file_cuts_the_response(&site, site.tls(b"http/1.1").await, true).await;
}
