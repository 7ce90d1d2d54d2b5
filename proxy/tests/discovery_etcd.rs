//! The etcd discovery source against a real etcd (`/usr/bin/etcd`, Debian's etcd-server; `make etcd`
//! installs it) on free ports with a temporary data dir, and real Rust, Python and Node SDK backends
//! registering in it (Python from the repository's .venv, `make python-sdk`; Node from sdk-node's built
//! addon, `make node-sdk`).

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modproxy::discovery::etcd::{default_prefix, members};
use modproxy::discovery::Members;
use modproxy_sdk::etcd::EtcdClient;
use modproxy_sdk::{Registration, Router, Server};
use support::free_port;

/// A single-member etcd on free ports; killed on drop.
struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Etcd {
    fn start() -> Etcd {
        let mut etcd = Etcd {
            client_port: free_port(),
            peer_port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        etcd.run(etcd.dir.path().join("data"));
        etcd
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Starts etcd on this fixture's ports with `data` as its data dir, and waits until it answers.
    fn run(&mut self, data: PathBuf) {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", "default", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &self.url(),
                "--advertise-client-urls",
                &self.url(),
            ])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/bin/etcd is missing; run `make etcd` first");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Rust SDK backend on a free port, registered under `module` with `ttl`; stops when `stop` fires.
fn rust_backend(
    etcd: &Etcd,
    module: &str,
    ttl: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = Server::from_listener(tokio::net::TcpListener::from_std(listener).unwrap())
        .register(Registration::new([etcd.url()], module).ttl(ttl));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(Router::new(), async {
        let _ = stopped.await;
    }));
    (address, stop, serving)
}

fn addresses(members: &Members) -> Vec<String> {
    members.borrow().iter().map(|member| member.address.clone()).collect()
}

/// Waits up to `within` for the published set to satisfy `check`; returns how long it took.
async fn until(members: &mut Members, within: Duration, check: impl Fn(&[String]) -> bool) -> Duration {
    let start = Instant::now();
    let result = tokio::time::timeout(within, async {
        while !check(&addresses(members)) {
            members.changed().await.expect("the watcher stopped");
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "members still {:?} after {within:?}",
        addresses(members)
    );
    start.elapsed()
}

#[tokio::test]
async fn a_registered_backend_appears_and_a_clean_stop_revokes_at_once() {
    let etcd = Etcd::start();
    let mut watched = members(&[etcd.url()], default_prefix("orders")).unwrap();
    let (address, stop, serving) = rust_backend(&etcd, "orders", Duration::from_secs(10));
    until(&mut watched, Duration::from_secs(5), |set| set == [address.clone()]).await;

    // Another module's prefix is not this one's.
    let (other, other_stop, _other_serving) = rust_backend(&etcd, "ordersx", Duration::from_secs(10));
    let mut other_watched = members(&[etcd.url()], default_prefix("ordersx")).unwrap();
    until(&mut other_watched, Duration::from_secs(5), |set| set == [other.clone()]).await;
    assert_eq!(addresses(&watched), std::slice::from_ref(&address));

    stop.send(()).unwrap();
    let gone = until(&mut watched, Duration::from_secs(5), |set| set.is_empty()).await;
    serving.await.unwrap().unwrap();
    assert!(
        gone < Duration::from_secs(3),
        "a clean stop took {gone:?}, as if it waited for the TTL"
    );
    drop(other_stop);
}

#[test]
fn a_backend_that_dies_without_revoking_goes_within_its_ttl() {
    let etcd = Etcd::start();
    let watcher = tokio::runtime::Runtime::new().unwrap();
    let mut watched = watcher.block_on(async { members(&[etcd.url()], default_prefix("dies")).unwrap() });

    // The backend lives on a runtime of its own; dropping that runtime ends its tasks mid-flight, the
    // in-process stand-in for SIGKILL: nothing revokes the lease.
    let backend = tokio::runtime::Runtime::new().unwrap();
    let ttl = Duration::from_secs(3);
    let (address, _stop, _serving) = backend.block_on(async { rust_backend(&etcd, "dies", ttl) });
    watcher.block_on(until(&mut watched, Duration::from_secs(5), |set| {
        set == [address.clone()]
    }));
    backend.shutdown_background();

    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        addresses(&watched),
        std::slice::from_ref(&address),
        "no revoke, so the key outlives the backend for a while"
    );
    // The TTL, plus etcd's own lease-expiry sweep and a little slack for a loaded machine.
    watcher.block_on(until(&mut watched, ttl + Duration::from_secs(3), |set| set.is_empty()));
}

#[tokio::test]
async fn losing_etcd_keeps_the_last_set_and_both_sides_recover_after() {
    let mut etcd = Etcd::start();
    let mut watched = members(&[etcd.url()], default_prefix("restart")).unwrap();
    let (address, stop, serving) = rust_backend(&etcd, "restart", Duration::from_secs(2));
    until(&mut watched, Duration::from_secs(5), |set| set == [address.clone()]).await;

    etcd.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        addresses(&watched),
        std::slice::from_ref(&address),
        "the watcher keeps its last set while etcd is gone"
    );

    // A new etcd with nothing in it, on the same ports: the backend's lease is gone, so only registering
    // again brings it back, and only a watcher that reconnected sees it.
    etcd.run(etcd.dir.path().join("fresh"));
    let mut client = EtcdClient::new(&[etcd.url()]).unwrap();
    client
        .put(&format!("{}extra", default_prefix("restart")), "127.0.0.1:1", 0)
        .await
        .unwrap();
    let both = [address.clone(), "127.0.0.1:1".to_owned()];
    until(&mut watched, Duration::from_secs(15), |set| {
        let mut sorted = both.to_vec();
        sorted.sort();
        set == sorted
    })
    .await;

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    until(&mut watched, Duration::from_secs(3), |set| {
        set == ["127.0.0.1:1".to_owned()]
    })
    .await;
}

/// A backend process; killed (SIGKILL) on drop, so a failing test leaves none behind.
struct Process(Child);

impl Process {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Python SDK backend in a process of its own, registered under `module` with `ttl`.
fn python_backend(etcd: &Etcd, module: &str, ttl: u64) -> (Process, String) {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; run `make python-sdk` first",
        python.display()
    );
    let address = format!("127.0.0.1:{}", free_port());
    let code = "import sys, modproxy_sdk as m\n\
                r = m.Registration([sys.argv[2]], sys.argv[3], ttl=float(sys.argv[4]))\n\
                m.serve(sys.argv[1], register=r)\n";
    let child = Command::new(python)
        .args(["-c", code, &address, &etcd.url(), module, &ttl.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Process(child), address)
}

#[tokio::test]
async fn python_backends_register_and_one_killed_with_sigkill_goes_within_its_ttl() {
    let etcd = Etcd::start();
    let mut watched = members(&[etcd.url()], default_prefix("py")).unwrap();
    let (mut doomed, doomed_address) = python_backend(&etcd, "py", 2);
    let (_stays, stays_address) = python_backend(&etcd, "py", 10);
    let mut both = vec![doomed_address.clone(), stays_address.clone()];
    both.sort();
    until(&mut watched, Duration::from_secs(15), |set| set == both).await;

    doomed.kill();
    assert_eq!(
        addresses(&watched),
        both,
        "SIGKILL revokes nothing: the key waits for its lease"
    );
    until(&mut watched, Duration::from_secs(5), |set| {
        set == std::slice::from_ref(&stays_address)
    })
    .await;
}

/// A Node SDK backend in a process of its own, registered under `module`; its address is what it prints.
fn node_backend(etcd: &Etcd, module: &str) -> (Process, String) {
    let sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-node");
    let script = "const { Backend } = require(process.argv[1]);\n\
                  new Backend().listen('127.0.0.1:0', { register: { etcd: [process.argv[2]], module: process.argv[3] } })\n\
                  .then((b) => console.log(b.port));\n";
    let mut child = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&sdk)
        .args([&etcd.url(), module])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is missing");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(
        !line.trim().is_empty(),
        "the Node backend did not start; run `make node-sdk` first"
    );
    (Process(child), format!("127.0.0.1:{}", line.trim()))
}

#[tokio::test]
async fn backends_in_all_three_languages_appear_in_one_set() {
    let etcd = Etcd::start();
    let mut watched = members(&[etcd.url()], default_prefix("mixed")).unwrap();
    let (rust, stop, serving) = rust_backend(&etcd, "mixed", Duration::from_secs(10));
    let (_python, python) = python_backend(&etcd, "mixed", 10);
    let (_node, node) = node_backend(&etcd, "mixed");
    let mut all = vec![rust, python, node];
    all.sort();
    until(&mut watched, Duration::from_secs(15), |set| set == all).await;
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

/// Two proxies that share nothing but etcd, under load, while the set changes under them.
struct Fleet {
    proxies: [support::Proxy; 2],
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<std::thread::JoinHandle<Vec<u16>>>,
}

impl Fleet {
    fn start(etcd: &Etcd) -> Fleet {
        let config = format!(
            "[discovery]\netcd = [\"{}\"]\n[log]\naccess_format = \"json\"\n[module]\n\
             module_socket = [ {{ module = \"fleet\", discover = \"etcd\", timeout = 3 }} ]\n",
            etcd.url()
        );
        Fleet {
            proxies: [support::Proxy::start("", &config), support::Proxy::start("", &config)],
            stop: Default::default(),
            clients: Vec::new(),
        }
    }

    /// The nodes each proxy's status.json lists for the module.
    fn nodes(&self) -> [Vec<String>; 2] {
        self.proxies.each_ref().map(|proxy| {
            let status = proxy.get("/module_proxy_inner_mod/status.json", &[]).json();
            let module = status["modules"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == "fleet")
                .cloned();
            let mut nodes: Vec<String> = (module.unwrap()["nodes"].as_array().unwrap().iter())
                .map(|node| node["address"].as_str().unwrap().to_owned())
                .collect();
            nodes.sort();
            nodes
        })
    }

    /// Waits until both proxies list exactly `want`.
    fn until_nodes(&self, want: &[&String], within: Duration) {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let deadline = Instant::now() + within;
        loop {
            let seen = self.nodes();
            if seen.iter().all(|nodes| *nodes == want) {
                return;
            }
            assert!(Instant::now() < deadline, "proxies list {seen:?}, not {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Four clients per proxy, each calling `_ping` one request at a time until told to stop.
    fn load(&mut self) {
        for proxy in &self.proxies {
            for _ in 0..4 {
                let (addr, stop) = (proxy.addr, std::sync::Arc::clone(&self.stop));
                self.clients.push(std::thread::spawn(move || {
                    let request = support::http("POST", "/fleet/", &[], br#"{"head":{"method":"_ping"}}"#);
                    let mut statuses = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        statuses.push(support::send_raw(addr, &request).status);
                    }
                    statuses
                }));
            }
        }
    }

    /// Stops the clients; returns how many calls were answered, and every answer that was not 200.
    fn finish(&mut self) -> (usize, Vec<u16>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let statuses: Vec<u16> = self
            .clients
            .drain(..)
            .flat_map(|client| client.join().unwrap())
            .collect();
        let failed = statuses.iter().copied().filter(|status| *status != 200).collect();
        self.stop.store(false, std::sync::atomic::Ordering::Relaxed);
        (statuses.len(), failed)
    }
}

#[test]
fn two_proxies_follow_backends_through_a_kill_and_an_etcd_restart() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let mut etcd = Etcd::start();
    let (rust, stop_rust, _serving) = rust_backend(&etcd, "fleet", Duration::from_secs(10));
    let (mut doomed, python) = python_backend(&etcd, "fleet", 2);
    let (_node_process, node) = node_backend(&etcd, "fleet");
    let mut fleet = Fleet::start(&etcd);
    fleet.until_nodes(&[&rust, &python, &node], Duration::from_secs(15));

    // A backend killed under load: only requests in flight on it may fail, and it leaves both proxies
    // within its 2 s lease.
    fleet.load();
    std::thread::sleep(Duration::from_secs(1));
    doomed.kill();
    fleet.until_nodes(&[&rust, &node], Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let (answered, failed) = fleet.finish();
    assert!(answered > 100, "only {answered} calls were made");
    for proxy in &fleet.proxies {
        for line in proxy.access_json().iter().filter(|line| line["status"] != 200) {
            assert_eq!(
                line["node"], python,
                "a call failed that was not in flight on the killed node: {line}"
            );
        }
    }
    eprintln!(
        "kill: {answered} calls, {} failed, all in flight on the killed node",
        failed.len()
    );

    // etcd stopped and started again under load: both proxies keep their nodes and every call succeeds.
    fleet.load();
    etcd.kill();
    std::thread::sleep(Duration::from_secs(2));
    etcd.run(etcd.dir.path().join("data"));
    std::thread::sleep(Duration::from_secs(2));
    let (answered, failed) = fleet.finish();
    assert_eq!(failed, Vec::<u16>::new(), "of {answered} calls while etcd was away");
    eprintln!("etcd restart: {answered} calls, 0 failed");

    // Both watchers are back: a backend that registers now reaches both.
    let (_late_process, late) = python_backend(&etcd, "fleet", 10);
    fleet.until_nodes(&[&rust, &node, &late], Duration::from_secs(20));
    let _ = stop_rust.send(());
}
