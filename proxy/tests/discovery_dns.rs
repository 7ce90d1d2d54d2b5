//! Nodes found through DNS, with a real dnsmasq on a high port whose records the tests rewrite while the
//! proxy runs, and real backends on 127.0.0.x addresses.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::http_upstream::{Behaviour, Upstream};
use support::socket_backend::{envelope, Backend, Style};
use support::Proxy;

/// A dnsmasq answering only from a hosts directory and a config file, both in its own directory.
struct Dnsmasq {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (lines of `ip name`) and `conf` (dnsmasq options, e.g. `srv-host=`).
    fn start(hosts: &str, conf: &str) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hosts")).unwrap();
        let mut dns = Dnsmasq {
            port: support::free_port(),
            dir,
            child: None,
        };
        dns.set_hosts(hosts);
        std::fs::write(dns.dir.path().join("dnsmasq.conf"), conf).unwrap();
        dns.run();
        dns
    }

    fn run(&mut self) {
        let dir = self.dir.path();
        let child = Command::new(dnsmasq())
            .args([
                "--keep-in-foreground",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--no-resolv",
                "--no-hosts",
                "--pid-file",
                "--user=",
                // TTL 0: the proxy's dns_min_ttl decides how soon it asks again.
                "--local-ttl=0",
            ])
            .arg(format!("--port={}", self.port))
            .arg(format!("--hostsdir={}", dir.join("hosts").display()))
            .arg(format!("--conf-file={}", dir.join("dnsmasq.conf").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq (make test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "dnsmasq did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether dnsmasq answers a query (any answer: only that it listens matters).
    fn answers(&self) -> bool {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        // Id 1, recursion desired, one question: probe.invalid IN A.
        let mut query = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        query.extend_from_slice(b"\x05probe\x07invalid\x00\x00\x01\x00\x01");
        socket.send_to(&query, ("127.0.0.1", self.port)).unwrap();
        socket.recv(&mut [0; 512]).is_ok()
    }

    /// Replaces the host records and has dnsmasq read them now.
    fn set_hosts(&self, hosts: &str) {
        let file = self.dir.path().join("hosts/records");
        let next = self.dir.path().join("records.next");
        std::fs::write(&next, hosts).unwrap();
        std::fs::rename(&next, &file).unwrap();
        if let Some(child) = &self.child {
            // Clears the cache and rereads the hosts directory, whatever inotify saw.
            Command::new("kill")
                .args(["-HUP", &child.id().to_string()])
                .status()
                .unwrap();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn discovery(&self) -> String {
        format!(
            "[discovery]\nnameservers = [\"127.0.0.1:{}\"]\ndns_min_ttl = 0.2\ndns_max_ttl = 1\n",
            self.port
        )
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn dnsmasq() -> PathBuf {
    ["/usr/sbin/dnsmasq", "/sbin/dnsmasq"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| Path::new("dnsmasq").to_owned())
}

/// A port free on every 127.0.0.x address the test uses.
fn shared_port(hosts: &[&str]) -> (u16, Vec<TcpListener>) {
    loop {
        let port = support::free_port();
        let bound: Result<Vec<_>, _> = hosts.iter().map(|h| TcpListener::bind((*h, port))).collect();
        if let Ok(listeners) = bound {
            return (port, listeners);
        }
    }
}

fn call(proxy: &Proxy) -> u16 {
    proxy.post("/todo/", &[], &envelope("x", json!(1))).status
}

/// Sends requests until `done` holds, or fails after 10 s.
fn until(proxy: &Proxy, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        call(proxy);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the proxy's first answer from DNS (until then the module answers 502 "no nodes yet").
fn wait_resolved(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log().contains("resolved to a new set of nodes") {
        assert!(Instant::now() < deadline, "no DNS answer within 10 s:\n{}", proxy.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn socket_module(node: &str, extra: &str) -> String {
    format!("[module]\nmodule_socket = [ {{ module = \"todo\", forward_pass = \"{node}\"{extra} }} ]\n")
}

#[test]
fn the_proxy_follows_a_host_name_as_its_records_change() {
    let (port, mut listeners) = shared_port(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let slow = Backend::start_on(listeners.remove(0), Style::Slow(Duration::from_millis(1500)));
    let fast = Backend::start_on(listeners.remove(0), Style::SpaceKeepAlive);
    let joiner = Backend::start_on(listeners.remove(0), Style::SpaceKeepAlive);
    let dns = Dnsmasq::start("127.0.0.2 todo.internal\n", "");
    let proxy = Proxy::start(
        "",
        &format!(
            "{}{}",
            dns.discovery(),
            socket_module(&format!("todo.internal:{port}"), "")
        ),
    );

    wait_resolved(&proxy);
    // A request in flight on the node that is about to leave.
    let addr = proxy.addr;
    let in_flight = std::thread::spawn(move || {
        support::send_raw(addr, &support::http("POST", "/todo/", &[], &envelope("x", json!(1))))
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while slow.requests() == 0 {
        assert!(Instant::now() < deadline, "the first node got no request");
        std::thread::sleep(Duration::from_millis(10));
    }
    dns.set_hosts("127.0.0.3 todo.internal\n");
    until(&proxy, "the new node gets traffic", || fast.requests() > 0);
    assert_eq!(
        in_flight.join().unwrap().status,
        200,
        "the request in flight on the node that left finished"
    );
    let left_with = slow.requests();
    for _ in 0..20 {
        assert_eq!(call(&proxy), 200);
    }
    assert_eq!(slow.requests(), left_with, "a node that left gets no new request");

    dns.set_hosts("127.0.0.3 todo.internal\n127.0.0.4 todo.internal\n");
    until(&proxy, "a node that joins gets traffic", || joiner.requests() > 0);
    assert_eq!(slow.requests(), left_with);
    assert!(proxy.log().contains("todo.internal"), "{}", proxy.log());
}

/// Answers every DNS query on UDP `port` with SERVFAIL for `how_long`: a nameserver that is up but broken.
fn servfail_on(port: u16, how_long: Duration) -> std::thread::JoinHandle<()> {
    let socket = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + how_long;
        let mut packet = [0u8; 512];
        while Instant::now() < end {
            let Ok((len, from)) = socket.recv_from(&mut packet) else {
                continue;
            };
            if len < 12 {
                continue;
            }
            // The query back, as a response (QR, RD and RA set) with RCODE 2 and no answers.
            let mut reply = packet[..len].to_vec();
            reply[2] = 0x81 | (packet[2] & 0x01);
            reply[3] = 0x82;
            let _ = socket.send_to(&reply, from);
        }
    })
}

#[test]
fn a_dns_failure_keeps_the_last_nodes_and_no_request_fails() {
    let (port, mut listeners) = shared_port(&["127.0.0.5", "127.0.0.6"]);
    let a = Backend::start_on(listeners.remove(0), Style::SpaceKeepAlive);
    let b = Backend::start_on(listeners.remove(0), Style::SpaceKeepAlive);
    let mut dns = Dnsmasq::start("127.0.0.5 todo.internal\n127.0.0.6 todo.internal\n", "");
    let proxy = Proxy::start(
        "",
        &format!(
            "[log]\nlevel = \"debug\"\n{}{}",
            dns.discovery(),
            socket_module(&format!("todo.internal:{port}"), "")
        ),
    );
    until(&proxy, "both nodes get traffic", || {
        a.requests() > 0 && b.requests() > 0
    });

    let mut failed = 0;
    let mut calls = |proxy: &Proxy, for_how_long: Duration| {
        let end = Instant::now() + for_how_long;
        while Instant::now() < end {
            failed += usize::from(call(proxy) != 200);
        }
    };
    // The name disappears (NXDOMAIN); then the nameserver's port answers SERVFAIL to everything; then
    // nothing answers: several refreshes each.
    dns.set_hosts("");
    calls(&proxy, Duration::from_secs(2));
    dns.stop();
    let servfail = servfail_on(dns.port, Duration::from_secs(3));
    calls(&proxy, Duration::from_secs(2));
    servfail.join().unwrap();
    let (a_before, b_before) = (a.requests(), b.requests());
    calls(&proxy, Duration::from_secs(6));
    assert_eq!(failed, 0, "requests failed while DNS did");
    assert!(
        a.requests() > a_before && b.requests() > b_before,
        "both nodes are kept"
    );
    let log = proxy.log();
    assert_eq!(
        // hickory words NXDOMAIN and SERVFAIL alike ("no records found"): two changes, then the timeout.
        log.matches("DNS lookup failed; keeping the last nodes").count(),
        2,
        "logged once per change of what is wrong:\n{log}"
    );
}

#[test]
fn srv_targets_ports_and_weights_become_the_nodes() {
    let heavy = Backend::start_on(TcpListener::bind("127.0.0.7:0").unwrap(), Style::SpaceKeepAlive);
    let light = Backend::start_on(TcpListener::bind("127.0.0.8:0").unwrap(), Style::SpaceKeepAlive);
    let conf = format!(
        "host-record=heavy.internal,127.0.0.7\nhost-record=light.internal,127.0.0.8\n\
         srv-host=_todo._tcp.internal,heavy.internal,{},0,3\nsrv-host=_todo._tcp.internal,light.internal,{},0,1\n",
        heavy.addr.port(),
        light.addr.port()
    );
    let dns = Dnsmasq::start("", &conf);
    let proxy = Proxy::start(
        "",
        &format!(
            "{}{}",
            dns.discovery(),
            socket_module("srv:_todo._tcp.internal", ", balance = \"round_robin\"")
        ),
    );
    // The module answers 502 until the name's first answer; then SRV weights 3:1 over whole cycles.
    until(&proxy, "the SRV name resolves", || {
        heavy.requests() + light.requests() > 0
    });
    let before = (heavy.requests(), light.requests());
    for _ in 0..80 {
        assert_eq!(call(&proxy), 200, "{}", proxy.log());
    }
    assert_eq!((heavy.requests() - before.0, light.requests() - before.1), (60, 20));
    let check = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .arg("--config")
        .arg(proxy.config_path())
        .arg("check")
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stdout);
    let heavy_line = format!(
        "srv:_todo._tcp.internal -> {} weight=3, {} weight=1",
        heavy.addr, light.addr
    );
    assert!(
        check.contains(&heavy_line),
        "modproxy check says what the name resolves to:\n{check}"
    );
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    assert!(metrics.contains("module_nodes{module=\"todo\"} 2"), "{metrics}");
    assert!(
        metrics.contains("dns_lookups_total{name=\"srv:_todo._tcp.internal\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dns_failures_total{name=\"srv:_todo._tcp.internal\"} 0"),
        "{metrics}"
    );
}

#[test]
fn an_http_node_named_in_dns_is_sent_its_name_as_host_and_a_module_waits_for_its_first_answer() {
    let upstream = Upstream::start_on(TcpListener::bind("127.0.0.9:0").unwrap(), "api", Behaviour::Echo);
    let port = upstream.addr.port();
    let dns = Dnsmasq::start("", "");
    let config = format!(
        "{}[module]\nmodule_http = [ {{ module = \"api\", proxy_pass = \"http://api.internal:{port}\" }} ]\n",
        dns.discovery()
    );
    let proxy = Proxy::start("", &config);
    let early = proxy.get("/api/x", &[("accept", "application/json")]);
    assert_eq!(early.status, 502);
    assert!(
        proxy.log().contains("has no nodes yet") && proxy.log().contains("no nodes from this name yet"),
        "{}",
        proxy.log()
    );

    dns.set_hosts("127.0.0.9 api.internal\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let response = proxy.get("/api/x", &[]);
        if response.status == 200 {
            break response.json();
        }
        assert!(Instant::now() < deadline, "the first answer was not used");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answer["headers"]["host"], json!([format!("api.internal:{port}")]));
}
