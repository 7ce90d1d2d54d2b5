//! The HTTP listener: accepts connections up to `max_connections`, serves each with hyper, records the
//! access log and metrics, and shuts down gracefully (stop accepting, let requests in flight finish).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::body::Body;
use crate::metrics::Metrics;
use crate::raw_frames;
use crate::request_context::{self, RequestContext};
use crate::socket_gateway::ServedBy;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest request head (request line and headers) accepted; larger gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The answer to a connection over `max_connections`; written raw, since hyper never sees it.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 55\r\nRetry-After: 1\r\nConnection: close\r\n\r\nThe server is at its connection limit; try again soon.\n";

/// The running configuration, replaced whole by a reload.
pub type LiveApp = Arc<ArcSwap<App>>;

/// Serves the current `app` on `listener` until `shutdown` completes.
pub async fn serve(app: LiveApp, metrics: Arc<Metrics>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let server = app.load().config().server.clone();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
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
        let live = Arc::clone(&app);
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let app = app.load_full();
            async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
        });
        let (http, watcher, stopping) = (http.clone(), graceful.watcher(), stopping.clone());
        let open = metrics.client_connections.clone();
        open.inc();
        tokio::spawn(async move {
            // `[server] raw_frames`: a socket-protocol client is served there; anything else comes back.
            if let Some(stream) = raw_frames::serve_if_raw(stream, peer, &live, &stopping).await {
                let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, %error, "client connection ended with an error");
                }
            }
            open.dec();
            drop(slot);
        });
    }
    drop(listener);
    stopping.cancel();
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with requests still in flight");
    }
}

/// Answers 503 and closes, without letting a slow peer hold the task.
async fn turn_away(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY_RESPONSE).await?;
        stream.shutdown().await
    })
    .await;
}

async fn handle(app: &App, mut request: Request<Incoming>, peer: SocketAddr) -> hyper::Response<Body> {
    let started = Instant::now();
    // Copied only for the access line, which is optional.
    let logged = app
        .config()
        .access_log
        .then(|| (request.method().clone(), request.uri().path().to_owned()));
    let id = request_context::request_id(request.headers());
    // Upstreams see the id too.
    request
        .headers_mut()
        .insert(request_context::REQUEST_ID, request_context::header_value(&id));
    request.extensions_mut().insert(RequestContext {
        peer,
        id: Arc::clone(&id),
    });
    let (mut response, stats) = app.handle(request, peer).await;
    response
        .headers_mut()
        .insert(request_context::REQUEST_ID, request_context::header_value(&id));
    let elapsed = started.elapsed();
    stats.record(response.status(), elapsed);
    if let Some((method, path)) = logged {
        access_line(&response, peer, &method, &path, &stats.name, elapsed, &id);
    }
    response
}

/// The access-log line: client, request, module, node, status, size, time and id.
fn access_line(
    response: &hyper::Response<Body>,
    peer: SocketAddr,
    method: &http::Method,
    path: &str,
    module: &str,
    elapsed: Duration,
    id: &str,
) {
    let node = response.extensions().get::<ServedBy>().map_or("-", |served| &served.0);
    // Streamed bodies know their size from Content-Length; "-" when nobody knows it up front.
    let bytes = response
        .body()
        .size_hint()
        .exact()
        .or_else(|| {
            response
                .headers()
                .get(http::header::CONTENT_LENGTH)?
                .to_str()
                .ok()?
                .parse()
                .ok()
        })
        .map_or_else(|| "-".to_owned(), |n: u64| n.to_string());
    tracing::info!(
        target: "access",
        "{peer} {method} {path} module={module} node={node} status={} bytes={bytes} ms={:.2} id={id}",
        response.status().as_u16(),
        elapsed.as_secs_f64() * 1000.0,
    );
}
