//! The listener: accepts connections up to `max_connections`, hands raw-frame clients to [`raw_frames`]
//! and serves the rest with hyper, each request through [`App::handle`](crate::app::App::handle), and
//! shuts down gracefully (stop accepting, let requests in flight finish).
//!
//! HTTP/1 connections are served by [`http1_parking`], which frees hyper's buffers while a keep-alive
//! connection idles; HTTP/2 ones by [`http2_idle`], which bounds how long one may sit idle.

mod http1_parking;
mod http2_idle;

use http1_parking::serve_http1;
use http2_idle::serve_auto;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::LiveApp;
use crate::connection_hold::ConnectionHold;
use crate::metrics::Metrics;
use crate::raw_frames;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted; larger gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The answer to a connection over `max_connections`; written raw, since hyper never sees it.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 55\r\nRetry-After: 1\r\nConnection: close\r\n\r\nThe server is at its connection limit; try again soon.\n";

/// What an HTTP/2 client sends first (prior knowledge); anything else is served as HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves the current `app` on `listener` until `shutdown` completes.
pub async fn serve(app: LiveApp, metrics: Arc<Metrics>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let server = app.load().config().server.clone();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
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
            tokio::spawn(turn_away(stream));
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
        let app = Arc::clone(&app);
        let service = service_fn({
            let hold = hold.clone();
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(hold.clone());
                let app = app.load_full();
                async move { Ok::<_, Infallible>(app.handle(request, peer).await) }
            }
        });
        let (http, h1, stopping) = (http.clone(), h1.clone(), stopping.clone());
        let (header_timeout, send_timeout) = (server.header_timeout, server.send_timeout);
        tokio::spawn(async move {
            // `[server] raw_frames`: a socket-protocol client is served there; anything else comes back.
            if let Some(stream) = raw_frames::serve_if_raw(stream, peer, &live, &stopping).await {
                let served = match first_bytes(&stream, header_timeout, &stopping).await {
                    // HTTP/2, or too few bytes to rule it out: hyper-util tells them apart, as before.
                    // `stopping` drives the graceful shutdown; the hold keeps shutdown waiting.
                    Some(true) => serve_auto(stream, service, &http, header_timeout, send_timeout, &stopping).await,
                    Some(false) => serve_http1(stream, service, &h1, send_timeout, &stopping)
                        .await
                        .map_err(Into::into),
                    None => Ok(()),
                };
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
            }
            drop(hold);
        });
    }
    drop(listener);
    stopping.cancel();
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
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
