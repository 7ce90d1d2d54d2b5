//! The HTTPS listener, driven by curl, openssl and a rustls client against the real binary: SNI picks the
//! certificate, a wrong name fails verification, TLS 1.0 and 1.1 are refused, ALPN negotiates h2,
//! sessions resume, certificates reload under load without losing a request, and plain HTTP redirects.
//! Certificates come from a test CA made here with rcgen; no key is committed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use support::test_ca::{rustls_client_trusting, TestCa};
use support::{copy_dir, free_port, repo_html, Proxy};

/// A system tool the test drives. In CI a missing one fails the test; elsewhere the test is skipped
/// with a note (`make tls-tools` installs them).
fn have(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{tool} is missing; `make tls-tools` installs it"
        );
        eprintln!("skipped: {tool} is missing (`make tls-tools` installs it)");
    }
    found
}

/// A proxy with an HTTPS listener: each certificate is `(file stem, names in config, names in the
/// certificate)`; the first is the default. Returns the proxy, the HTTPS port and each certificate's DER.
struct Https {
    proxy: Proxy,
    port: u16,
    ders: Vec<Vec<u8>>,
    ca: TestCa,
}

fn start(tls_extra: &str, certs: &[(&str, &[&str], &[&str])]) -> Https {
    start_with("", tls_extra, certs)
}

/// As [`start`], with `modules` (a `[module]` section) in the config too.
fn start_with(modules: &str, tls_extra: &str, certs: &[(&str, &[&str], &[&str])]) -> Https {
    let ca = TestCa::new();
    let home = tempfile::tempdir().unwrap();
    copy_dir(&repo_html(), &home.path().join("html"));
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    std::fs::create_dir_all(home.path().join("certs")).unwrap();
    std::fs::write(home.path().join("certs/ca.pem"), ca.pem()).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let mut config =
        format!("[server]\nport = {port}\nlisten = \"127.0.0.1\"\n[tls]\nport = {tls_port}\n{tls_extra}\n");
    let mut ders = Vec::new();
    for (stem, config_names, cert_names) in certs {
        let (cert, key, der) = ca.leaf(cert_names);
        std::fs::write(home.path().join(format!("certs/{stem}.pem")), cert).unwrap();
        std::fs::write(home.path().join(format!("certs/{stem}.key")), key).unwrap();
        ders.push(der);
        config.push_str(&format!(
            "[[tls.certificate]]\nnames = {config_names:?}\ncert = \"certs/{stem}.pem\"\nkey = \"certs/{stem}.key\"\n"
        ));
    }
    config.push_str(modules);
    std::fs::write(home.path().join("conf/default.toml"), config).unwrap();
    let proxy = Proxy::start_in(home, port);
    Https {
        proxy,
        port: tls_port,
        ders,
        ca,
    }
}

impl Https {
    fn ca_file(&self) -> String {
        self.proxy.home.path().join("certs/ca.pem").display().to_string()
    }

    /// curl against `https://NAME:PORT/path`, NAME resolving to the proxy; returns (exit code, stdout).
    fn curl(&self, name: &str, path: &str, extra: &[&str]) -> (i32, String) {
        let output = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--cacert")
            .arg(self.ca_file())
            .arg("--resolve")
            .arg(format!("{name}:{}:127.0.0.1", self.port))
            .args(extra)
            .arg(format!("https://{name}:{}{path}", self.port))
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// `openssl s_client` with `args`, sending nothing; the handshake's transcript.
    fn s_client(&self, args: &[&str]) -> Output {
        Command::new("openssl")
            .arg("s_client")
            .arg("-connect")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// A rustls client that trusts the test CA.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        client_trusting(CertificateDer::from(self.ca.issuer.der().to_vec()))
    }

    /// One `GET path` on a new TLS connection for `name`: the status and the certificate served.
    fn get(&self, client: &Arc<rustls::ClientConfig>, name: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        self.exchange(client, name, request.as_bytes())
            .map(|(status, _, served)| (status, served))
    }

    /// `request` on a new TLS connection for `name`, read to the close: status, body, certificate served.
    fn exchange(
        &self,
        client: &Arc<rustls::ClientConfig>,
        name: &str,
        request: &[u8],
    ) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
        exchange(client, self.port, name, request)
    }
}

#[test]
fn sni_picks_exact_then_wildcard_then_default_and_a_wrong_name_fails() {
    let https = start(
        "",
        &[
            ("default", &[], &["default.test"]),
            ("shop", &["shop.test"], &["shop.test"]),
            ("wild", &["*.apps.test"], &["*.apps.test"]),
        ],
    );
    let client = https.client();
    let served = |name: &str| https.get(&client, name, "/");
    assert_eq!(served("shop.test").unwrap(), (200, https.ders[1].clone()));
    assert_eq!(served("one.apps.test").unwrap(), (200, https.ders[2].clone()));
    assert_eq!(served("default.test").unwrap(), (200, https.ders[0].clone()));
    if !have("curl", "--version") {
        return;
    }
    assert_eq!(https.curl("shop.test", "/", &[]), (0, "200 2".to_owned()));
    assert_eq!(https.curl("two.apps.test", "/", &[]).0, 0);
    // Another name gets the default certificate, which does not cover it: curl refuses it (60).
    let (code, _) = https.curl("other.test", "/", &[]);
    assert_eq!(code, 60, "a certificate for another name must fail verification");
}

#[test]
fn alpn_offers_h2_and_http1_and_every_request_is_served_over_both() {
    if !have("curl", "--version") {
        return;
    }
    let https = start("", &[("site", &["site.test"], &["site.test"])]);
    assert_eq!(https.curl("site.test", "/", &["--http2"]), (0, "200 2".to_owned()));
    assert_eq!(https.curl("site.test", "/", &["--http1.1"]), (0, "200 1.1".to_owned()));
    assert_eq!(
        https.curl("site.test", "/no-such-module/x", &["--http1.1"]).1,
        "404 1.1"
    );
    // Keep-alive over HTTP/1.1: several requests on one TLS connection, with parking between them.
    let url = format!("https://site.test:{}/", https.port);
    let output = Command::new("curl")
        .args([
            "-sS",
            "--http1.1",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}%{num_connects}\n",
        ])
        .arg("--cacert")
        .arg(https.ca_file())
        .arg("--resolve")
        .arg(format!("site.test:{}:127.0.0.1", https.port))
        .args([&url, &url, &url])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(lines, "2001\n2000\n2000\n", "three requests on one connection");
}

#[test]
fn only_tls_1_2_and_1_3_are_spoken() {
    if !have("openssl", "version") {
        return;
    }
    let https = start("", &[("site", &["site.test"], &["site.test"])]);
    // SECLEVEL=0 lets this openssl offer the old versions at all, so the refusal is the server's.
    for old in ["-tls1", "-tls1_1"] {
        let output = https.s_client(&[old, "-cipher", "DEFAULT:@SECLEVEL=0", "-servername", "site.test"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success() && text.contains("Cipher is (NONE)"),
            "{old} was accepted:\n{text}"
        );
    }
    for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let output = https.s_client(&[version, "-servername", "site.test", "-alpn", "h2"]);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{version} refused:\n{text}");
        assert!(
            text.contains(&format!("Protocol  : {name}")) || text.contains(&format!("New, {name}")),
            "{text}"
        );
        assert!(text.contains("ALPN protocol: h2"), "{text}");
    }
}

#[test]
fn sessions_resume_on_tls_1_2_and_1_3() {
    if !have("openssl", "version") {
        return;
    }
    let https = start("", &[("site", &["site.test"], &["site.test"])]);
    for version in ["-tls1_2", "-tls1_3"] {
        let session = https.proxy.home.path().join(format!("session{version}"));
        let session = session.display().to_string();
        // TLS 1.3 sends its ticket after the handshake: give it a request's time to arrive.
        let first = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{}", https.port), version])
            .args(["-servername", "site.test", "-sess_out", &session, "-ign_eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        first
            .stdin
            .as_ref()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let first = first.wait_with_output().unwrap();
        assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stdout));
        let again = https.s_client(&[version, "-servername", "site.test", "-sess_in", &session]);
        let text = String::from_utf8_lossy(&again.stdout);
        assert!(
            text.contains("Reused, TLSv1."),
            "{version}: session not resumed:\n{text}"
        );
    }
}

/// Rewrites one certificate's files in place, the certificate first, as an editor or a renewal would.
fn replace(https: &Https, stem: &str, cert: &str, key: &str) {
    let certs = https.proxy.home.path().join("certs");
    std::fs::write(certs.join(format!("{stem}.pem")), cert).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(certs.join(format!("{stem}.key")), key).unwrap();
}

/// Waits until new connections for `name` get the certificate `der`.
fn wait_for_certificate(https: &Https, client: &Arc<rustls::ClientConfig>, name: &str, der: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if https
            .get(client, name, "/")
            .map(|(_, served)| served == der)
            .unwrap_or(false)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "the new certificate for {name} was never served; log:\n{}",
        https.proxy.log()
    );
}

#[test]
fn certificates_reload_under_load_without_losing_a_request_and_a_bad_file_keeps_the_last_good_one() {
    let https = Arc::new(start("", &[("site", &["site.test"], &["site.test"])]));
    let client = https.client();
    let (done, served, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (https, client, done, served, failed) = (
                Arc::clone(&https),
                Arc::clone(&client),
                Arc::clone(&done),
                Arc::clone(&served),
                Arc::clone(&failed),
            );
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    match https.get(&client, "site.test", "/") {
                        Ok((200, _)) => served.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("request failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    // A renewal picked up from the files alone.
    let (cert, key, renewed) = https.ca.leaf(&["site.test"]);
    replace(&https, "site", &cert, &key);
    wait_for_certificate(&https, &client, "site.test", &renewed);

    // A broken file: the last good certificate serves on, and the log says why.
    std::fs::write(https.proxy.home.path().join("certs/site.pem"), "not a certificate\n").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(https.get(&client, "site.test", "/").unwrap(), (200, renewed.clone()));
    let log = https.proxy.log();
    assert!(
        log.contains("certificate reload failed") && log.contains("site.pem"),
        "{log}"
    );

    // Fixed again, and re-read on SIGHUP as well.
    let (cert, key, again) = https.ca.leaf(&["site.test"]);
    replace(&https, "site", &cert, &key);
    https.proxy.signal("HUP");
    wait_for_certificate(&https, &client, "site.test", &again);

    done.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "requests lost during reloads");
    assert!(served.load(Ordering::Relaxed) > 20, "the load ran");
}

#[test]
fn plain_http_redirects_to_https_except_acme_challenges_and_https_carries_hsts() {
    let https = start(
        "redirect_http = true\nhsts_max_age = 31536000",
        &[("site", &["site.test"], &["site.test"])],
    );
    let get = |path: &str, host: &str| {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        support::send_raw(https.proxy.addr, raw.as_bytes())
    };
    let moved = get("/docs/page?x=1", "site.test:8080");
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.header("location"),
        Some(format!("https://site.test:{}/docs/page?x=1", https.port).as_str())
    );
    assert_eq!(
        moved.header("strict-transport-security"),
        None,
        "HSTS is for HTTPS responses only"
    );
    let challenge = get("/.well-known/acme-challenge/token", "site.test");
    assert_ne!(challenge.status, 308, "ACME's HTTP-01 path stays on plain HTTP");
    if !have("curl", "--version") {
        return;
    }
    let output = Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert", &https.ca_file()])
        .arg("--resolve")
        .arg(format!("site.test:{}:127.0.0.1", https.port))
        .arg(format!("https://site.test:{}/", https.port))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&output.stdout).to_ascii_lowercase();
    assert!(head.contains("strict-transport-security: max-age=31536000"), "{head}");
}

#[test]
fn check_names_a_bad_certificate_file_and_start_refuses_it() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    std::fs::write(home.path().join("site.pem"), "garbage").unwrap();
    std::fs::write(home.path().join("site.key"), "garbage").unwrap();
    let config = home.path().join("conf/default.toml");
    std::fs::write(
        &config,
        "[tls]\nport = 8443\n[[tls.certificate]]\ncert = \"site.pem\"\nkey = \"site.key\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .arg("--home")
        .arg(home.path())
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[tls]") && stderr.contains("site.pem") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}

#[test]
fn socket_http_and_websocket_modules_are_served_over_https() {
    use support::config::socket_module;
    use support::socket_backend::{envelope, Backend, Style};
    let (socket, http) = (Backend::start(Style::SpaceKeepAlive), Backend::start(Style::Http));
    let ws = websocket_echo();
    let modules = format!(
        "[module]\nmodule_socket = [ {} ]\nmodule_http = [ {{ module = \"web\", proxy_pass = \"http://{}\" }}, {{ module = \"chat\", proxy_pass = \"http://{ws}\" }} ]\n",
        socket_module("todo", &[socket.addr], ""),
        http.addr,
    );
    let https = start_with(&modules, "", &[("site", &["site.test"], &["site.test"])]);
    let client = https.client();
    let body = envelope("list", serde_json::json!({}));
    let mut post = format!(
        "POST /todo/ HTTP/1.1\r\nHost: site.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let (status, _, _) = https.exchange(&client, "site.test", &post).unwrap();
    assert_eq!(status, 200, "module_socket over HTTPS");
    assert_eq!(socket.requests(), 1);
    let (status, body, _) = https
        .exchange(
            &client,
            "site.test",
            b"GET /web/x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    assert_eq!(status, 200, "module_http over HTTPS");
    assert!(String::from_utf8_lossy(&body).contains(&http.addr.port().to_string()));

    // WebSocket: the upgrade over TLS, then messages both ways.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let connector = tokio_rustls::TlsConnector::from(https.client());
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https.port)).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("site.test").unwrap(), tcp)
            .await
            .unwrap();
        let url = format!("wss://site.test:{}/chat/room", https.port);
        let (mut socket, response) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("upgrade over TLS");
        assert_eq!(response.status(), 101);
        socket.send(Message::text("hello")).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), Message::text("hello"));
        socket.close(None).await.unwrap();
    });
}

/// A WebSocket server that echoes every message, on its own thread and runtime.
fn websocket_echo() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            use futures_util::{SinkExt, StreamExt};
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    });
    addr
}

/// `request` on a new TLS connection for `name`, read to the close: status, body, certificate served.
fn exchange(
    client: &Arc<rustls::ClientConfig>,
    port: u16,
    name: &str,
    request: &[u8],
) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(Arc::clone(client), server_name).map_err(|e| e.to_string())?;
    let socket = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(request).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    // A peer that closes without close_notify still gave us the whole close-delimited response.
    if let Err(error) = tls.read_to_end(&mut response) {
        if response.is_empty() {
            return Err(error.to_string());
        }
    }
    let served = tls
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec());
    let status = std::str::from_utf8(&response[..response.len().min(12)])
        .ok()
        .and_then(|line| line.get(9..12)?.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", String::from_utf8_lossy(&response)))?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or_else(Vec::new, |at| response[at + 4..].to_vec());
    Ok((status, body, served.unwrap_or_default()))
}

/// A rustls client that trusts `ca` only.
fn client_trusting(ca: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut config = rustls_client_trusting(ca);
    // A resumed session shows the certificate of the first handshake; each connection gets a full one.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

#[test]
fn cert_local_makes_a_ca_and_a_localhost_certificate_that_the_proxy_serves_trusted() {
    use rustls::pki_types::pem::PemObject;
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    copy_dir(&repo_html(), &home.path().join("html"));
    std::fs::create_dir_all(home.path().join("conf")).unwrap();
    let (port, tls_port) = (free_port(), free_port());
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!("[server]\nport = {port}\nlisten = \"127.0.0.1\"\n"),
    )
    .unwrap();
    let cert_local = |home: &Path| {
        let output = Command::new(env!("CARGO_BIN_EXE_modproxy"))
            .arg("--home")
            .arg(home)
            .args(["cert", "local", "--no-trust", "--port", &tls_port.to_string()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let said = cert_local(home.path());
    assert!(
        said.contains("made a local CA") && said.contains("added [tls]"),
        "{said}"
    );
    let certs = home.path().join("certs");
    for file in ["local-ca.key", "local-ca.pem", "localhost.key", "localhost.pem"] {
        let mode = std::fs::metadata(certs.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let check = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .arg("--home")
        .arg(home.path())
        .arg("check")
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success()
            && summary.contains(&format!("https       127.0.0.1:{tls_port}; certificates: (default)")),
        "{summary}"
    );
    let ca_pem = std::fs::read(certs.join("local-ca.pem")).unwrap();
    let client = client_trusting(CertificateDer::from_pem_slice(&ca_pem).unwrap());
    let proxy = Proxy::start_in(home, port);
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for name in ["localhost", "127.0.0.1"] {
        assert_eq!(exchange(&client, tls_port, name, get).unwrap().0, 200, "{name}");
    }

    // Again: the same CA signs a new certificate, which the running proxy picks up; [tls] is not added twice.
    let first = exchange(&client, tls_port, "localhost", get).unwrap().2;
    let said = cert_local(proxy.home.path());
    assert!(
        said.contains("using the local CA") && said.contains("already has [tls]"),
        "{said}"
    );
    assert_eq!(std::fs::read(certs_of(&proxy).join("local-ca.pem")).unwrap(), ca_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, served) = exchange(&client, tls_port, "localhost", get).unwrap();
        assert_eq!(status, 200);
        if served != first {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed localhost certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn certs_of(proxy: &Proxy) -> std::path::PathBuf {
    proxy.home.path().join("certs")
}

/// testssl.sh against the listener, restricted to what matters (protocols, cipher categories, forward
/// secrecy, vulnerabilities, the server's picks) so that it stays within a minute or two: any finding of
/// severity MEDIUM or above fails.
#[test]
fn testssl_finds_no_vulnerability_or_weak_protocol_or_cipher() {
    if !have("testssl", "--version") {
        return;
    }
    let https = start("hsts_max_age = 31536000", &[("site", &["site.test"], &["site.test"])]);
    let report = https.proxy.home.path().join("testssl.json");
    let started = Instant::now();
    let output = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "--sneaky"])
        .args(["--protocols", "--std", "--fs", "--server-preference", "--vulnerable"])
        .args(["--connect-timeout", "5", "--openssl-timeout", "5"])
        .args([
            "--severity",
            "MEDIUM",
            "--add-ca",
            &https.ca_file(),
            "--ip",
            "127.0.0.1",
        ])
        .arg("--jsonfile")
        .arg(&report)
        .arg(format!("https://site.test:{}/", https.port))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    eprintln!("testssl took {:.0?}", started.elapsed());
    let text = String::from_utf8_lossy(&output.stdout);
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&report).unwrap_or_default())
        .unwrap_or_else(|error| panic!("no JSON report ({error}); testssl said:\n{text}"));
    let serious: Vec<_> = findings
        .iter()
        .filter(|finding| matches!(finding["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .collect();
    assert!(serious.is_empty(), "testssl findings:\n{serious:#?}\n{text}");
    // It did test the server: TLS 1.3 was seen offered.
    assert!(text.contains("TLS 1.3") && text.contains("offered"), "{text}");
}

/// A child process killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request on an open keep-alive TLS connection; the status.
fn keep_alive_get(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>, name: &str) -> u16 {
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\n\r\n");
    tls.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();
    head[9..12].parse().unwrap()
}

/// Debian's pebble, a real ACME server, with pebble-challtestsrv answering its DNS with 127.0.0.1, and
/// modproxy asking it for a certificate for [`PEBBLE_NAME`] with `challenge`.
struct PebbleSite {
    proxy: Proxy,
    /// Trusts pebble's root.
    client: Arc<rustls::ClientConfig>,
    tls_port: u16,
    _dns: Running,
    _pebble: Running,
}

const PEBBLE_NAME: &str = "site.example.test";

/// `None` (the test skipped) without pebble. With `challenge = "tls-alpn-01"`, pebble's HTTP-01 port is
/// one nobody listens on, so only the HTTPS listener can prove the name.
fn pebble_site(challenge: &str) -> Option<PebbleSite> {
    if !have("pebble", "-h") || !have("pebble-challtestsrv", "-h") {
        return None;
    }
    let ca = TestCa::new();
    let home = tempfile::tempdir().unwrap();
    copy_dir(&repo_html(), &home.path().join("html"));
    for dir in ["conf", "pebble"] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
    }
    let (cert, key, _) = ca.leaf(&["localhost", "127.0.0.1"]);
    let pebble_dir = home.path().join("pebble");
    std::fs::write(pebble_dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(pebble_dir.join("cert.pem"), cert).unwrap();
    std::fs::write(pebble_dir.join("key.pem"), key).unwrap();
    let [port, tls_port, acme_port, management, dns, dns_management, nobody] = [0; 7].map(|_| free_port());
    let http_port = if challenge == "tls-alpn-01" { nobody } else { port };
    std::fs::write(
        pebble_dir.join("config.json"),
        serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": pebble_dir.join("cert.pem"),
            "privateKey": pebble_dir.join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }})
        .to_string(),
    )
    .unwrap();
    let dns_server = Running(
        Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args([
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
            ])
            .args(["-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pebble = Running(
        Command::new("pebble")
            .arg("-config")
            .arg(pebble_dir.join("config.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(acme_port, "pebble");
    wait_listening(dns_management, "pebble-challtestsrv");
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!(
            "[server]\nport = {port}\nlisten = \"127.0.0.1\"\n[tls]\nport = {tls_port}\n\
             acme = {{ email = \"dev@example.test\", domains = [\"{PEBBLE_NAME}\"], directory = \"https://127.0.0.1:{acme_port}/dir\", ca_root = \"pebble/ca.pem\", check_every = 1, challenge = \"{challenge}\" }}\n"
        ),
    )
    .unwrap();
    let proxy = Proxy::start_in(home, port);

    // Pebble's root (it makes a new one each start), from its management port.
    let to_pebble = client_trusting(CertificateDer::from(ca.issuer.der().to_vec()));
    let (status, root, _) = exchange(
        &to_pebble,
        management,
        "127.0.0.1",
        b"GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    use rustls::pki_types::pem::PemObject;
    let client = client_trusting(CertificateDer::from_pem_slice(&root).unwrap());
    Some(PebbleSite {
        proxy,
        client,
        tls_port,
        _dns: dns_server,
        _pebble: pebble,
    })
}

impl PebbleSite {
    /// `GET /` for [`PEBBLE_NAME`] over HTTPS, trusting pebble's root.
    fn get(&self) -> Result<(u16, Vec<u8>, Vec<u8>), String> {
        let get = format!("GET / HTTP/1.1\r\nHost: {PEBBLE_NAME}\r\nConnection: close\r\n\r\n");
        exchange(&self.client, self.tls_port, PEBBLE_NAME, get.as_bytes())
    }

    /// The certificate served once pebble has issued one (within 60 s).
    fn first_certificate(&self) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.get() {
                Ok((200, _, served)) => return served,
                other => assert!(
                    Instant::now() < deadline,
                    "no certificate from pebble: {other:?}\n{}",
                    self.proxy.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// modproxy gets a certificate over HTTP-01, a client that trusts pebble's root fetches a page, and a
/// forced renewal (the certificate file removed) swaps the certificate while a connection stays open.
#[test]
fn acme_obtains_a_certificate_from_pebble_and_a_forced_renewal_swaps_it_without_dropping_a_connection() {
    let Some(site) = pebble_site("http-01") else { return };
    let (proxy, client, tls_port, name) = (&site.proxy, &site.client, site.tls_port, PEBBLE_NAME);
    let get = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    let first = site.first_certificate();
    let acme_dir = proxy.home.path().join("certs/acme");
    for file in ["account.json", "site.example.test.pem", "site.example.test.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(acme_dir.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }

    // A connection open across the renewal keeps working.
    let connection = rustls::ClientConnection::new(Arc::clone(client), ServerName::try_from(name).unwrap()).unwrap();
    let mut open = rustls::StreamOwned::new(connection, TcpStream::connect(("127.0.0.1", tls_port)).unwrap());
    assert_eq!(keep_alive_get(&mut open, name), 200);
    std::fs::remove_file(acme_dir.join("site.example.test.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, served) = exchange(client, tls_port, name, get.as_bytes()).unwrap();
        assert_eq!(status, 200, "the old certificate serves until the new one is in");
        if served != first {
            break;
        }
        assert!(Instant::now() < deadline, "never renewed\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        keep_alive_get(&mut open, name),
        200,
        "the open connection survived the renewal"
    );
}

/// TLS-ALPN-01: pebble checks the name on the HTTPS listener (its HTTP-01 port has nobody behind it),
/// and the certificate it then issues serves.
#[test]
fn acme_obtains_a_certificate_from_pebble_over_tls_alpn_01() {
    let Some(site) = pebble_site("tls-alpn-01") else { return };
    site.first_certificate();
    let (status, _, _) = site.get().unwrap();
    assert_eq!(status, 200);
}

/// A request that came in on the TLS listener reaches a `module_http` upstream with
/// `X-Forwarded-Proto: https`, whatever the client claimed.
#[test]
fn forwarded_proto_is_https_over_the_tls_listener() {
    use support::http_upstream::{Behaviour, Upstream};
    let up = Upstream::start("a", Behaviour::Echo);
    let modules = format!(
        "[module]\nmodule_http = [ {{ module = \"web\", proxy_pass = \"{}\" }} ]\n",
        up.url()
    );
    let https = start_with(&modules, "", &[("site", &["site.test"], &["site.test"])]);
    let (status, body, _) = https
        .exchange(
            &https.client(),
            "site.test",
            b"GET /web/x HTTP/1.1\r\nHost: site.test\r\nX-Forwarded-Proto: http\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    assert_eq!(status, 200);
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], serde_json::json!(["https"]));
}
