//! A real HTTP upstream for `module_http` tests (hyper on its own thread and runtime): echoes each request
//! as JSON, streams, trickles, stalls or speaks WebSocket, and counts what it saw.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use modproxy::body::{full, Body};
use serde_json::json;
use tokio::sync::Notify;

#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Echoes the request as JSON (and a few special paths, see `echo`).
    Echo,
    /// Waits this long, then echoes.
    Slow(Duration),
    /// Reads the request head, then closes the connection without a response.
    DropAfterHead,
    /// A WebSocket echo server.
    WebSocket,
}

/// What an upstream saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    pub requests: AtomicUsize,
    /// Set when `/…/upload-probe` received its first body bytes.
    pub first_upload_bytes: AtomicBool,
    /// Releases the second half of `/…/trickle`.
    pub gate: Notify,
}

/// A real upstream server on its own thread and runtime, listening on a free port.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl Upstream {
    pub fn start(name: &'static str, behaviour: Behaviour) -> Upstream {
        Upstream::start_on(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), name, behaviour)
    }

    pub fn start_on(listener: std::net::TcpListener, name: &'static str, behaviour: Behaviour) -> Upstream {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let seen = Arc::clone(&shared);
                    tokio::spawn(serve(name, behaviour, stream, seen));
                }
            });
        });
        Upstream { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.seen.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }
}

async fn serve(name: &'static str, behaviour: Behaviour, mut stream: tokio::net::TcpStream, seen: Arc<Seen>) {
    match behaviour {
        Behaviour::DropAfterHead => {
            use tokio::io::AsyncReadExt;
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.requests.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
        Behaviour::WebSocket => {
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            seen.requests.fetch_add(1, Ordering::SeqCst);
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        }
        Behaviour::Echo | Behaviour::Slow(_) => {
            let delay = match behaviour {
                Behaviour::Slow(delay) => delay,
                _ => Duration::ZERO,
            };
            let service = hyper::service::service_fn(move |request| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(echo(name, request, seen).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

/// The echo upstream. `…/stream?bytes=N` sends N bytes; `…/trickle` sends "first", waits for the
/// gate, then "second"; `…/upload-probe` notes its first body bytes; anything else is echoed as JSON.
async fn echo(name: &str, request: Request<Incoming>, seen: Arc<Seen>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    if path.ends_with("/stream") {
        let total: u64 = query.trim_start_matches("bytes=").parse().unwrap();
        let chunks = futures_util::stream::unfold(total, |left| async move {
            (left > 0).then(|| {
                let n = left.min(64 * 1024);
                let frame = Ok::<_, modproxy::body::BoxError>(Frame::data(Bytes::from(vec![b'x'; n as usize])));
                (frame, left - n)
            })
        });
        let mut response = Response::new(StreamBody::new(chunks).boxed_unsync());
        response.headers_mut().insert("content-length", total.into());
        return response;
    }
    if path.ends_with("/trickle") {
        let first = futures_util::stream::once(async { Ok(Frame::data(Bytes::from_static(b"first;"))) });
        // The gate is awaited inside the body stream: the head and "first;" go out before it opens.
        let second = futures_util::stream::once(async move {
            seen.gate.notified().await;
            Ok::<_, modproxy::body::BoxError>(Frame::data(Bytes::from_static(b"second")))
        });
        return Response::new(StreamBody::new(first.chain(second)).boxed_unsync());
    }
    let method = request.method().to_string();
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        let entry = headers.entry(name.as_str()).or_insert_with(|| json!([]));
        entry
            .as_array_mut()
            .unwrap()
            .push(json!(String::from_utf8_lossy(value.as_bytes())));
    }
    let probe = path.ends_with("/upload-probe");
    let mut body = request.into_body();
    let mut len = 0u64;
    let mut sum = 0u64;
    let mut kept = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            if probe && !data.is_empty() {
                seen.first_upload_bytes.store(true, Ordering::SeqCst);
            }
            len += data.len() as u64;
            sum = data.iter().fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(b as u64));
            if kept.len() < 65536 {
                kept.extend_from_slice(&data);
            }
        }
    }
    let reply = json!({
        "node": name, "method": method, "path": path, "query": query, "headers": headers,
        "len": len, "sum": sum, "body": String::from_utf8_lossy(&kept),
    });
    let mut response = Response::new(full(reply.to_string()));
    let h = response.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-up", "yes".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("connection", "x-hop".parse().unwrap());
    h.insert("x-hop", "secret".parse().unwrap());
    response
}
