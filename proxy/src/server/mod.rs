//! The listener: accepts connections up to `max_connections`, hands raw-frame clients to [`raw_frames`]
//! and serves the rest with hyper, each request through [`App::handle`](crate::app::App::handle), and
//! shuts down gracefully (stop accepting, let requests in flight finish).
//!
//! HTTP/1 connections are served by [`http1_parking`], which frees hyper's buffers while a keep-alive
//! connection idles; HTTP/2 ones by [`http2_idle`], which bounds how long one may sit idle.
//!
//! The same loop serves the HTTPS listener ([`Front::Tls`]): the TLS handshake first, then HTTP/2 or
//! HTTP/1 as ALPN chose, over the TLS stream. Raw frames are plain-TCP only.

mod file_sending;
mod http1_parking;
mod http2_idle;
mod proxy_header;
mod tls_stream;

use http1_parking::serve_http1;
use http2_idle::serve_auto;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, LiveApp};
use crate::body::{self, Body};
use crate::connection_hold::ConnectionHold;
use crate::metrics::Metrics;
use crate::raw_frames;
use crate::tls::acme::Challenges;
use crate::tls::redirect;

/// What a listener speaks.
pub enum Front {
    /// Plain HTTP (and raw frames, when `[server] raw_frames` is on), answering ACME's HTTP-01
    /// challenges from these.
    Plain(Arc<Challenges>),
    /// HTTPS: a TLS handshake with this acceptor first.
    Tls(tokio_rustls::TlsAcceptor),
}

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted; larger gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The answer to a connection over `max_connections`; written raw, since hyper never sees it.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 55\r\nRetry-After: 1\r\nConnection: close\r\n\r\nThe server is at its connection limit; try again soon.\n";

/// HTTP/2 flow-control windows: how much request body a client may send on one stream, and on the
/// whole connection, before the proxy reads it. hyper's defaults (1 MiB and 5 MiB) let every connection
/// park megabytes.
const H2_STREAM_WINDOW: u32 = 256 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Most response bytes buffered per HTTP/2 stream for a client that does not read.
const H2_MAX_SEND_BUF: usize = 256 * 1024;

/// Rapid reset (CVE-2023-44487): streams a client may open and cancel before the server has taken
/// them up, and streams the server may reset for the client's errors, before the connection is closed
/// with GOAWAY.
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_ERROR_RESETS: usize = 64;

/// What an HTTP/2 client sends first (prior knowledge); anything else is served as HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves the current `app` on `listener` until `shutdown` completes. Each listener admits up to
/// `max_connections` of its own.
pub async fn serve(
    app: LiveApp,
    metrics: Arc<Metrics>,
    listener: TcpListener,
    front: Front,
    shutdown: impl Future<Output = ()>,
) {
    let server = app.load().config().server.clone();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    http.http2()
        .max_concurrent_streams(server.http2_max_streams)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_ERROR_RESETS)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    // The same settings for the HTTP/1 connections served by `serve_http1`; each gets its own timer.
    // `max_buf_size` alone does not bound a head (a read may overshoot it and complete the head), so
    // `max_header_size` checks the parsed length; hyper-util's builder does not offer it.
    let mut h1 = http1::Builder::new();
    h1.header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let graceful = GracefulShutdown::new();
    // Raw-frame connections are not hyper's: each holds a watcher, so shutdown waits for it, and stops
    // reading frames when this is cancelled.
    let stopping = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.refused_connections.inc();
            tracing::warn!(%peer, limit = server.max_connections, "connection refused: at [server] max_connections");
            // A TLS client could not read a plain answer: it is just closed.
            if matches!(front, Front::Plain(_)) {
                tokio::spawn(turn_away(stream));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The slot, the gauge and shutdown's wait, held by the connection and any WebSocket it becomes.
        let open = metrics.client_connections.clone();
        open.inc();
        let hold = ConnectionHold::new(
            (slot, Open(open), graceful.watcher()),
            stopping.clone(),
            server.websocket_idle_timeout,
        );
        let live = Arc::clone(&app);
        let (http, h1, stopping) = (http.clone(), h1.clone(), stopping.clone());
        let (header_timeout, send_timeout, proxy_protocol) =
            (server.header_timeout, server.send_timeout, server.proxy_protocol);
        // Two tasks of their own, so that a plain connection's task is no larger than before TLS came.
        // Each boxed: tokio moves a spawned future by value several times before it first runs, about ten
        // copies of the whole (some 10 KB) per connection, where moving a box moves a pointer.
        match &front {
            Front::Plain(challenges) => {
                let challenges = Arc::clone(challenges);
                tokio::spawn(Box::pin(async move {
                    let mut stream = stream;
                    let Some(peer) = announced_client(&mut stream, peer, proxy_protocol, header_timeout).await else {
                        return drop(hold);
                    };
                    let service = service(Arc::clone(&live), peer, Side::Plain(challenges), hold.clone());
                    let served = serve_plain(
                        stream,
                        peer,
                        live,
                        service,
                        (&http, &h1),
                        (header_timeout, send_timeout),
                        &stopping,
                    )
                    .await;
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "client connection ended with an error");
                    }
                    drop(hold);
                }));
            }
            Front::Tls(acceptor) => {
                let (acceptor, metrics) = (acceptor.clone(), Arc::clone(&metrics));
                tokio::spawn(Box::pin(async move {
                    let mut stream = stream;
                    let Some(peer) = announced_client(&mut stream, peer, proxy_protocol, header_timeout).await else {
                        return drop(hold);
                    };
                    let served = match tls_stream::handshake(&acceptor, stream, header_timeout, &stopping).await {
                        Ok(Some(stream)) => {
                            let service = service(live, peer, Side::Tls, hold.clone());
                            if tls_stream::is_h2(&stream) {
                                serve_auto(stream, service, &http, header_timeout, send_timeout, &stopping).await
                            } else {
                                (serve_http1(stream, service, &h1, send_timeout, &stopping).await).map_err(Into::into)
                            }
                        }
                        Ok(None) => Ok(()),
                        Err(error) => {
                            metrics.tls_handshake_failures.inc();
                            Err(error.into())
                        }
                    };
                    if let Err(error) = served {
                        tracing::debug!(%peer, %error, "client connection ended with an error");
                    }
                    drop(hold);
                }));
            }
        }
    }
    drop(listener);
    stopping.cancel();
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// The client of a new connection: the socket peer, or with `[server] proxy_protocol` the address its
/// PROXY header names (read before anything else, TLS included). `None`: no valid header; closed.
async fn announced_client(
    stream: &mut TcpStream,
    peer: SocketAddr,
    proxy_protocol: bool,
    header_timeout: Duration,
) -> Option<SocketAddr> {
    if !proxy_protocol {
        return Some(peer);
    }
    match proxy_header::read(stream, header_timeout).await {
        Ok(client) => Some(client.unwrap_or(peer)),
        Err(error) => {
            tracing::warn!(%peer, %error, "connection closed: [server] proxy_protocol needs a valid PROXY header");
            None
        }
    }
}

type ServeResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A plain-TCP connection: raw frames when they are on, else HTTP/2 or HTTP/1 by the first bytes.
async fn serve_plain<S>(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    live: LiveApp,
    service: S,
    (http, h1): (&auto::Builder<TokioExecutor>, &http1::Builder),
    (header_timeout, send_timeout): (Duration, Duration),
    stopping: &CancellationToken,
) -> ServeResult
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Unpin
        + 'static,
    S::Future: Send + 'static,
{
    // `[server] raw_frames`: a socket-protocol client is served there; anything else comes back.
    let Some(stream) = raw_frames::serve_if_raw(stream, peer, &live, stopping).await else {
        return Ok(());
    };
    // `stopping` drives the graceful shutdown; the connection's hold keeps shutdown waiting.
    match first_bytes(&stream, header_timeout, stopping).await {
        // HTTP/2, or too few bytes to rule it out: hyper-util tells them apart.
        Some(true) => serve_auto(stream, service, http, header_timeout, send_timeout, stopping).await,
        Some(false) => (serve_http1(stream, service, h1, send_timeout, stopping).await).map_err(Into::into),
        None => Ok(()),
    }
}

/// What a listener adds around the app: ACME's challenges and the redirect to HTTPS on plain HTTP, the
/// HSTS header on HTTPS.
#[derive(Clone)]
enum Side {
    Plain(Arc<Challenges>),
    Tls,
}

/// The service of one connection: the app, with what its listener's [`Side`] adds. Each request that
/// asks to upgrade carries the connection's hold, so that a WebSocket it becomes keeps the connection
/// counted.
fn service(
    live: LiveApp,
    peer: SocketAddr,
    side: Side,
    hold: ConnectionHold,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
       + Send
       + Unpin
       + 'static {
    service_fn(move |mut request: Request<Incoming>| {
        // Only a request that may become a WebSocket needs it (`http_forward` splices those).
        if request.headers().contains_key(http::header::UPGRADE) {
            request.extensions_mut().insert(hold.clone());
        }
        let app = live.load_full();
        let challenge = match &side {
            Side::Plain(challenges) => (request.uri().path())
                .starts_with(redirect::ACME_CHALLENGE_PREFIX)
                .then(|| challenges.answer(request.uri().path()))
                .flatten(),
            Side::Tls => None,
        };
        let secure = matches!(side, Side::Tls);
        if secure {
            request.extensions_mut().insert(crate::client_address::OverTls);
        }
        async move {
            if let Some(answer) = challenge {
                return Ok(Response::new(body::full(answer)));
            }
            if !secure {
                if let Some(location) = https_redirect(&app, &request) {
                    return Ok(moved_to(&location));
                }
            }
            let mut response = app.handle(request, peer).await;
            if let Some(hsts) = (app.config().tls.as_ref())
                .filter(|_| secure)
                .and_then(|tls| tls.hsts.clone())
            {
                response
                    .headers_mut()
                    .entry(http::header::STRICT_TRANSPORT_SECURITY)
                    .or_insert(hsts);
            }
            Ok::<_, Infallible>(response)
        }
    })
}

/// Where a plain-HTTP request goes instead, when `[tls] redirect_http` is on.
fn https_redirect(app: &App, request: &Request<Incoming>) -> Option<String> {
    let tls = app.config().tls.as_ref().filter(|tls| tls.redirect_http)?;
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok());
    redirect::https_location(request.uri(), host, tls.listen.port())
}

/// 308: the same request, method and body included, at `location`.
fn moved_to(location: &str) -> Response<Body> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = http::StatusCode::PERMANENT_REDIRECT;
    if let Ok(value) = http::HeaderValue::from_str(location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// A connection's place in the open connections gauge.
struct Open(Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Waits for the client's first bytes: `Some(true)` when they may begin the HTTP/2 preface, `Some(false)`
/// for HTTP/1, `None` when nothing came within `header_timeout`, the peer left, or the server is stopping.
async fn first_bytes(stream: &TcpStream, header_timeout: Duration, stopping: &CancellationToken) -> Option<bool> {
    let mut first = [0u8; H2_PREFACE.len()];
    let got = tokio::select! {
        () = stopping.cancelled() => return None,
        got = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => match got {
            Ok(Ok(got)) if got > 0 => got,
            _ => return None,
        },
    };
    Some(H2_PREFACE.starts_with(&first[..got]))
}

/// Answers 503 and closes, without letting a slow peer hold the task.
async fn turn_away(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await
    })
    .await;
}
