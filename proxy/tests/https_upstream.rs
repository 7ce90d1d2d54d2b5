//! `module_http` to `https://` upstreams, through the real binary: a local TLS upstream with a CA of the
//! test's own is trusted through `ca_file` and not without it, a certificate for another name is
//! refused, `insecure = true` takes anything (and `modproxy check` warns), connections are kept alive
//! (one handshake for many requests), and a WebSocket upgrade goes through.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::test_ca::TestCa;
use support::Proxy;

/// A TLS upstream on 127.0.0.1 that answers every request with the `Host` it was sent, keeps
/// connections alive, and counts the TLS handshakes it completed. An `Upgrade` request is answered 101,
/// and the connection then echoes what it reads.
struct TlsUpstream {
    port: u16,
    handshakes: Arc<AtomicUsize>,
}

impl TlsUpstream {
    fn start(cert_pem: &str, key_pem: &str) -> TlsUpstream {
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, counted) = (Arc::clone(&config), Arc::clone(&counted));
                std::thread::spawn(move || serve(stream, config, &counted));
            }
        });
        TlsUpstream { port, handshakes }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

fn serve(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>, handshakes: &AtomicUsize) {
    let mut tls = rustls::ServerConnection::new(config).unwrap();
    while tls.is_handshaking() {
        if tls.complete_io(&mut tcp).is_err() {
            return; // the proxy refused the certificate
        }
    }
    handshakes.fetch_add(1, Ordering::SeqCst);
    let mut reader = BufReader::new(rustls::StreamOwned::new(tls, tcp));
    loop {
        let mut host = String::new();
        let mut upgrade = false;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("host") {
                    host = value.trim().to_owned();
                }
                upgrade |= name.eq_ignore_ascii_case("upgrade");
            }
        }
        let stream = reader.get_mut();
        if upgrade {
            let head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
            stream.write_all(head.as_bytes()).unwrap();
            stream.flush().unwrap();
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let stream = reader.get_mut();
                if stream.write_all(&buf[..n]).and_then(|()| stream.flush()).is_err() {
                    return;
                }
            }
            return;
        }
        let body = format!("host={host}");
        let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if stream
            .write_all(response.as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A proxy with module `/s/` forwarding to `https://{host}:{port}` with `extra` keys; the CA's PEM is
/// written to HOME/ca.pem for `ca_file = "ca.pem"`.
fn proxy(ca: &TestCa, host: &str, port: u16, extra: &str) -> Proxy {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("ca.pem"), ca.pem()).unwrap();
    let proxy_port = support::free_port();
    let config = format!(
        "[server]\nport = {proxy_port}\nlisten = \"127.0.0.1\"\n\n[module]\nmodule_http = [ {{ module = \"s\", proxy_pass = \"https://{host}:{port}\"{extra} }} ]\n"
    );
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    std::fs::write(home.path().join("conf/default.toml"), config).unwrap();
    Proxy::start_in(home, proxy_port)
}

#[test]
fn a_trusted_upstream_answers_with_host_from_the_url_over_one_kept_connection() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&cert, &key);
    let proxy = proxy(&ca, "localhost", upstream.port, ", ca_file = \"ca.pem\"");

    for _ in 0..5 {
        let response = proxy.get("/s/x", &[]);
        assert_eq!(response.status, 200, "{}\n{}", response.text(), proxy.log());
        assert_eq!(response.text(), format!("host=localhost:{}", upstream.port));
    }
    assert_eq!(upstream.handshakes(), 1, "5 requests, one TLS connection kept alive");
}

#[test]
fn an_upstream_whose_ca_is_not_trusted_is_a_502_that_says_unknown_issuer() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&cert, &key);
    let proxy = proxy(&ca, "localhost", upstream.port, "");

    let response = proxy.get("/s/x", &[]);
    assert_eq!(response.status, 502);
    let log = proxy.log();
    assert!(log.contains("unknown issuer"), "{log}");
    assert!(
        log.contains("node masked"),
        "a bad certificate masks the node like a refused connect: {log}"
    );
    assert_eq!(upstream.handshakes(), 0);
}

#[test]
fn a_certificate_for_another_name_is_a_502_that_says_name_mismatch() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(&["other.test"]);
    let upstream = TlsUpstream::start(&cert, &key);
    let proxy = proxy(&ca, "localhost", upstream.port, ", ca_file = \"ca.pem\"");

    let response = proxy.get("/s/x", &[]);
    assert_eq!(response.status, 502);
    let log = proxy.log();
    assert!(log.contains("name mismatch"), "{log}");
}

#[test]
fn insecure_takes_any_certificate_and_check_warns_about_it() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(&["other.test"]);
    let upstream = TlsUpstream::start(&cert, &key);
    let proxy = proxy(&ca, "localhost", upstream.port, ", insecure = true");

    let response = proxy.get("/s/x", &[]);
    assert_eq!(response.status, 200, "{}", proxy.log());
    assert!(
        proxy.log().contains("insecure = true"),
        "the start is logged with a warning"
    );

    let check = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .arg("--home")
        .arg(proxy.home.path())
        .arg("check")
        .output()
        .unwrap();
    assert!(check.status.success());
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("warning: insecure = true"), "{out}");
}

#[test]
fn a_websocket_upgrade_goes_through_an_https_upstream() {
    let ca = TestCa::new();
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let upstream = TlsUpstream::start(&cert, &key);
    let proxy = proxy(&ca, "localhost", upstream.port, ", ca_file = \"ca.pem\"");

    let mut client = TcpStream::connect(proxy.addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = "GET /s/ws HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    client.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 101"), "{status}{}", proxy.log());
    let mut line = String::new();
    while line != "\r\n" {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    client.write_all(b"ping over tls").unwrap();
    let mut echoed = [0u8; 13];
    reader.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping over tls");
}
