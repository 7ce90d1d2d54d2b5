//! `modproxy reload` and `modproxy stop`: the running proxy found through `HOME/logs/modproxy.pid`,
//! through the real binary.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use support::config::{config, socket_module};
use support::socket_backend::{envelope, Backend, Style};
use support::Proxy;

/// Runs `modproxy ARGS --home HOME`.
fn modproxy(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .args(args)
        .arg("--home")
        .arg(home)
        .output()
        .expect("run modproxy")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_for(mut ok: impl FnMut() -> bool) {
    for _ in 0..100 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("condition not met within 5 s");
}

#[test]
fn reload_takes_the_new_config_and_stop_ends_the_server() {
    let first = Backend::start(Style::SpaceKeepAlive);
    let second = Backend::start(Style::SpaceKeepAlive);
    let proxy = Proxy::start("", &config(&[socket_module("s3", &[first.addr], "")]));
    let home = proxy.home.path().to_owned();
    let pid_file = home.join("logs/modproxy.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        proxy.pid().to_string(),
        "the server writes its pid"
    );
    let port_of = |proxy: &Proxy| proxy.post("/s3/", &[], &envelope("x", json!(1))).json()["port"].clone();
    assert_eq!(port_of(&proxy), json!(first.addr.port()));

    let server = std::fs::read_to_string(proxy.config_path()).unwrap();
    let server = &server[..server.find("[module]").unwrap()];
    std::fs::write(
        proxy.config_path(),
        format!("{server}{}", config(&[socket_module("s3", &[second.addr], "")])),
    )
    .unwrap();
    let reload = modproxy(&home, &["reload"]);
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    assert!(
        text(&reload.stdout).contains(&format!("modproxy (pid {}) is reloading", proxy.pid())),
        "{}",
        text(&reload.stdout)
    );
    wait_for(|| port_of(&proxy) == json!(second.addr.port()));

    let stop = modproxy(&home, &["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(text(&stop.stdout), format!("modproxy (pid {}) stopped\n", proxy.pid()));
    assert!(
        std::net::TcpStream::connect(proxy.addr).is_err(),
        "the port is closed once stop returns"
    );
    assert!(!pid_file.exists(), "a clean exit removes the pid file");

    // Nothing left to stop.
    let again = modproxy(&home, &["stop"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("modproxy: not running: there is no pid file"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn a_stale_pid_file_is_reported_and_removed() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("logs")).unwrap();
    let pid_file = home.path().join("logs/modproxy.pid");
    for command in ["reload", "stop"] {
        // Linux pids stay below 2^22, so no process has this one.
        std::fs::write(&pid_file, "4194303\n").unwrap();
        let output = modproxy(home.path(), &[command]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("modproxy: not running: pid 4194303")
                && stderr.contains("is not a running process (a stale pid file, now removed)"),
            "{command}: {stderr}"
        );
        assert!(!pid_file.exists(), "{command} removes the stale pid file");
    }

    // A live process that is not modproxy (this test) is never signalled.
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let output = modproxy(home.path(), &["stop"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("not modproxy"),
        "{}",
        text(&output.stderr)
    );
}
