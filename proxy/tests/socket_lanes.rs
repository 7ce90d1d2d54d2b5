//! Pipelined socket lanes under failure: a hung handler, backends that break the sequenced envelope, and
//! a backend that does not pipeline. Against the real binary, real Python, Node and Rust SDK backends and
//! raw scripted backends.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modproxy_sdk::pipeline::{is_negotiation, Sequenced, PIPELINE_ACCEPTED};
use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::envelope;
use support::{frame, http, read_frame, send_raw, Proxy};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A backend process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(addr: SocketAddr, process: &mut Process) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!("backend exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("backend did not listen on {addr}");
}

/// `tests/fixtures/lanes_backend.py` served by the Python SDK from the repository's `.venv`.
fn python_backend() -> (Process, SocketAddr) {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing; run `make python-sdk` first",
        python.display()
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
    let child = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lanes_backend.py"))
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python backend");
    let mut process = Process(child);
    wait_listening(addr, &mut process);
    (process, addr)
}

/// `tests/fixtures/lanes_backend.js` served by the Node SDK that `make node-sdk` builds in `sdk-node/`.
fn node_backend() -> (Process, SocketAddr) {
    let addon = repo().join("sdk-node/native.js");
    assert!(
        addon.exists(),
        "{} is missing; run `make node-sdk` first",
        addon.display()
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", support::free_port()).parse().unwrap();
    let child = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lanes_backend.js"))
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Node backend");
    let mut process = Process(child);
    wait_listening(addr, &mut process);
    (process, addr)
}

/// A Rust SDK backend with the same two methods, in this process.
fn rust_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let router = modproxy_sdk::Router::new()
                .method("hang", |data: serde_json::Value| async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, modproxy_sdk::MethodError>(data)
                })
                .method("echo", |data: serde_json::Value| async move {
                    Ok::<_, modproxy_sdk::MethodError>(data)
                });
            let _ = modproxy_sdk::Server::from_listener(listener).serve(router).await;
        });
    });
    addr
}

/// One hung call, then 40 fast ones in parallel: every fast one is answered, the hung one gets 504, and
/// the node is not masked.
fn hung_handler_does_not_hold_up_the_fast_calls(backend: SocketAddr) {
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s", &[backend], ", pipeline = 16, timeout = 3")]),
    );
    let addr = proxy.addr;
    let hung = std::thread::spawn(move || send_raw(addr, &http("POST", "/s/", &[], &envelope("hang", json!(0)))));
    std::thread::sleep(Duration::from_millis(300));
    let fast: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let response = send_raw(addr, &http("POST", "/s/", &[], &envelope("echo", json!({ "i": i }))));
                (response.status, response.text())
            })
        })
        .collect();
    let failed: Vec<_> = fast
        .into_iter()
        .enumerate()
        .map(|(i, t)| (i, t.join().unwrap()))
        .filter(|(i, (status, body))| *status != 200 || *body != format!(r#"{{"i":{i}}}"#))
        .collect();
    eprintln!("fast calls that failed beside a hung one: {}", failed.len());
    assert!(failed.is_empty(), "fast calls failed: {failed:?}");
    let hung = hung.join().unwrap();
    assert_eq!(hung.status, 504, "{}", hung.text());
    // Other calls answered while it hung: the node is not masked.
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let up = format!(r#"modproxy_node_up{{module="s",node="{backend}"}} 1"#);
    assert!(metrics.contains(&up), "{up} in\n{metrics}");
    let after = proxy.post("/s/", &[], &envelope("echo", json!("after")));
    assert_eq!((after.status, after.text()), (200, r#""after""#.to_owned()));
}

#[test]
fn a_hung_python_handler_fails_no_fast_call() {
    let (_process, addr) = python_backend();
    hung_handler_does_not_hold_up_the_fast_calls(addr);
}

#[test]
fn a_hung_node_handler_fails_no_fast_call() {
    let (_process, addr) = node_backend();
    hung_handler_does_not_hold_up_the_fast_calls(addr);
}

#[test]
fn a_hung_rust_handler_fails_no_fast_call() {
    hung_handler_does_not_hold_up_the_fast_calls(rust_backend());
}

/// The shared connections open to `backend`, as the proxy's metrics count them.
fn open_lanes(proxy: &Proxy, backend: SocketAddr) -> f64 {
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let name = format!(r#"modproxy_pooled_connections{{module="s",node="{backend}"}} "#);
    let line = metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name).map(str::to_owned));
    line.and_then(|value| value.trim().parse::<f64>().ok()).unwrap_or(0.0)
}

/// A call made one second after a hung one: on a new shared connection when the hung one's is overdue by
/// `lane_overdue_share` of `timeout = 3` (0.25: after 0.75 s), on the same one when it is not (1: 3 s).
fn lanes_after_a_hung_call(share: f64) -> f64 {
    let backend = rust_backend();
    let extra = format!(", pipeline = 16, timeout = 3, lane_overdue_share = {share}");
    let proxy = Proxy::start("", &config(&[socket_module("s", &[backend], &extra)]));
    let addr = proxy.addr;
    let _hung = std::thread::spawn(move || send_raw(addr, &http("POST", "/s/", &[], &envelope("hang", json!(0)))));
    std::thread::sleep(Duration::from_secs(1));
    let fast = proxy.post("/s/", &[], &envelope("echo", json!(1)));
    assert_eq!((fast.status, fast.text()), (200, "1".to_owned()));
    open_lanes(&proxy, backend)
}

#[test]
fn a_lane_whose_oldest_call_waited_lane_overdue_share_of_timeout_takes_no_new_calls() {
    assert_eq!(
        lanes_after_a_hung_call(0.25),
        2.0,
        "a second lane opened beside the overdue one"
    );
    assert_eq!(lanes_after_a_hung_call(1.0), 1.0, "the lane was not overdue yet");
}

#[test]
fn a_shared_connection_idle_for_lane_idle_timeout_is_closed() {
    let backend = rust_backend();
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s", &[backend], ", pipeline = 4, lane_idle_timeout = 1")]),
    );
    let open = || open_lanes(&proxy, backend);
    let echoed = proxy.post("/s/", &[], &envelope("echo", json!(1)));
    assert_eq!((echoed.status, echoed.text()), (200, "1".to_owned()));
    assert_eq!(open(), 1.0, "the lane is open after its request");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(open(), 1.0, "still open before the idle timeout");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(open(), 0.0, "closed after a second idle");
}

/// How a raw backend misbehaves after accepting `_pipeline` (or does not accept it).
#[derive(Clone, Copy)]
enum Script {
    /// Answers each request, then sends its reply once more.
    ExtraFrame,
    /// Waits for two requests, answers the second first.
    Swapped,
    /// Answers with a number never asked.
    UnknownSeq,
    /// Does not pipeline: answers `_pipeline` with a `method_not_found` error, echoes bare in order.
    Plain,
}

/// A raw scripted backend. `overlapped` is set when a plain connection ever held a second request before
/// the first was answered.
struct Raw {
    addr: SocketAddr,
    overlapped: Arc<AtomicBool>,
    negotiations: Arc<AtomicUsize>,
}

fn raw_backend(script: Script) -> Raw {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let overlapped = Arc::new(AtomicBool::new(false));
    let negotiations = Arc::new(AtomicUsize::new(0));
    let (o, n) = (overlapped.clone(), negotiations.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (o, n) = (o.clone(), n.clone());
            std::thread::spawn(move || serve_raw(stream, script, &o, &n));
        }
    });
    Raw {
        addr,
        overlapped,
        negotiations,
    }
}

/// The reply to a request: its `data`, as the bytes the client must receive.
fn reply_to(request: &[u8]) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(request).unwrap();
    serde_json::to_vec(&json!({ "mine": request["data"] })).unwrap()
}

fn sealed(seq: u64, reply: &[u8]) -> Vec<u8> {
    frame(&Sequenced { seq, reply }.to_vec())
}

fn serve_raw(mut stream: TcpStream, script: Script, overlapped: &AtomicBool, negotiations: &AtomicUsize) {
    let Some(first) = read_frame(&mut stream) else { return };
    let mut pending = if is_negotiation(&first) {
        negotiations.fetch_add(1, Ordering::SeqCst);
        if let Script::Plain = script {
            let error = br#"{"error":{"code":"method_not_found","message":"no method named '_pipeline'"}}"#;
            let _ = stream.write_all(&frame(error));
            None
        } else {
            let _ = stream.write_all(&frame(PIPELINE_ACCEPTED));
            None
        }
    } else {
        Some(first)
    };
    let mut seq = 0;
    loop {
        let Some(request) = pending.take().or_else(|| read_frame(&mut stream)) else {
            return;
        };
        seq += 1;
        let reply = reply_to(&request);
        let written = match script {
            Script::Plain => {
                // Another request already waiting means the proxy pipelined on a plain connection.
                std::thread::sleep(Duration::from_millis(20));
                stream.set_nonblocking(true).unwrap();
                let mut probe = [0u8; 1];
                if stream.peek(&mut probe).is_ok_and(|n| n > 0) {
                    overlapped.store(true, Ordering::SeqCst);
                }
                stream.set_nonblocking(false).unwrap();
                stream.write_all(&frame(&reply))
            }
            Script::ExtraFrame => stream.write_all(&[sealed(seq, &reply), sealed(seq, &reply)].concat()),
            Script::UnknownSeq => stream.write_all(&sealed(seq + 1000, &reply)),
            Script::Swapped => {
                stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let second = read_frame(&mut stream);
                stream.set_read_timeout(None).unwrap();
                match second {
                    Some(second) => {
                        seq += 1;
                        let swapped = [sealed(seq, &reply_to(&second)), sealed(seq - 1, &reply)].concat();
                        stream.write_all(&swapped)
                    }
                    None => stream.write_all(&sealed(seq, &reply)),
                }
            }
        };
        if written.is_err() {
            return;
        }
    }
}

fn post(addr: SocketAddr, i: usize) -> (u16, String) {
    let response = send_raw(addr, &http("POST", "/s/", &[], &envelope("x", json!(i))));
    (response.status, response.text())
}

fn mine(i: usize) -> String {
    format!(r#"{{"mine":{i}}}"#)
}

#[test]
fn replies_answered_out_of_order_each_reach_their_own_client() {
    let backend = raw_backend(Script::Swapped);
    let proxy = Proxy::start("", &config(&[socket_module("s", &[backend.addr], ", pipeline = 8")]));
    let addr = proxy.addr;
    for round in 0..5 {
        let calls: Vec<_> = (0..2)
            .map(|k| {
                let i = round * 2 + k;
                std::thread::spawn(move || (i, post(addr, i)))
            })
            .collect();
        for call in calls {
            let (i, got) = call.join().unwrap();
            assert_eq!(got, (200, mine(i)), "request {i}");
        }
    }
    assert!(!proxy.log().contains("violat"), "{}", proxy.log());
}

#[test]
fn an_extra_reply_frame_closes_the_lane_and_never_reaches_another_client() {
    let backend = raw_backend(Script::ExtraFrame);
    // A second, well-behaved node: a reply from it does not take the first one back (as it would when
    // every node is masked and the masked one answers).
    let good = raw_backend(Script::Plain);
    let proxy = Proxy::start(
        "",
        &config(&[socket_module(
            "s",
            &[backend.addr, good.addr],
            ", pipeline = 8, fail_timeout = 60",
        )]),
    );
    for i in 0..20 {
        let (status, body) = post(proxy.addr, i);
        // Each request gets its own reply or a 502, never another's.
        assert!(
            (status == 200 && body == mine(i)) || status == 502,
            "request {i}: {status} {body}"
        );
    }
    assert!(backend.negotiations.load(Ordering::SeqCst) >= 1, "the node was tried");
    let log = proxy.log();
    assert!(log.contains("pipelining violation"), "{log}");
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let down = format!(r#"modproxy_node_up{{module="s",node="{}"}} 0"#, backend.addr);
    assert!(metrics.contains(&down), "the node is masked: {down} in\n{metrics}");
}

#[test]
fn a_reply_to_a_request_never_sent_fails_the_waiting_ones_with_502_and_masks_the_node() {
    let backend = raw_backend(Script::UnknownSeq);
    let proxy = Proxy::start(
        "",
        &config(&[socket_module("s", &[backend.addr], ", pipeline = 8, fail_timeout = 60")]),
    );
    let addr = proxy.addr;
    let calls: Vec<_> = (0..4).map(|i| std::thread::spawn(move || post(addr, i))).collect();
    for call in calls {
        let (status, body) = call.join().unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(!body.contains("mine"), "{body}");
    }
    let log = proxy.log();
    assert!(log.contains("pipelining violation"), "{log}");
    let metrics = proxy.get("/module_proxy_inner_mod/metrics", &[]).text();
    let down = format!(r#"modproxy_node_up{{module="s",node="{}"}} 0"#, backend.addr);
    assert!(metrics.contains(&down), "{down} in\n{metrics}");
}

#[test]
fn a_backend_that_refuses_pipelining_gets_one_request_at_a_time_and_exact_replies() {
    let backend = raw_backend(Script::Plain);
    let proxy = Proxy::start("", &config(&[socket_module("s", &[backend.addr], ", pipeline = 16")]));
    let addr = proxy.addr;
    for round in 0..3 {
        let calls: Vec<_> = (0..20)
            .map(|k| {
                let i = round * 20 + k;
                std::thread::spawn(move || (i, post(addr, i)))
            })
            .collect();
        for call in calls {
            let (i, got) = call.join().unwrap();
            assert_eq!(got, (200, mine(i)), "request {i}");
        }
    }
    assert!(
        !backend.overlapped.load(Ordering::SeqCst),
        "a connection carried a second request before the first was answered"
    );
    // Remembered per node: not every new connection asks again.
    let asked = backend.negotiations.load(Ordering::SeqCst);
    assert!(asked <= 2, "negotiated {asked} times");
}
