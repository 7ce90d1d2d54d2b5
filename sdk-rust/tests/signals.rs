//! `Server::serve` in a real process under real signals: Ctrl-C, then a supervisor's SIGTERM while the
//! shutdown waits for a slow request, ends the process at once, cleanly and silently (issue 22).
//!
//! The backend process is this test binary itself, run again with [`CHILD`] set so that only
//! [`serving_child`] serves.
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modproxy_sdk::{MethodError, Request, Router, Server};
use serde_json::json;

/// Set in the child's environment: serve instead of testing.
const CHILD: &str = "MODPROXY_SDK_SIGNAL_CHILD";

/// How long the in-flight request sleeps: far longer than a stop at once may take.
const NAP_MS: u64 = 8_000;

#[test]
fn serving_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Server::bind("127.0.0.1:0").await.unwrap();
        println!("\nPORT={}", server.local_addr().unwrap().port());
        let router = Router::new().method("nap", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, MethodError>(ms)
        });
        server.serve(router).await.unwrap();
    });
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {name}");
}

#[test]
fn sigint_then_sigterm_during_the_shutdown_stops_at_once_and_silently() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "serving_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "the child exited before listening"
        );
        if let Some(port) = line.trim().strip_prefix("PORT=") {
            break port.parse::<u16>().unwrap();
        }
    };
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut wire = Vec::new();
    modproxy_sdk::frame::write_frame(&mut wire, &Request::new("nap", json!(NAP_MS)).to_vec()).unwrap();
    conn.write_all(&wire).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, "-TERM");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the child did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{status}; stderr: {stderr}");
    assert_eq!(stderr, "", "nothing on stderr");
    assert!(
        took < Duration::from_millis(NAP_MS / 2),
        "the second signal stopped at once, not after the request in flight ({took:?})"
    );
}
