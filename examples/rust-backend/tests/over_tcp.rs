//! The todo backend over real TCP: its router behind the SDK's server, and the built binary itself.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modproxy_sdk::{BlockingClient, Client, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn add_list_done_and_their_errors() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(rust_backend::router(), async {
        let _ = stopped.await;
    }));
    let mut client = Client::connect(addr).await.unwrap();

    assert_eq!(client.call("list", Value::Null).await.unwrap(), json!({"todos": []}));
    assert_eq!(
        client.call("add", json!({"title": "write the README"})).await.unwrap(),
        json!({"id": 1, "title": "write the README", "done": false})
    );
    client.call("add", json!({"title": "ship it"})).await.unwrap();
    assert_eq!(
        client.call("done", json!({"id": 1})).await.unwrap(),
        json!({"id": 1, "title": "write the README", "done": true})
    );
    assert_eq!(
        client.call("list", json!({})).await.unwrap(),
        json!({"todos": [
            {"id": 1, "title": "write the README", "done": true},
            {"id": 2, "title": "ship it", "done": false},
        ]})
    );

    let empty = client.call("add", json!({"title": "   "})).await.unwrap_err();
    assert_eq!(empty.code(), Some("invalid"));
    let long = client.call("add", json!({"title": "x".repeat(201)})).await.unwrap_err();
    assert_eq!(long.code(), Some("invalid"));
    assert!(long.to_string().contains("201 characters"), "{long}");
    assert_eq!(
        client.call("done", json!({"id": 99})).await.unwrap_err().code(),
        Some("not_found")
    );
    assert_eq!(client.call("add", json!({})).await.unwrap_err().code(), Some("invalid"));
    assert_eq!(
        client.call("add", json!({"title": 7})).await.unwrap_err().code(),
        Some("bad_request")
    );
    assert_eq!(
        client.call("done", json!({"id": "1"})).await.unwrap_err().code(),
        Some("bad_request")
    );
    assert_eq!(
        client.call("remove", json!({"id": 1})).await.unwrap_err().code(),
        Some("method_not_found")
    );

    // Another connection sees the same list.
    let mut other = Client::connect(addr).await.unwrap();
    let todos = other.call("list", Value::Null).await.unwrap();
    assert_eq!(todos["todos"].as_array().unwrap().len(), 2);

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

/// A free port: bound, read and released. Another process could take it in between, which on a test
/// machine is rare enough.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The binary, started with `configure`, killed when dropped.
struct Backend(Child);

impl Backend {
    fn start(configure: impl FnOnce(&mut Command)) -> Backend {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rust-backend"));
        command
            .env_remove("MODPROXY_LISTEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        configure(&mut command);
        Backend(command.spawn().unwrap())
    }

    /// Connects once the backend listens, retrying while it starts.
    fn connect(&mut self, addr: SocketAddr) -> BlockingClient {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match BlockingClient::connect(addr) {
                Ok(client) => return client,
                Err(error) if Instant::now() < deadline => {
                    assert!(self.0.try_wait().unwrap().is_none(), "the backend exited: {error}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("the backend never listened on {addr}: {error}"),
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_binary_listens_on_its_argument() {
    let addr = free_port();
    let mut backend = Backend::start(|c| {
        c.arg(addr.to_string()).env("MODPROXY_LISTEN", "127.0.0.1:1");
    });
    let mut client = backend.connect(addr);
    assert_eq!(client.call("_ping", Value::Null).unwrap(), json!({"pong": true}));
    assert_eq!(client.call("add", json!({"title": "t"})).unwrap()["id"], 1);
}

#[test]
fn the_binary_listens_on_modproxy_listen_and_stops_on_sigterm() {
    let addr = free_port();
    let mut backend = Backend::start(|c| {
        c.env("MODPROXY_LISTEN", addr.to_string());
    });
    let mut client = backend.connect(addr);
    assert_eq!(client.call("list", Value::Null).unwrap(), json!({"todos": []}));
    drop(client);

    let status = Command::new("kill")
        .args(["-TERM", &backend.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = backend.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "a graceful stop exits 0: {exit}");
}
