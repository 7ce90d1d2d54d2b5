//! The server over real TCP on 127.0.0.1: concurrency, framing as TCP really delivers it, every error
//! reply of DESIGN.md, the `Backend` trait, idle timeout, graceful shutdown, and pipelining negotiation
//! with its sequenced replies.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use modproxy_sdk::pipeline::{self, Sequenced};
use modproxy_sdk::{Backend, Client, HandlerResult, Head, LengthLineCodec, MethodError, Request, Router, Server};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;

/// Long enough that only a real hang trips it on a loaded two-core machine.
const GENEROUS: Duration = Duration::from_secs(20);

/// A server running in the background, stopped by [`Running::stop`].
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(server: Server, backend: impl Backend) -> Running {
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_with_shutdown(backend, async {
            let _ = stopped.await;
        }));
        Running { addr, stop, serving }
    }

    async fn router(router: Router) -> Running {
        Running::start(Server::bind("127.0.0.1:0").await.unwrap(), router).await
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr).await.unwrap()
    }

    /// Connects without a client, to send bytes exactly as a test chooses.
    async fn raw(&self) -> Framed<TcpStream, LengthLineCodec> {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Framed::new(stream, LengthLineCodec::default())
    }

    /// Stops the server and returns how long it took to return.
    async fn stop(self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.send(());
        within(self.serving).await.unwrap().unwrap();
        started.elapsed()
    }
}

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(GENEROUS, future).await.expect("timed out")
}

/// The next reply on a raw connection, as JSON; `None` when the server closed the connection.
async fn next_reply(conn: &mut Framed<TcpStream, LengthLineCodec>) -> Option<Value> {
    let frame = within(conn.next()).await?.unwrap();
    Some(serde_json::from_slice(&frame).unwrap())
}

fn request(method: &str, data: Value) -> Vec<u8> {
    Request::new(method, data).to_vec()
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    modproxy_sdk::frame::write_frame(&mut wire, payload).unwrap();
    wire
}

#[derive(Deserialize)]
struct AddArgs {
    a: i64,
    b: i64,
}

/// The methods most tests need.
fn demo_router() -> Router {
    Router::new()
        .method(
            "add",
            |args: AddArgs| async move { Ok::<_, MethodError>(args.a + args.b) },
        )
        .method("echo", |data: Value| async move { Ok::<_, MethodError>(data) })
        .method("panic", |_: Value| async move {
            if true {
                panic!("boom at the handler");
            }
            Ok::<Value, MethodError>(Value::Null)
        })
        .method("refuse", |_: Value| async move {
            Err::<Value, _>(MethodError::new("not_found", "no todo 7"))
        })
        .method_with_head("whoami", |_: Value, head: Head| async move {
            Ok::<_, MethodError>(json!({"token": head.token, "trace": head.get("trace")}))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_connections_with_many_frames_each() {
    let server = Running::router(demo_router()).await;
    let addr = server.addr;
    let tasks: Vec<_> = (0..200i64)
        .map(|conn| {
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await.unwrap();
                for i in 0..25i64 {
                    let sum = client.call("add", json!({"a": conn, "b": i})).await.unwrap();
                    assert_eq!(sum, json!(conn + i));
                }
            })
        })
        .collect();
    for task in tasks {
        within(task).await.unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn a_frame_split_into_single_byte_writes_is_reassembled() {
    let server = Running::router(demo_router()).await;
    let mut conn = server.raw().await;
    let payload = request("echo", json!({"text": "one byte at a time", "n": [1, 2, 3]}));
    for (i, byte) in frame(&payload).iter().enumerate() {
        conn.get_mut().write_all(&[*byte]).await.unwrap();
        // A pause now and then so the bytes really arrive in separate segments.
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(
        next_reply(&mut conn).await,
        Some(json!({"text": "one byte at a time", "n": [1, 2, 3]}))
    );
    // And the connection is still in step for a normal frame.
    conn.send(request("add", json!({"a": 2, "b": 3}))).await.unwrap();
    assert_eq!(next_reply(&mut conn).await, Some(json!(5)));
    server.stop().await;
}

#[tokio::test]
async fn a_reply_keeps_the_order_of_object_keys() {
    let server = Running::router(demo_router()).await;
    let mut conn = server.raw().await;
    conn.send(br#"{"head":{"method":"echo"},"data":{"zeta":1,"alpha":{"y":2,"x":3}}}"#.to_vec())
        .await
        .unwrap();
    let reply = within(conn.next()).await.unwrap().unwrap();
    assert_eq!(&reply[..], br#"{"zeta":1,"alpha":{"y":2,"x":3}}"#);
    server.stop().await;
}

#[tokio::test]
async fn merged_frames_in_one_write_get_their_replies_in_order() {
    let server = Running::router(demo_router()).await;
    let mut conn = server.raw().await;
    let wire: Vec<u8> = (0..10).flat_map(|i| frame(&request("echo", json!(i)))).collect();
    conn.get_mut().write_all(&wire).await.unwrap();
    for i in 0..10 {
        assert_eq!(next_reply(&mut conn).await, Some(json!(i)));
    }
    server.stop().await;
}

#[tokio::test]
async fn pipelined_frames_are_answered_at_once_and_replied_in_order() {
    // Each "meet" waits for two more of its kind to be in progress at the same time as itself: answered
    // one after another, the first three would wait forever.
    let meeting = Arc::new(tokio::sync::Barrier::new(3));
    let router = demo_router().method("meet", move |data: Value| {
        let meeting = Arc::clone(&meeting);
        async move {
            meeting.wait().await;
            Ok::<_, MethodError>(data)
        }
    });
    let server = Running::router(router).await;
    let mut conn = server.raw().await;
    let asks = [
        request("meet", json!("first")),
        request("echo", json!("quick")),
        request("meet", json!("second")),
        request("meet", json!("third")),
    ];
    let wire: Vec<u8> = asks.iter().flat_map(|payload| frame(payload)).collect();
    conn.get_mut().write_all(&wire).await.unwrap();
    // "quick" is done long before "first", but is replied to after it: the peer matches replies by order.
    for expected in ["first", "quick", "second", "third"] {
        assert_eq!(next_reply(&mut conn).await, Some(json!(expected)));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_bad_frame_behind_pipelined_ones_is_answered_after_them() {
    let server = Running::router(demo_router()).await;
    let mut conn = server.raw().await;
    let mut wire = frame(&request("echo", json!(1)));
    wire.extend(frame(&request("add", json!({"a": 1, "b": 2}))));
    wire.extend(b"hello worl\r\n{}");
    conn.get_mut().write_all(&wire).await.unwrap();
    assert_eq!(next_reply(&mut conn).await, Some(json!(1)));
    assert_eq!(next_reply(&mut conn).await, Some(json!(3)));
    let reply = next_reply(&mut conn).await.expect("a reply to the bad frame");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert_eq!(next_reply(&mut conn).await, None, "then the connection is closed");
    server.stop().await;
}

#[tokio::test]
async fn a_bad_length_line_closes_only_that_connection() {
    let server = Running::router(demo_router()).await;
    let mut good = server.client().await;
    assert_eq!(good.call("echo", json!("before")).await.unwrap(), json!("before"));

    let mut bad = server.raw().await;
    bad.get_mut().write_all(b"hello worl\r\n{}").await.unwrap();
    let reply = next_reply(&mut bad).await.expect("a reply before the close");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("non-digit"),
        "{reply}"
    );
    assert_eq!(next_reply(&mut bad).await, None, "the bad connection is closed");

    assert_eq!(good.call("echo", json!("after")).await.unwrap(), json!("after"));
    let mut fresh = server.client().await;
    assert_eq!(fresh.call("echo", json!("new")).await.unwrap(), json!("new"));
    server.stop().await;
}

#[tokio::test]
async fn frames_over_max_frame_are_refused_before_their_payload() {
    let server = Running::start(Server::bind("127.0.0.1:0").await.unwrap().max_frame(100), demo_router()).await;

    // Exactly max_frame bytes is still a frame: a ping padded with JSON whitespace.
    let mut exact = request("_ping", Value::Null);
    exact.resize(100, b' ');
    let mut conn = server.raw().await;
    conn.send(exact).await.unwrap();
    assert_eq!(next_reply(&mut conn).await, Some(json!({"pong": true})));

    // One byte more is refused on the length line alone, without waiting for the payload.
    let mut conn = server.raw().await;
    conn.get_mut().write_all(b"       101\r\n").await.unwrap();
    let reply = next_reply(&mut conn).await.expect("a reply before the close");
    assert_eq!(reply["error"]["code"], "bad_request");
    assert!(
        reply["error"]["message"].as_str().unwrap().contains("larger than"),
        "{reply}"
    );
    assert_eq!(next_reply(&mut conn).await, None);
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_handler_error_and_the_connection_lives_on() {
    let server = Running::router(demo_router()).await;
    let mut client = server.client().await;
    let error = client.call("panic", json!(null)).await.unwrap_err();
    assert_eq!(error.code(), Some("handler_error"));
    assert!(error.to_string().contains("boom at the handler"), "{error}");
    assert_eq!(client.call("add", json!({"a": 1, "b": 1})).await.unwrap(), json!(2));
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_method_is_method_not_found() {
    let server = Running::router(demo_router()).await;
    let mut client = server.client().await;
    let error = client.call("subtract", json!({})).await.unwrap_err();
    assert_eq!(error.code(), Some("method_not_found"));
    assert!(error.to_string().contains("subtract"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_are_bad_request_and_the_connection_lives_on() {
    let server = Running::router(demo_router()).await;
    let mut client = server.client().await;
    let cases: [&[u8]; 5] = [
        b"not json at all",
        br#"{"data": 1}"#,
        br#"{"head": {"token": "t"}, "data": 1}"#,
        br#"{"head": {"method": 42}}"#,
        br#"{"head": {"method": "add"}, "data": {"a": "one", "b": 2}}"#,
    ];
    for payload in cases {
        let reply: Value = serde_json::from_slice(&client.call_raw(payload).await.unwrap()).unwrap();
        assert_eq!(
            reply["error"]["code"],
            "bad_request",
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(client.call("add", json!({"a": 20, "b": 22})).await.unwrap(), json!(42));
    server.stop().await;
}

#[tokio::test]
async fn a_handler_chosen_code_reaches_the_caller() {
    let server = Running::router(demo_router()).await;
    let mut client = server.client().await;
    let reply = client.call_raw(&request("refuse", Value::Null)).await.unwrap();
    assert_eq!(&reply[..], br#"{"error":{"code":"not_found","message":"no todo 7"}}"#);
    let error = client.call("refuse", Value::Null).await.unwrap_err();
    assert_eq!(error.code(), Some("not_found"));
    server.stop().await;
}

#[tokio::test]
async fn the_head_reaches_handlers_that_ask_for_it() {
    let server = Running::router(demo_router()).await;
    let mut client = server.client().await;
    let mut req = Request::new("whoami", Value::Null);
    req.head = req.head.with_token("secret");
    req.head.extra.insert("trace".into(), json!("abc"));
    assert_eq!(
        client.call_request(&req).await.unwrap(),
        json!({"token": "secret", "trace": "abc"})
    );
    server.stop().await;
}

#[tokio::test]
async fn every_backend_answers_ping() {
    let server = Running::router(Router::new()).await;
    let mut client = server.client().await;
    assert_eq!(
        &client.call_raw(&request("_ping", Value::Null)).await.unwrap()[..],
        br#"{"pong":true}"#
    );
    server.stop().await;

    let server = Running::start(Server::bind("127.0.0.1:0").await.unwrap(), Calculator::default()).await;
    let mut client = server.client().await;
    assert_eq!(client.call("_ping", Value::Null).await.unwrap(), json!({"pong": true}));
    assert_eq!(Calculator::calls(&server).await, 0, "_ping never reaches the backend");
    server.stop().await;
}

/// A backend written the other way: one type, one `match` on the method name.
#[derive(Default)]
struct Calculator {
    calls: AtomicUsize,
}

impl Calculator {
    /// Asks a running calculator how many requests reached it.
    async fn calls(server: &Running) -> u64 {
        let mut client = server.client().await;
        client.call("calls", Value::Null).await.unwrap().as_u64().unwrap()
    }
}

impl Backend for Calculator {
    fn handle(&self, request: Request) -> impl Future<Output = HandlerResult> + Send {
        let method = request.head.method.as_str();
        // A backend may even panic before it returns its future.
        if method == "panic_early" {
            panic!("panicked before the future");
        }
        let calls = if method == "calls" {
            self.calls.load(Ordering::SeqCst)
        } else {
            self.calls.fetch_add(1, Ordering::SeqCst) + 1
        };
        async move {
            match request.head.method.as_str() {
                "double" => {
                    let n = request
                        .data
                        .as_i64()
                        .ok_or_else(|| MethodError::new("invalid", "need a number"))?;
                    Ok(json!(n * 2))
                }
                "calls" => Ok(json!(calls)),
                other => Err(MethodError::method_not_found(other)),
            }
        }
    }
}

#[tokio::test]
async fn a_backend_trait_impl_is_served_like_a_router() {
    let server = Running::start(Server::bind("127.0.0.1:0").await.unwrap(), Calculator::default()).await;
    let mut client = server.client().await;
    assert_eq!(client.call("double", json!(21)).await.unwrap(), json!(42));
    assert_eq!(
        client.call("double", json!("x")).await.unwrap_err().code(),
        Some("invalid")
    );
    assert_eq!(
        client.call("triple", json!(1)).await.unwrap_err().code(),
        Some("method_not_found")
    );
    let error = client.call("panic_early", Value::Null).await.unwrap_err();
    assert_eq!(error.code(), Some("handler_error"));
    assert!(error.to_string().contains("panicked before the future"), "{error}");
    assert_eq!(client.call("calls", Value::Null).await.unwrap(), json!(3));
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .idle_timeout(Duration::from_millis(300)),
        demo_router(),
    )
    .await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let mut busy = server.client().await;
    let started = Instant::now();
    for i in 0..8 {
        assert_eq!(busy.call("echo", json!(i)).await.unwrap(), json!(i));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut buf = [0u8; 1];
    let read = within(idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the idle connection was closed: {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        busy.call("echo", json!("still here")).await.unwrap(),
        json!("still here")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_never_reads_its_replies_is_disconnected() {
    let router = Router::new().method("big", |n: usize| async move { Ok::<_, MethodError>("x".repeat(n)) });
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .idle_timeout(Duration::from_millis(300)),
        router,
    )
    .await;
    // 40 MB of replies asked for, far more than the socket buffers of both ends hold.
    const ASKED: usize = 40;
    let mut conn = server.raw().await;
    let wire: Vec<u8> = (0..ASKED)
        .flat_map(|_| frame(&request("big", json!(1 << 20))))
        .collect();
    conn.get_mut().write_all(&wire).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut received = 0;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(GENEROUS, conn.next()).await {
        received += 1;
    }
    assert!(
        received < ASKED,
        "the server gave up on the stalled peer ({received} replies)"
    );
    // And it did not give up on serving.
    let mut client = server.client().await;
    assert_eq!(client.call("_ping", Value::Null).await.unwrap(), json!({"pong": true}));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_handler_does_not_hold_up_other_connections() {
    let gate = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let router = demo_router().method("gate", {
        let (gate, entered) = (gate.clone(), entered.clone());
        move |_: Value| {
            let (gate, entered) = (gate.clone(), entered.clone());
            async move {
                entered.notify_one();
                gate.notified().await;
                Ok::<_, MethodError>("opened")
            }
        }
    });
    // A single-threaded runtime: only the server's async design, not spare threads, can keep others going.
    let server = Running::router(router).await;
    let mut slow = server.client().await;
    let waiting = tokio::spawn(async move { slow.call("gate", Value::Null).await });
    within(entered.notified()).await;

    let mut other = server.client().await;
    within(async {
        for i in 0..50 {
            assert_eq!(other.call("echo", json!(i)).await.unwrap(), json!(i));
        }
    })
    .await;
    assert!(!waiting.is_finished(), "the slow call is still waiting");

    gate.notify_one();
    assert_eq!(within(waiting).await.unwrap().unwrap(), json!("opened"));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_stops_accepting() {
    let entered = Arc::new(Notify::new());
    let router = demo_router().method("slow", {
        let entered = entered.clone();
        move |_: Value| {
            let entered = entered.clone();
            async move {
                entered.notify_one();
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok::<_, MethodError>("finished")
            }
        }
    });
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .shutdown_grace(Duration::from_secs(30)),
        router,
    )
    .await;
    let addr = server.addr;
    // An idle keep-alive connection must not hold shutdown up for the whole grace period.
    let mut idle = server.client().await;
    assert_eq!(idle.call("echo", json!(1)).await.unwrap(), json!(1));

    let mut client = server.client().await;
    let in_flight = tokio::spawn(async move { client.call("slow", Value::Null).await });
    within(entered.notified()).await;

    let took = server.stop().await;
    assert_eq!(within(in_flight).await.unwrap().unwrap(), json!("finished"));
    assert!(
        took >= Duration::from_millis(200),
        "stop waited for the request ({took:?})"
    );
    assert!(
        took < Duration::from_secs(10),
        "idle connections did not hold shutdown up ({took:?})"
    );
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    assert!(
        idle.call("echo", json!(2)).await.is_err(),
        "idle connections are closed"
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_a_handler_that_never_finishes() {
    let entered = Arc::new(Notify::new());
    let router = Router::new().method("hang", {
        let entered = entered.clone();
        move |_: Value| {
            let entered = entered.clone();
            async move {
                entered.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, MethodError>(())
            }
        }
    });
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .shutdown_grace(Duration::from_millis(200)),
        router,
    )
    .await;
    let mut client = server.client().await;
    let _hanging = tokio::spawn(async move { client.call("hang", Value::Null).await });
    within(entered.notified()).await;
    let took = server.stop().await;
    assert!(took < Duration::from_secs(10), "{took:?}");
}

// ---- hostile peers (issue 9): none of them stops other connections from being served ----------------

/// A router whose `hang` handler never returns; `entered` is notified each time a call reaches it.
fn hanging_router(entered: Arc<Notify>) -> Router {
    demo_router()
        .method("hang", move |_: Value| {
            let entered = entered.clone();
            async move {
                entered.notify_one();
                std::future::pending::<()>().await;
                Ok::<_, MethodError>(())
            }
        })
        .method("nap", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, MethodError>(ms)
        })
}

/// Makes `n` calls at once, each on its own new connection, and returns how long they all took.
async fn twenty_fresh_connections(server: &Running, n: i64) -> Duration {
    let started = Instant::now();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await.unwrap();
                client.call("add", json!({"a": i, "b": 1})).await.unwrap()
            })
        })
        .collect();
    for (i, call) in (0..n).zip(calls) {
        assert_eq!(within(call).await.unwrap(), json!(i + 1));
    }
    started.elapsed()
}

#[tokio::test]
async fn a_half_closed_connection_still_gets_every_reply() {
    let server = Running::router(hanging_router(Arc::new(Notify::new()))).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let mut wire = frame(&request("nap", json!(100)));
    wire.extend(frame(&request("add", json!({"a": 2, "b": 3}))));
    stream.write_all(&wire).await.unwrap();
    // The client is done sending: it shuts down its write side, then waits for the replies.
    stream.shutdown().await.unwrap();
    let mut replies = Framed::new(stream, LengthLineCodec::default());
    assert_eq!(
        next_reply(&mut replies).await,
        Some(json!(100)),
        "the slow reply arrives after the FIN"
    );
    assert_eq!(next_reply(&mut replies).await, Some(json!(5)));
    assert_eq!(
        next_reply(&mut replies).await,
        None,
        "then the server closes its side too"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_frame_cut_short_by_a_half_close_gets_a_bad_request_reply() {
    let server = Running::router(demo_router()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"        50\r\n{\"head\":").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut replies = Framed::new(stream, LengthLineCodec::default());
    let reply = next_reply(&mut replies).await.expect("a reply before the close");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert_eq!(next_reply(&mut replies).await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_returns_does_not_stop_twenty_other_connections() {
    let entered = Arc::new(Notify::new());
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .shutdown_grace(Duration::from_millis(200)),
        hanging_router(entered.clone()),
    )
    .await;
    let mut stuck = server.client().await;
    let hanging = tokio::spawn(async move { stuck.call("hang", Value::Null).await });
    within(entered.notified()).await;

    let took = twenty_fresh_connections(&server, 20).await;
    assert!(
        took < Duration::from_secs(5),
        "20 connections took {took:?} beside a hung handler"
    );
    assert!(!hanging.is_finished(), "the hung call is still waiting");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_and_half_closed_peers_do_not_disturb_other_connections() {
    let entered = Arc::new(Notify::new());
    let server = Running::start(
        Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .max_frame(64 * 1024)
            .shutdown_grace(Duration::from_millis(200)),
        hanging_router(entered.clone()),
    )
    .await;
    let mut stuck = server.client().await;
    let hanging = tokio::spawn(async move { stuck.call("hang", Value::Null).await });
    within(entered.notified()).await;

    // Binary garbage: refused with a reply, then closed.
    let mut garbage = server.raw().await;
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let _ = garbage.get_mut().write_all(&noise).await;
    assert_eq!(next_reply(&mut garbage).await.unwrap()["error"]["code"], "bad_request");
    assert_eq!(next_reply(&mut garbage).await, None);

    // An oversized frame whose payload really follows (1 MiB against 64 KiB): refused on the length
    // line, and the connection closed without waiting for the megabyte. The reply may be lost to the
    // reset that closing over unread bytes causes; what matters is that nothing else notices.
    let (mut from_server, mut to_server) = TcpStream::connect(server.addr).await.unwrap().into_split();
    let mut big = b"   1048576\r\n".to_vec();
    big.resize(12 + 1024 * 1024, b' ');
    let writing = tokio::spawn(async move { to_server.write_all(&big).await });
    let mut answer = Vec::new();
    match within(from_server.read_to_end(&mut answer)).await {
        Ok(_) => assert!(
            String::from_utf8_lossy(&answer).contains("bad_request"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        ),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
    let _ = within(writing).await.unwrap();

    // A peer that half-closes without sending anything: closed quietly.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(silent.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "no reply to no request");

    let took = twenty_fresh_connections(&server, 20).await;
    assert!(took < Duration::from_secs(5), "20 connections took {took:?}");
    assert!(!hanging.is_finished());
    server.stop().await;
}

// Pipelining negotiation and the sequenced reply envelope (`modproxy_sdk::pipeline`).

/// What a connection is sent in each pipelining test: a mix of replies, errors and the built-in `_ping`.
fn mixed_requests() -> Vec<Vec<u8>> {
    vec![
        request("echo", json!({"zeta": 1, "alpha": [1, 2]})),
        request("refuse", Value::Null),
        request("_ping", Value::Null),
        request("nope", Value::Null),
        request("add", json!({"a": 2, "b": 3})),
        b"not json".to_vec(),
        request("panic", Value::Null),
    ]
}

/// Sends `requests` in one write and reads one reply payload per request.
async fn replies_to(conn: &mut Framed<TcpStream, LengthLineCodec>, requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let wire: Vec<u8> = requests.iter().flat_map(|payload| frame(payload)).collect();
    conn.get_mut().write_all(&wire).await.unwrap();
    let mut replies = Vec::new();
    for _ in requests {
        replies.push(within(conn.next()).await.unwrap().unwrap().to_vec());
    }
    replies
}

#[tokio::test]
async fn pipeline_is_accepted_then_every_reply_is_enveloped_with_its_request_number() {
    let server = Running::router(demo_router()).await;
    let requests = mixed_requests();

    let mut bare = server.raw().await;
    let bare_replies = replies_to(&mut bare, &requests).await;
    // A connection that never asks keeps its replies byte for byte as they always were.
    assert_eq!(bare_replies[0], br#"{"zeta":1,"alpha":[1,2]}"#);
    assert_eq!(
        bare_replies[1],
        br#"{"error":{"code":"not_found","message":"no todo 7"}}"#
    );
    assert_eq!(bare_replies[2], br#"{"pong":true}"#);
    assert_eq!(bare_replies[4], b"5");

    let mut sequenced = server.raw().await;
    sequenced.send(pipeline::negotiation_request(8)).await.unwrap();
    let accepted = within(sequenced.next()).await.unwrap().unwrap();
    assert_eq!(&accepted[..], br#"{"pipeline":1}"#);
    let enveloped = replies_to(&mut sequenced, &requests).await;
    for (n, (got, bare)) in enveloped.iter().zip(&bare_replies).enumerate() {
        let expected = [format!(r#"{{"seq":{},"reply":"#, n + 1).as_bytes(), bare, b"}"].concat();
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(&expected),
            "reply {}",
            n + 1
        );
    }
    // Numbering goes on across writes.
    let more = replies_to(&mut sequenced, &[request("echo", json!("late"))]).await;
    assert_eq!(more[0], br#"{"seq":8,"reply":"late"}"#);
    server.stop().await;
}

/// Opens a sequenced reply into its number and its reply as text.
fn opened(reply: &[u8]) -> (u64, String) {
    let sequenced = Sequenced::open(reply).expect("an envelope");
    (sequenced.seq, String::from_utf8_lossy(sequenced.reply).into_owned())
}

#[tokio::test]
async fn sequenced_replies_go_out_as_they_complete_each_with_its_request_number() {
    // Each "meet" waits for the other two to be in progress at the same time as itself; "nap" sleeps. So
    // the requests finish in an order of their own: "quick" first, the three meetings, then the naps.
    let meeting = Arc::new(tokio::sync::Barrier::new(3));
    let router = hanging_router(Arc::new(Notify::new())).method("meet", move |data: Value| {
        let meeting = Arc::clone(&meeting);
        async move {
            meeting.wait().await;
            Ok::<_, MethodError>(data)
        }
    });
    let server = Running::router(router).await;
    let mut conn = server.raw().await;
    let requests = [
        pipeline::negotiation_request(8),
        request("nap", json!(600)),
        request("meet", json!("first")),
        request("nap", json!(300)),
        request("echo", json!("quick")),
        request("meet", json!("second")),
        request("meet", json!("third")),
    ];
    let replies = replies_to(&mut conn, &requests).await;
    assert_eq!(replies[0], br#"{"pipeline":1}"#);
    let opened: Vec<(u64, String)> = replies[1..].iter().map(|reply| opened(reply)).collect();
    assert_eq!(opened[0], (4, r#""quick""#.to_owned()), "{opened:?}");
    let mut meetings = opened[1..4].to_vec();
    meetings.sort();
    assert_eq!(
        meetings,
        [
            (2, r#""first""#.to_owned()),
            (5, r#""second""#.to_owned()),
            (6, r#""third""#.to_owned())
        ],
        "{opened:?}"
    );
    assert_eq!(
        opened[4..],
        [(3, "300".to_owned()), (1, "600".to_owned())],
        "{opened:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_slow_handler_does_not_delay_a_fast_reply_behind_it_on_a_sequenced_connection() {
    let server = Running::router(hanging_router(Arc::new(Notify::new()))).await;
    let mut conn = server.raw().await;
    conn.send(pipeline::negotiation_request(4)).await.unwrap();
    assert_eq!(&within(conn.next()).await.unwrap().unwrap()[..], br#"{"pipeline":1}"#);
    conn.send(request("nap", json!(2000))).await.unwrap();
    // Sent after the slow call has surely started, as a separate write.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = Instant::now();
    conn.send(request("add", json!({"a": 2, "b": 3}))).await.unwrap();
    let first = within(conn.next()).await.unwrap().unwrap();
    assert_eq!(opened(&first), (2, "5".to_owned()), "the fast reply comes first");
    assert!(
        sent.elapsed() < Duration::from_millis(1500),
        "the fast reply waited {:?}",
        sent.elapsed()
    );
    let second = within(conn.next()).await.unwrap().unwrap();
    assert_eq!(opened(&second), (1, "2000".to_owned()));
    server.stop().await;
}

#[tokio::test]
async fn pipeline_is_only_a_first_frame() {
    let server = Running::router(demo_router()).await;
    let mut late = server.raw().await;
    let replies = replies_to(
        &mut late,
        &[request("echo", json!(1)), pipeline::negotiation_request(4)],
    )
    .await;
    assert_eq!(replies[0], b"1");
    let refused: Value = serde_json::from_slice(&replies[1]).unwrap();
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert_eq!(
        replies_to(&mut late, &[request("echo", json!(2))]).await[0],
        b"2",
        "still bare"
    );

    let mut twice = server.raw().await;
    let again = pipeline::negotiation_request(4);
    let replies = replies_to(&mut twice, &[again.clone(), again]).await;
    let second = Sequenced::open(&replies[1]).expect("an envelope");
    assert_eq!(second.seq, 1);
    assert!(String::from_utf8_lossy(second.reply).contains("bad_request"));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_frame_on_a_sequenced_connection_gets_the_next_number_then_the_connection_closes() {
    let server = Running::router(demo_router()).await;
    let mut conn = server.raw().await;
    let mut wire = frame(&pipeline::negotiation_request(4));
    wire.extend(frame(&request("echo", json!(1))));
    wire.extend(b"hello worl\r\n{}");
    conn.get_mut().write_all(&wire).await.unwrap();
    assert_eq!(&within(conn.next()).await.unwrap().unwrap()[..], br#"{"pipeline":1}"#);
    assert_eq!(
        &within(conn.next()).await.unwrap().unwrap()[..],
        br#"{"seq":1,"reply":1}"#
    );
    let farewell = within(conn.next()).await.unwrap().unwrap();
    let farewell = Sequenced::open(&farewell).expect("an envelope");
    assert_eq!(farewell.seq, 2);
    assert!(String::from_utf8_lossy(farewell.reply).contains("bad frame"));
    assert!(within(conn.next()).await.is_none(), "then the connection is closed");
    server.stop().await;
}
