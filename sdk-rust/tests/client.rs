//! The async and blocking clients against real servers: replies, error replies, and each way a call can
//! fail — refused, closed, too slow, too large — named by its own error.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use modproxy_sdk::{BlockingClient, Client, ClientError, MethodError, Request, Router, Server};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;

#[derive(Deserialize)]
struct Wait {
    ms: u64,
}

fn router() -> Router {
    Router::new()
        .method("echo", |data: Value| async move { Ok::<_, MethodError>(data) })
        .method("sleep", |args: Wait| async move {
            tokio::time::sleep(Duration::from_millis(args.ms)).await;
            Ok::<_, MethodError>(args.ms)
        })
        .method("big", |n: usize| async move { Ok::<_, MethodError>("x".repeat(n)) })
        .method("refuse", |_: Value| async move {
            Err::<Value, _>(MethodError::new("invalid", "title is empty"))
        })
}

/// Starts a server on its own runtime thread, so blocking clients can run on the test thread.
fn spawn_server() -> (SocketAddr, oneshot::Sender<()>, std::thread::JoinHandle<()>) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let server = Server::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(server.local_addr().unwrap()).unwrap();
            server
                .serve_with_shutdown(router(), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    (addr_rx.recv().unwrap(), stop, thread)
}

/// A port that refuses connections: bound once, then released.
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn blocking_client_calls_many_times_over_one_connection() {
    let (addr, stop, thread) = spawn_server();
    let mut client = BlockingClient::connect(addr).unwrap();
    for i in 0..100 {
        assert_eq!(client.call("echo", json!({"i": i})).unwrap(), json!({"i": i}));
    }
    assert_eq!(
        client.call_raw(br#"{"head":{"method":"_ping"}}"#).unwrap(),
        br#"{"pong":true}"#
    );
    let mut req = Request::new("echo", json!("with a token"));
    req.head = req.head.with_token("t");
    assert_eq!(client.call_request(&req).unwrap(), json!("with a token"));
    let _ = stop.send(());
    thread.join().unwrap();
}

#[test]
fn blocking_client_maps_error_replies_to_codes() {
    let (addr, stop, thread) = spawn_server();
    let mut client = BlockingClient::connect(addr).unwrap();
    let error = client.call("refuse", Value::Null).unwrap_err();
    assert_eq!(error.code(), Some("invalid"));
    assert!(matches!(error, ClientError::Method(ref e) if e.message == "title is empty"));
    assert_eq!(
        client.call("nope", Value::Null).unwrap_err().code(),
        Some("method_not_found")
    );
    assert_eq!(
        client.call("echo", json!(1)).unwrap(),
        json!(1),
        "error replies leave the connection usable"
    );
    let _ = stop.send(());
    thread.join().unwrap();
}

#[test]
fn blocking_client_times_out_then_refuses_to_reuse_the_connection() {
    let (addr, stop, thread) = spawn_server();
    let mut client = BlockingClient::connect(addr)
        .unwrap()
        .reply_timeout(Duration::from_millis(100))
        .unwrap();
    let error = client.call("sleep", json!({"ms": 2000})).unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error}");
    // The late reply would be mistaken for the next call's, so the client will not go on.
    assert!(matches!(client.call("echo", json!(1)), Err(ClientError::Abandoned)));
    let _ = stop.send(());
    thread.join().unwrap();
}

#[test]
fn blocking_client_names_refused_and_closed_connections() {
    let addr = closed_port();
    assert!(matches!(BlockingClient::connect(addr), Err(ClientError::Connect { addr: a, .. }) if a == addr));

    // A backend that reads the request and hangs up without replying.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = [0u8; 12];
        stream.read_exact(&mut line).unwrap();
    });
    let mut client = BlockingClient::connect(addr).unwrap();
    let error = client.call("echo", json!(1)).unwrap_err();
    peer.join().unwrap();
    assert!(matches!(error, ClientError::Closed | ClientError::Frame(_)), "{error}");
}

#[test]
fn blocking_client_refuses_replies_over_its_max_frame() {
    let (addr, stop, thread) = spawn_server();
    let mut client = BlockingClient::connect(addr).unwrap().max_frame(100);
    let error = client.call("big", json!(1000)).unwrap_err();
    assert!(
        matches!(error, ClientError::Frame(ref e) if e.kind() == "too_large"),
        "{error}"
    );
    let _ = stop.send(());
    thread.join().unwrap();
}

#[tokio::test]
async fn async_client_calls_and_maps_error_replies() {
    let server = Server::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_shutdown(router(), async {
        let _ = stopped.await;
    }));

    let mut client = Client::connect(addr).await.unwrap();
    assert_eq!(client.peer_addr().unwrap(), addr);
    assert_eq!(client.call("echo", json!([1, "two"])).await.unwrap(), json!([1, "two"]));
    let error = client.call("refuse", Value::Null).await.unwrap_err();
    assert_eq!(error.code(), Some("invalid"));
    assert_eq!(
        error.to_string(),
        "the backend replied with an error: invalid: title is empty"
    );
    assert_eq!(&client.call_raw(b"{}").await.unwrap()[..8], br#"{"error""#);

    let mut small = Client::connect(addr).await.unwrap().max_frame(100);
    let error = small.call("big", json!(1000)).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Frame(ref e) if e.kind() == "too_large"),
        "{error}"
    );

    let mut impatient = Client::connect(addr)
        .await
        .unwrap()
        .reply_timeout(Duration::from_millis(100));
    let error = impatient.call("sleep", json!({"ms": 2000})).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error}");
    assert!(matches!(
        impatient.call("echo", json!(1)).await,
        Err(ClientError::Abandoned)
    ));

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn async_client_names_refused_and_closed_connections() {
    let addr = closed_port();
    let error = Client::connect(addr).await.unwrap_err();
    assert!(
        matches!(error, ClientError::Connect { addr: a, .. } if a == addr),
        "{error}"
    );
    assert!(error.to_string().contains(&addr.to_string()), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut line = [0u8; 12];
        stream.read_exact(&mut line).await.unwrap();
    });
    let mut client = Client::connect(addr).await.unwrap();
    let error = client.call("echo", json!(1)).await.unwrap_err();
    peer.await.unwrap();
    assert!(matches!(error, ClientError::Closed | ClientError::Frame(_)), "{error}");
}

#[test]
fn a_reply_that_is_not_json_is_bad_reply() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = modproxy_sdk::frame::read_frame(&mut stream, 1 << 20).unwrap();
        stream.write_all(b"         5\r\nhello").unwrap();
    });
    let mut client = BlockingClient::connect(addr).unwrap();
    assert!(matches!(client.call("echo", json!(1)), Err(ClientError::BadReply(_))));
    peer.join().unwrap();
}
