//! `modproxy new`, end to end through the real binary: for each language, generate a backend into a
//! temporary directory and register it in a proxy config, build or install it and run its own tests,
//! start it, and call one of its methods through the real `modproxy`.
//!
//! The Rust case needs only cargo. The Python and Node cases need the repository's `.venv/` with the
//! Python SDK and the built Node addon, which `make test-python` and `make test-node` prepare; so they
//! are ignored by a plain `cargo test` and run by `make test-scaffold`, which depends on those targets.

mod support;

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{free_port, Proxy};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The target directory this test was built in (`target/debug/deps/scaffold-…` → `target`), shared with
/// the generated Rust project so that it builds only itself and the SDK.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_owned()
}

/// Runs `command` to completion; panics with its output unless it succeeded.
fn run(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn modproxy(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modproxy"));
    command.args(args).current_dir(cwd);
    command
}

/// A proxy HOME whose config has comments and an entry of its own, which registration must keep.
fn proxy_home(port: u16) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("conf")).unwrap();
    std::fs::write(
        home.path().join("conf/default.toml"),
        format!(
            "# A test proxy.\n[server]\nport = {port}\nlisten = \"127.0.0.1\"   # loopback only\n\n[module]\n# Backends:\nmodule_socket = [\n  {{ module = \"other\", forward_pass = \"127.0.0.1:9\" }},  # never called\n]\n\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    home
}

/// A generated project, registered in a proxy HOME's config.
struct Scaffolded {
    _work: tempfile::TempDir,
    project: PathBuf,
    home: tempfile::TempDir,
    proxy_port: u16,
    module: String,
    /// The backend's default address, as `modproxy new` reported it.
    listen: String,
}

/// `modproxy new NAME --lang LANG --dir WORK/DIR --register HOME/conf/default.toml EXTRA…`, run in WORK,
/// with the checks every language shares: the next steps, the config edit, the project's README.
fn scaffold(lang: &str, name: &str, dir: &str, module: &str, extra: &[&str]) -> Scaffolded {
    let work = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let home = proxy_home(proxy_port);
    let conf = home.path().join("conf/default.toml");
    let before = std::fs::read_to_string(&conf).unwrap();
    let mut args = vec![
        "new",
        name,
        "--lang",
        lang,
        "--dir",
        dir,
        "--register",
        conf.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = run(&mut modproxy(work.path(), &args));
    let stdout = String::from_utf8(output.stdout).unwrap();

    let listen = stdout
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(".\n").next())
        .unwrap_or_else(|| panic!("no address in:\n{stdout}"))
        .to_owned();
    for needle in [
        &format!("Next steps:\n  cd {dir}\n"),
        &format!("curl -s http://127.0.0.1:{proxy_port}/{module}/ -d"),
        &format!("modproxy --home {}\n", home.path().display()),
    ] {
        assert!(stdout.contains(needle.as_str()), "{needle:?} missing from:\n{stdout}");
    }

    let entry = format!("  {{ module = \"{module}\", forward_pass = \"{listen}\", pipeline = 16 }},\n");
    let expected = before.replace("  # never called\n", &format!("  # never called\n{entry}"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), expected, "the config edit");

    let project = work.path().join(dir);
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "{{ module = \"{module}\", forward_pass = \"{listen}\", pipeline = 16 }}"
        )),
        "{readme}"
    );
    Scaffolded {
        _work: work,
        project,
        home,
        proxy_port,
        module: module.to_owned(),
        listen,
    }
}

/// A backend process, killed on drop; its output goes to a log file shown if it fails to start.
struct Backend {
    child: Child,
}

impl Backend {
    fn start(mut command: Command, addr: &str, log: &Path) -> Backend {
        let out = File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let mut backend = Backend { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            let log = || std::fs::read_to_string(log).unwrap_or_default();
            if let Some(status) = backend.child.try_wait().unwrap() {
                panic!("{command:?} exited ({status}) before listening on {addr}:\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "{command:?} did not listen on {addr}:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        backend
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scaffolded {
    /// Starts the real proxy with the registered config and calls the backend's methods through it.
    fn call_through_the_proxy(self) {
        let module = self.module.clone();
        let proxy = Proxy::start_in(self.home, self.proxy_port);
        let add = proxy.post(
            &format!("/{module}/"),
            &[("Content-Type", "application/json")],
            br#"{"head":{"method":"add"},"data":{"a":2,"b":3}}"#,
        );
        assert_eq!(add.status, 200, "{}\n{}", add.text(), proxy.log());
        assert_eq!(add.json(), json!({"sum": 5}));
        let hello = proxy.post(
            &format!("/{module}/anything"),
            &[],
            br#"{"head":{"method":"hello","token":"t"},"data":{"name":"Ada"}}"#,
        );
        assert_eq!(hello.json(), json!({"message": "Hello, Ada!"}));
        let refused = proxy.post(
            &format!("/{module}/"),
            &[],
            br#"{"head":{"method":"hello"},"data":{"name":""}}"#,
        );
        assert_eq!(refused.json()["error"]["code"], "invalid");
    }
}

#[test]
fn rust_backend_builds_tests_and_answers_through_the_proxy() {
    let port = free_port().to_string();
    let project = scaffold("rust", "hello-rs", "hello-rs", "hello-rs", &["--port", &port]);
    let manifest = std::fs::read_to_string(project.project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("modproxy-sdk = { path = \"../"), "{manifest}");
    assert_eq!(project.listen, format!("127.0.0.1:{port}"));

    // The repository's lock seeds the versions, so the shared target dir's builds are reused.
    std::fs::copy(repo().join("Cargo.lock"), project.project.join("Cargo.lock")).unwrap();
    run(Command::new(env!("CARGO"))
        .args(["test", "--quiet"])
        .current_dir(&project.project)
        .env("CARGO_TARGET_DIR", target_dir()));

    // Listen address from the first argument.
    let binary = target_dir()
        .join("debug")
        .join(format!("hello-rs{}", std::env::consts::EXE_SUFFIX));
    let mut command = Command::new(binary);
    command.arg(&project.listen);
    let _backend = Backend::start(command, &project.listen, &project.project.join("backend.log"));
    project.call_through_the_proxy();
}

/// The repository's `.venv` Python, with the SDK importable; panics with what to run otherwise.
fn repo_python() -> PathBuf {
    let python = repo().join(".venv/bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import modproxy_sdk, pytest"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        ready,
        "{} cannot import modproxy_sdk and pytest; run `make test-python` (or `make test-scaffold`) first",
        python.display()
    );
    python
}

#[test]
#[ignore = "needs .venv with the Python SDK: run by `make test-scaffold`"]
fn python_backend_installs_tests_and_answers_through_the_proxy() {
    let repo_python = repo_python();
    let port = free_port().to_string();
    let project = scaffold(
        "python",
        "hello-py",
        "hello-py",
        "greet",
        &["--module", "greet", "--port", &port],
    );

    // A throwaway environment layered on the repository's .venv: it sees the SDK (and pytest) installed
    // there, and installing the project into it leaves the shared .venv untouched.
    let venv = project.project.join(".venv");
    run(Command::new(&repo_python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv));
    let site = Command::new(&repo_python)
        .args(["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        .output()
        .unwrap();
    let repo_site = String::from_utf8(site.stdout).unwrap().trim().to_owned();
    let python = venv.join("bin/python");
    let venv_site = Command::new(&python)
        .args(["-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
        .output()
        .unwrap();
    let venv_site = PathBuf::from(String::from_utf8(venv_site.stdout).unwrap().trim());
    std::fs::write(
        venv_site.join("_repo_venv.pth"),
        format!("import site; site.addsitedir({repo_site:?})\n"),
    )
    .unwrap();

    // --no-deps: the SDK is already there; resolving its file: URL would compile it again.
    let pip = |args: &[&str]| {
        let mut command = Command::new(&repo_python);
        command
            .args(["-m", "pip", "--python"])
            .arg(&python)
            .args(["--disable-pip-version-check"])
            .args(args)
            .current_dir(&project.project);
        run(&mut command)
    };
    pip(&["install", "--quiet", "--no-deps", "-e", "."]);
    pip(&["check"]);
    let requires = run(Command::new(&python).args([
        "-c",
        "import importlib.metadata as m; print('\\n'.join(m.requires('hello-py')))",
    ]));
    // The requirement names the checkout's SDK (spacing around '@' depends on the setuptools version).
    let requires = String::from_utf8(requires.stdout).unwrap().replace(' ', "");
    let sdk_url = format!("file://{}", repo().join("sdk-python").display());
    assert!(requires.contains(&format!("modproxy-sdk@{sdk_url}\n")), "{requires}");

    run(Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(&project.project));

    // Listen address from the environment.
    let mut command = Command::new(&python);
    command
        .arg("app.py")
        .current_dir(&project.project)
        .env("MODPROXY_LISTEN", &project.listen);
    let _backend = Backend::start(command, &project.listen, &project.project.join("backend.log"));
    project.call_through_the_proxy();
}

#[test]
#[ignore = "needs the built Node addon in sdk-node: run by `make test-scaffold`"]
fn node_backend_installs_tests_and_answers_through_the_proxy() {
    let sdk_node = repo().join("sdk-node");
    let built = std::fs::read_dir(&sdk_node)
        .unwrap()
        .flatten()
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "node"));
    assert!(
        built,
        "{} has no built addon (*.node); run `make test-node` (or `make test-scaffold`) first",
        sdk_node.display()
    );
    // No --port: the generated default, which the backend falls back to below.
    let project = scaffold("node", "hello-js", "backends/hello-js", "hello-js", &[]);
    let package = std::fs::read_to_string(project.project.join("package.json")).unwrap();
    assert!(package.contains("\"modproxy-sdk\": \"file:../../"), "{package}");

    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(&project.project));
    run(Command::new("npm").arg("test").current_dir(&project.project));

    // Listen address from the generated default.
    let mut command = Command::new("node");
    command
        .arg("index.js")
        .current_dir(&project.project)
        .env_remove("MODPROXY_LISTEN");
    let _backend = Backend::start(command, &project.listen, &project.project.join("backend.log"));
    project.call_through_the_proxy();
}

#[test]
fn refusals_leave_everything_as_it_was() {
    let work = tempfile::tempdir().unwrap();
    let home = proxy_home(8080);
    let conf = home.path().join("conf/default.toml");
    let config = std::fs::read_to_string(&conf).unwrap();
    let fails = |args: &[&str]| -> String {
        let output = modproxy(work.path(), args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?} should fail");
        String::from_utf8(output.stderr).unwrap()
    };
    let conf_arg = conf.to_str().unwrap();

    let stderr = fails(&[
        "new",
        "x",
        "--lang",
        "node",
        "--module",
        "other",
        "--register",
        conf_arg,
    ]);
    assert!(
        stderr.contains("module \"other\" is already configured in [module] module_socket"),
        "{stderr}"
    );
    let stderr = fails(&["new", "Hello", "--lang", "rust"]);
    assert!(
        stderr.contains("project name \"Hello\" must start with a lowercase letter; use a lowercase ASCII letter"),
        "{stderr}"
    );
    let stderr = fails(&["new", "x", "--lang", "python", "--module", "a/b"]);
    assert!(
        stderr.contains("module \"a/b\" holds a character other than letters, digits, '-' and '_'"),
        "{stderr}"
    );
    let stderr = fails(&[
        "new",
        "x",
        "--lang",
        "rust",
        "--sdk-root",
        work.path().to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("sdk-rust/Cargo.toml is missing); pass --sdk-root DIR"),
        "{stderr}"
    );

    std::fs::create_dir(work.path().join("taken")).unwrap();
    std::fs::write(work.path().join("taken/keep.txt"), "mine").unwrap();
    let stderr = fails(&["new", "taken", "--lang", "python", "--register", conf_arg]);
    assert!(stderr.contains("taken already exists and is not empty"), "{stderr}");

    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nprot = 1\n").unwrap();
    let stderr = fails(&["new", "x", "--lang", "node", "--register", bad.to_str().unwrap()]);
    assert!(
        stderr.contains("unknown key 'prot'") && stderr.contains("nothing was generated"),
        "{stderr}"
    );

    assert_eq!(std::fs::read_to_string(&conf).unwrap(), config);
    let mut left: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["bad.toml", "taken"]);
    assert_eq!(std::fs::read_dir(work.path().join("taken")).unwrap().count(), 1);
}

#[test]
fn an_empty_directory_is_used_and_help_explains_the_flags() {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("empty")).unwrap();
    let output = run(&mut modproxy(
        work.path(),
        &["new", "empty", "--lang", "js", "--port", "4567"],
    ));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("module_socket = [ { module = \"empty\", forward_pass = \"127.0.0.1:4567\", pipeline = 16 } ]"),
        "{stdout}"
    );

    // A config elsewhere than HOME/conf/default.toml, with no [module] yet, on every address.
    std::fs::write(
        work.path().join("proxy.toml"),
        "[server]\nport = 9000\nlisten = \"0.0.0.0\"\n",
    )
    .unwrap();
    let args = [
        "new",
        "other",
        "--lang",
        "py",
        "--port",
        "4568",
        "--register",
        "proxy.toml",
    ];
    let stdout = String::from_utf8(run(&mut modproxy(work.path(), &args)).stdout).unwrap();
    let conf = work.path().join("proxy.toml");
    for needle in [
        format!("modproxy --config {}\n", conf.display()),
        "curl -s http://127.0.0.1:9000/other/ -d".to_owned(),
    ] {
        assert!(stdout.contains(&needle), "{needle:?} missing from:\n{stdout}");
    }
    assert_eq!(
        std::fs::read_to_string(&conf).unwrap(),
        "[server]\nport = 9000\nlisten = \"0.0.0.0\"\n\n[module]\nmodule_socket = [\n  { module = \"other\", forward_pass = \"127.0.0.1:4568\", pipeline = 16 },\n]\n"
    );
    for file in [
        "package.json",
        "index.js",
        "test/app.test.js",
        "README.md",
        ".gitignore",
    ] {
        assert!(work.path().join("empty").join(file).is_file(), "{file}");
    }

    let help = run(&mut modproxy(work.path(), &["new", "--help"]));
    let help = String::from_utf8(help.stdout).unwrap();
    for needle in [
        "--lang <LANG>",
        "- python: A Python project",
        "--register <CONF>",
        "--sdk-root <DIR>",
        "Default: ./NAME",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}
