//! Test harness: the real `modproxy` binary on a free port with a temporary HOME, and raw HTTP over TCP.
#![allow(dead_code)]

pub mod config;
pub mod contract_backend;
pub mod http_upstream;
pub mod socket_backend;
pub mod test_ca;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Reads one frame of the socket protocol (a space- or zero-padded 12-byte length line, then the payload);
/// `None` at the end of the stream or on a malformed length line.
pub fn read_frame(reader: &mut impl Read) -> Option<Vec<u8>> {
    let mut line = [0u8; 12];
    reader.read_exact(&mut line).ok()?;
    let len: usize = std::str::from_utf8(&line[..10]).ok()?.trim().parse().ok()?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).ok()?;
    Some(payload)
}

/// `payload` as a frame with a space-padded length line.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    [format!("{:>10}\r\n", payload.len()).as_bytes(), payload].concat()
}

/// A running `modproxy` with its temporary HOME; killed on drop.
pub struct Proxy {
    pub addr: SocketAddr,
    pub home: tempfile::TempDir,
    child: Child,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    // Below Linux's ephemeral range (32768 and up by default), so that the many client sockets other
    // tests open at the same time cannot take the port before the test binds it again.
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    (0u64..)
        .map(|attempt| 10_000 + (state.hash_one(attempt) % 22_000) as u16)
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap()
}

/// The repository's `html/` directory (error pages and the welcome page).
pub fn repo_html() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../html")
}

/// Copies the directory tree `from` to `to` (the built-in pages into a test's HOME, for instance).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

impl Proxy {
    /// Starts the proxy. `modules_and_more` is appended after a `[server]` section that sets the port and
    /// `listen = "127.0.0.1"`; `server_extra` lines go inside `[server]`.
    pub fn start(server_extra: &str, rest: &str) -> Proxy {
        let home = tempfile::tempdir().unwrap();
        copy_dir(&repo_html(), &home.path().join("html"));
        let port = free_port();
        let config = format!("[server]\nport = {port}\nlisten = \"127.0.0.1\"\n{server_extra}\n{rest}\n");
        std::fs::create_dir_all(home.path().join("conf")).unwrap();
        std::fs::write(home.path().join("conf/default.toml"), config).unwrap();
        Proxy::start_in(home, port)
    }

    /// Starts the proxy on a HOME that already holds `conf/default.toml` listening on `port`.
    pub fn start_in(home: tempfile::TempDir, port: u16) -> Proxy {
        let child = Command::new(env!("CARGO_BIN_EXE_modproxy"))
            .arg("--home")
            .arg(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start modproxy");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let proxy = Proxy { addr, home, child };
        proxy.wait_ready();
        proxy
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "modproxy did not start listening on {}; log:\n{}",
            self.addr,
            self.log()
        );
    }

    /// What the proxy wrote to its access log, `HOME/logs/access.log` by default, read after giving its
    /// background writer time to flush.
    pub fn access_log(&self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(self.home.path().join("logs/access.log")).unwrap_or_default()
    }

    /// The access log's lines, written with `[log] access_format = "json"`, each parsed.
    pub fn access_json(&self) -> Vec<serde_json::Value> {
        (self.access_log().lines())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }

    /// What the proxy wrote to `HOME/logs/modproxy.log`, read after giving its background writer time
    /// to flush.
    pub fn log(&self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::read_to_string(self.home.path().join("logs/modproxy.log")).unwrap_or_default()
    }

    /// The config file the proxy was started with.
    pub fn config_path(&self) -> PathBuf {
        self.home.path().join("conf/default.toml")
    }

    /// Sends a signal (by name, e.g. "HUP") to the proxy.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }

    /// A raw request; `request` is everything after the request line's target, e.g. built by [`http`].
    pub fn send(&self, raw: &[u8]) -> Response {
        send_raw(self.addr, raw)
    }

    /// `GET path` with extra header lines.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send(&http("GET", path, headers, b""))
    }

    /// `POST path` with a body.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send(&http("POST", path, headers, body))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one HTTP/1.1 request, as a raw test server sees it: its request line and its Content-Length
/// body; `None` once the connection ends.
pub fn read_request(reader: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut request_line = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if request_line.is_empty() {
            request_line = line;
        } else if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((request_line, body))
}

/// Builds an HTTP/1.1 request that closes the connection after the response.
pub fn http(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Writes `raw` to a new connection and reads the whole response (the request asks to close).
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_response(&bytes).unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(&bytes)))
}

/// Parses one response (Content-Length, chunked, or read-to-close bodies).
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &bytes[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Some(Response { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        body.extend_from_slice(&rest[start..start + size]);
        rest = &rest[start + size + 2..];
    }
    body
}

// ---- additions for the static-site and HTTP-module tests ----------------------------------------------

impl Proxy {
    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The proxy's resident memory now and its peak so far (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends `raw` and reads the response without keeping its body: returns the status, the headers and
    /// how many body bytes arrived. `progress` is called with the count every 64 MiB.
    pub fn download(&self, raw: &[u8], mut progress: impl FnMut(u64)) -> (u16, Vec<(String, String)>, u64) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        stream.write_all(raw).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut head = Vec::new();
        let (status, headers, mut count) = loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the response head");
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let parsed = parse_response(&head[..end + 4]).unwrap();
                break (parsed.status, parsed.headers, (head.len() - end - 4) as u64);
            }
        };
        let mut next_report = 64 << 20;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            count += n as u64;
            if count >= next_report {
                progress(count);
                next_report += 64 << 20;
            }
        }
        (status, headers, count)
    }
}
