//! `modproxy conform` through the real binary: it passes on the example backends in every language, and on
//! a fixture backend that follows the protocol; and each deliberately broken variant of that fixture makes
//! it fail with a line naming the check that caught the fault.
//!
//! The fixture is this test binary run again with [`FIXTURE`] set, so that only [`fixture_backend`] serves.
//! The Python, Node and Go examples need the repository's `.venv/`, the built Node addon and Go; they are
//! ignored by a plain `cargo test` and run by `make test-conform`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use modproxy_sdk::frame::{length_line, read_frame, DEFAULT_MAX_FRAME};
use serde_json::Value;

/// Set in the fixture's environment to the fault it should have ("none" for a correct backend).
const FIXTURE: &str = "MODPROXY_CONFORM_FIXTURE";

/// The ways the fixture can break the protocol, one per fault conform must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Reads a zero-padded number as octal, like C's `strtol(line, NULL, 0)`.
    OctalZeroPadding,
    /// Expects the whole length line from one read.
    LineInOneRead,
    /// Answers the requests that arrived together last first.
    OutOfOrder,
    /// Writes `{"error":"code","message":…}`.
    FlatErrorShape,
    /// Exits on a payload that is not JSON.
    CrashesOnBadJson,
    /// Has no maximum: waits for all 9999999999 bytes.
    NoMaximum,
    /// Does not know `_ping`.
    NoPing,
    /// Drops the requests in hand when the peer half-closes.
    DropsOnHalfClose,
    /// Exits at once on SIGTERM, dropping the request in hand.
    ExitsOnSigterm,
    /// Answers `_describe` with methods out of name order and without schemas.
    BadDescribe,
}

impl Fault {
    fn from_name(name: &str) -> Fault {
        match name {
            "none" => Fault::None,
            "octal_zero_padding" => Fault::OctalZeroPadding,
            "line_in_one_read" => Fault::LineInOneRead,
            "out_of_order" => Fault::OutOfOrder,
            "flat_error_shape" => Fault::FlatErrorShape,
            "crashes_on_bad_json" => Fault::CrashesOnBadJson,
            "no_maximum" => Fault::NoMaximum,
            "no_ping" => Fault::NoPing,
            "drops_on_half_close" => Fault::DropsOnHalfClose,
            "exits_on_sigterm" => Fault::ExitsOnSigterm,
            "bad_describe" => Fault::BadDescribe,
            other => panic!("no fault named {other}"),
        }
    }

    /// Answers in batches (what arrived within a moment), which the reordering and half-close faults need.
    fn batches(self) -> bool {
        matches!(self, Fault::OutOfOrder | Fault::DropsOnHalfClose)
    }
}

static STOPPING: AtomicBool = AtomicBool::new(false);
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static OPEN: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

#[test]
fn fixture_backend() {
    let Ok(name) = std::env::var(FIXTURE) else {
        return;
    };
    let fault = Fault::from_name(&name);
    let addr = std::env::args().next_back().unwrap();
    let listener = TcpListener::bind(&addr).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(modproxy_sdk::server::shutdown_signal());
        if fault == Fault::ExitsOnSigterm {
            std::process::exit(0);
        }
        // Stop reading: each connection answers what it has, then ends; then the process exits.
        STOPPING.store(true, Ordering::SeqCst);
        for conn in OPEN.lock().unwrap().iter() {
            let _ = conn.shutdown(Shutdown::Read);
        }
        while ACTIVE.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::process::exit(0);
    });
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if STOPPING.load(Ordering::SeqCst) {
            continue;
        }
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        OPEN.lock().unwrap().push(conn.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut conn = conn;
            let _ = serve(&mut conn, fault);
            // The clone kept for the shutdown would hold the socket open: close it for both.
            let _ = conn.shutdown(Shutdown::Both);
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn serve(conn: &mut TcpStream, fault: Fault) -> io::Result<()> {
    conn.set_nodelay(true)?;
    loop {
        let mut batch = Vec::new();
        match read_request(conn, fault)? {
            Got::Frame(payload) => batch.push(payload),
            Got::End => return Ok(()),
            Got::Bad => return conn.write_all(&framed(&error_reply(fault, "bad_request", "bad frame"))),
        }
        if fault.batches() {
            conn.set_read_timeout(Some(Duration::from_millis(100)))?;
            loop {
                match read_request(conn, fault) {
                    Ok(Got::Frame(payload)) => batch.push(payload),
                    Ok(Got::End) if fault == Fault::DropsOnHalfClose => return conn.shutdown(Shutdown::Both),
                    Ok(Got::End) | Ok(Got::Bad) | Err(_) => break,
                }
            }
            conn.set_read_timeout(None)?;
            if fault == Fault::OutOfOrder {
                batch.reverse();
            }
        }
        for payload in batch {
            if fault == Fault::ExitsOnSigterm {
                std::thread::sleep(Duration::from_millis(100)); // work in hand, for the signal to drop
            }
            conn.write_all(&framed(&answer(&payload, fault)))?;
        }
    }
}

enum Got {
    Frame(Vec<u8>),
    End,
    Bad,
}

fn read_request(conn: &mut TcpStream, fault: Fault) -> io::Result<Got> {
    let max = if fault == Fault::NoMaximum {
        usize::MAX
    } else {
        DEFAULT_MAX_FRAME
    };
    match fault {
        Fault::LineInOneRead | Fault::OctalZeroPadding => {
            let mut line = [0u8; 12];
            let got = if fault == Fault::LineInOneRead {
                conn.read(&mut line)?
            } else {
                read_full(conn, &mut line)?
            };
            if got == 0 {
                return Ok(Got::End);
            }
            if got < 12 || &line[10..] != b"\r\n" {
                return Ok(Got::Bad);
            }
            let digits = std::str::from_utf8(&line[..10]).unwrap_or("x").trim_start();
            let len = if fault == Fault::OctalZeroPadding && digits.len() > 1 && digits.starts_with('0') {
                usize::from_str_radix(digits, 8)
            } else {
                digits.parse()
            };
            let Ok(len) = len else { return Ok(Got::Bad) };
            let mut payload = vec![0; len];
            conn.read_exact(&mut payload)?;
            Ok(Got::Frame(payload))
        }
        _ => match read_frame(conn, max) {
            Ok(Some(payload)) => Ok(Got::Frame(payload)),
            Ok(None) => Ok(Got::End),
            Err(modproxy_sdk::FrameError::Io(e)) => Err(e),
            Err(_) => Ok(Got::Bad),
        },
    }
}

fn read_full(conn: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match conn.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn answer(payload: &[u8], fault: Fault) -> Vec<u8> {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        if fault == Fault::CrashesOnBadJson {
            std::process::exit(101);
        }
        return error_reply(fault, "bad_request", "not JSON");
    };
    match value.pointer("/head/method") {
        Some(Value::String(method)) if method == "_ping" && fault != Fault::NoPing => br#"{"pong":true}"#.to_vec(),
        Some(Value::String(method)) if method == "_describe" && fault == Fault::BadDescribe => {
            br#"{"methods":[{"name":"b"},{"name":"a"}]}"#.to_vec()
        }
        Some(Value::String(_)) if value["head"].is_object() => error_reply(fault, "method_not_found", "no such method"),
        _ => error_reply(fault, "bad_request", "not an envelope"),
    }
}

fn error_reply(fault: Fault, code: &str, message: &str) -> Vec<u8> {
    let reply = if fault == Fault::FlatErrorShape {
        serde_json::json!({"error": code, "message": message})
    } else {
        serde_json::json!({"error": {"code": code, "message": message}})
    };
    reply.to_string().into_bytes()
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = length_line(payload.len()).unwrap().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

// ---- the tests ----

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// Runs `modproxy conform` with `args`, the fixture's fault (if any) in its environment, which the
/// fixture it starts inherits.
fn conform(fault: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modproxy"));
    command
        .arg("conform")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null());
    if let Some(fault) = fault {
        command.env(FIXTURE, fault);
    }
    let Output { status, stdout, stderr } = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

fn fixture_command() -> Vec<String> {
    let exe = std::env::current_exe().unwrap().display().to_string();
    ["--", &exe, "--exact", "fixture_backend", "--nocapture", "{addr}"]
        .map(String::from)
        .to_vec()
}

fn conform_fixture(fault: &str, extra: &[&str]) -> (bool, String) {
    let command = fixture_command();
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(command.iter().map(String::as_str));
    conform(Some(fault), &args)
}

fn assert_all_pass(passed: bool, report: &str) {
    assert!(passed, "conform failed:\n{report}");
    assert!(report.contains("17 passed, 0 failed, 0 skipped"), "{report}");
    assert!(!report.contains("FAIL"), "{report}");
}

#[test]
fn a_correct_fixture_passes_every_check() {
    let (passed, report) = conform_fixture("none", &[]);
    assert_all_pass(passed, &report);
}

#[test]
fn each_fault_fails_the_check_that_names_it() {
    let cases = [
        ("octal_zero_padding", "zero_padding"),
        ("line_in_one_read", "split_length_line"),
        ("out_of_order", "pipelined_in_order"),
        ("flat_error_shape", "error_reply_shape"),
        ("crashes_on_bad_json", "invalid_json"),
        ("no_maximum", "huge_length"),
        ("no_ping", "ping"),
        ("drops_on_half_close", "half_close"),
        ("exits_on_sigterm", "sigterm_while_busy"),
        ("bad_describe", "describe"),
    ];
    // One at a time: each starts a backend, and the machine is small.
    for (fault, check) in cases {
        let (passed, report) = conform_fixture(fault, &["--timeout", "2", "--check", check]);
        assert!(!passed, "{fault}: conform passed:\n{report}");
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {check}: expected ")))
            .unwrap_or_else(|| panic!("{fault}: no FAIL line for {check}:\n{report}"));
        assert!(line.contains("; got "), "{fault}: {line}");
        assert!(report.contains("modproxy: 1 of 1 checks failed"), "{fault}:\n{report}");
    }
}

#[test]
fn a_running_backend_is_checked_by_address_and_the_sigterm_check_is_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let mut backend = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fixture_backend", "--nocapture", &addr])
        .env(FIXTURE, "none")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while TcpStream::connect(&addr).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (passed, report) = conform(None, &[&addr, "--check", "ping", "--check", "sigterm_while_busy"]);
    let _ = backend.kill();
    let _ = backend.wait();
    assert!(passed, "{report}");
    assert!(report.contains("PASS ping: "), "{report}");
    assert!(report.contains("SKIP sigterm_while_busy: "), "{report}");
}

#[test]
fn unknown_check_names_and_a_missing_backend_are_refused() {
    let (passed, report) = conform(None, &["127.0.0.1:9", "--check", "pnig"]);
    assert!(!passed);
    assert!(
        report.contains("no check named pnig; the checks are space_padding"),
        "{report}"
    );
    let (passed, report) = conform(None, &["--", "/nonexistent/backend", "{addr}"]);
    assert!(!passed);
    assert!(report.contains("cannot start /nonexistent/backend"), "{report}");
}

/// Builds the Rust example with the cargo running this test, into the same target directory.
fn rust_example() -> PathBuf {
    let target = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "rust-backend"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p rust-backend");
    target.join("debug/rust-backend")
}

#[test]
fn the_rust_example_passes() {
    let exe = rust_example().display().to_string();
    let (passed, report) = conform(None, &["--", &exe, "{addr}"]);
    assert_all_pass(passed, &report);
}

#[test]
#[ignore = "needs .venv with the Python SDK: run by `make test-conform`"]
fn the_python_example_passes() {
    let python = repo().join(".venv/bin/python").display().to_string();
    let (passed, report) = conform(None, &["--", &python, "examples/python-backend/app.py", "{addr}"]);
    assert_all_pass(passed, &report);
}

#[test]
#[ignore = "needs the built Node addon in sdk-node: run by `make test-conform`"]
fn the_node_example_passes() {
    let (passed, report) = conform(None, &["--", "node", "examples/node-backend/index.js", "{addr}"]);
    assert_all_pass(passed, &report);
}

#[test]
#[ignore = "needs Go (`make go`): run by `make test-conform`"]
fn the_go_example_passes() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("go-backend");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&exe)
        .arg(".")
        .current_dir(repo().join("examples/go-backend"))
        .status()
        .expect("go is not installed: `make go`");
    assert!(status.success(), "go build");
    let exe = exe.display().to_string();
    let (passed, report) = conform(None, &["--", &exe, "{addr}"]);
    assert_all_pass(passed, &report);
}
