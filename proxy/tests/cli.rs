//! `modproxy check` and start-up failures, through the real binary.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::free_port;

fn modproxy(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn check_prints_a_summary_of_the_default_config() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = modproxy(&["check", "conf/default.toml"], &repo);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "default.toml: OK",
        "listen      127.0.0.1:8080",
        "/todo-rust/  socket",
        "keepalive true, pipeline 16",
        "- 127.0.0.1:21231",
    ] {
        assert!(summary.contains(needle), "{needle:?} missing from:\n{summary}");
    }
}

#[test]
fn check_names_file_line_and_key_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[server]\nport = 8080\n\n[module]\nmodule_socket = [ { module = \"s3\", forward_pas = \"127.0.0.1:1\" } ]\n",
    )
    .unwrap();
    let out = modproxy(&["check", "--config", file.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("bad.toml line 5: unknown key 'forward_pas' in [module] (did you mean 'forward_pass'?)"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_never_binds_the_port() {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir(home.path().join("conf")).unwrap();
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!("[server]\nport = {port}\nlisten = \"127.0.0.1\"\nbogus = 1\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_modproxy"))
        .args(["--home", home.path().to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("line 4: unknown key 'bogus' in [server]"), "{stderr}");
    assert!(TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200)
    )
    .is_err());
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("conf")).unwrap();
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!("[server]\nport = {port}\nlisten = \"127.0.0.1\"\n"),
    )
    .unwrap();
    let out = modproxy(&["--home", home.path().to_str().unwrap()], home.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = modproxy(&["check", "nope.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("nope.toml: cannot read"));
}
