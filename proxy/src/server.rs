//! The HTTP listener: accepts connections up to `max_connections`, serves each with hyper, records the
//! access log and metrics, and shuts down gracefully (stop accepting, let requests in flight finish).
//!
//! An HTTP/1.1 connection idling between requests holds no hyper state: hyper keeps a read and a write
//! buffer (8 KiB each, the read one often regrown to 16 KiB) and the service future's slot for as long as
//! its connection lives, about 30 KB of heap per idle keep-alive client. So when hyper is waiting for the
//! next request head and has nothing left to write, the connection is taken apart (`into_parts`), the
//! bare socket waits for readability, and a new hyper connection is built when the client speaks again.
//! Only after `PARK_AFTER` without a new request, so that busy clients do not pay for the rebuild.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::rt::{ReadBufCursor, Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::{service_fn, HttpService};
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

/// How long an HTTP/1 connection waits for its next request inside hyper before it is parked. Rebuilding
/// hyper's connection costs about a microsecond of CPU per request: noticeable for a client that sends
/// back to back, nothing for one that pauses this long. Short, so that hyper's buffers are freed soon
/// and reused by the next connection rather than piling up in the heap.
const PARK_AFTER: Duration = Duration::from_millis(10);

/// What an HTTP/2 client sends first (prior knowledge); anything else is served as HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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
        let live = Arc::clone(&app);
        let app = Arc::clone(&app);
        let service = service_fn(move |request| {
            let app = app.load_full();
            async move { Ok::<_, Infallible>(handle(&app, request, peer).await) }
        });
        let (http, h1, watcher, stopping) = (http.clone(), h1.clone(), graceful.watcher(), stopping.clone());
        let header_timeout = server.header_timeout;
        let open = metrics.client_connections.clone();
        open.inc();
        tokio::spawn(async move {
            // `[server] raw_frames`: a socket-protocol client is served there; anything else comes back.
            if let Some(stream) = raw_frames::serve_if_raw(stream, peer, &live, &stopping).await {
                let served = match first_bytes(&stream, header_timeout, &stopping).await {
                    // HTTP/2, or too few bytes to rule it out: hyper-util tells them apart, as before.
                    Some(true) => {
                        // Held, as for HTTP/1 below: `stopping` drives the graceful shutdown.
                        let _watcher = watcher;
                        serve_auto(stream, service, &http, header_timeout, &stopping).await
                    }
                    Some(false) => {
                        // Held, not used to watch: shutdown waits for it, and `stopping` drives the connection.
                        let _watcher = watcher;
                        serve_http1(stream, service, &h1, &stopping).await.map_err(Into::into)
                    }
                    None => Ok(()),
                };
                if let Err(error) = served {
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

/// Serves a connection whose protocol hyper-util's auto builder decides: HTTP/2, or HTTP/1 whose first
/// bytes could not rule HTTP/2 out. HTTP/2 has no header-read timer, so without a bound an idle client
/// would hold its connection slot for ever: a connection with no request being handled that moves no
/// byte either way for `idle_after` is shut down gracefully (the client is told to go away), and dropped
/// if it stays quiet for `idle_after` more (a client that never acknowledges the goodbye).
async fn serve_auto<S>(
    stream: TcpStream,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    idle_after: Duration,
    stopping: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<Request<Incoming>, Response = hyper::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Arc::new(Activity::new());
    let io = ActivityIo {
        io: TokioIo::new(stream),
        activity: Arc::clone(&activity),
    };
    let counted = {
        let activity = Arc::clone(&activity);
        service_fn(move |request| {
            let handling = Handling::new(&activity);
            let response = service.call(request);
            async move {
                let response = response.await;
                drop(handling);
                response
            }
        })
    };
    let mut connection = pin!(http.serve_connection_with_upgrades(io, counted));
    let mut stop = pin!(stopping.cancelled());
    let mut closing = false;
    loop {
        let quiet_until = activity.last() + idle_after;
        tokio::select! {
            done = connection.as_mut() => return done,
            () = &mut stop, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(quiet_until.into()) => {
                if activity.last() + idle_after > Instant::now() || activity.handling() > 0 {
                    continue;
                }
                if closing {
                    return Ok(());
                }
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Counts a request as being handled until dropped; its end counts as activity.
struct Handling(Arc<Activity>);

impl Handling {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::Relaxed);
        Handling(Arc::clone(activity))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// When a connection last moved a byte (in milliseconds since it was opened), and how many of its
/// requests are being handled.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
        }
    }

    fn handling(&self) -> usize {
        self.handling.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A socket that records when it last read or wrote a byte.
struct ActivityIo {
    io: TokioIo<TcpStream>,
    activity: Arc<Activity>,
}

impl hyper::rt::Read for ActivityIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if read.is_ready() {
            this.activity.touch();
        }
        read
    }
}

impl hyper::rt::Write for ActivityIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        if written.is_ready() {
            this.activity.touch();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if written.is_ready() {
            this.activity.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `stream`, parking it without hyper between requests (see the module docs).
async fn serve_http1<S>(
    mut stream: TcpStream,
    mut service: S,
    h1: &http1::Builder,
    stopping: &CancellationToken,
) -> hyper::Result<()>
where
    S: HttpService<Incoming, ResBody = Body> + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut stop = pin!(stopping.cancelled());
    // A request head the client had begun when the connection was parked, and that head's deadline.
    let mut unread = Bytes::new();
    let mut deadline = None;
    loop {
        let idle = Arc::new(Idle::new(deadline));
        let io = ParkIo {
            io: TokioIo::new(stream),
            unread,
            idle: Arc::clone(&idle),
        };
        let mut connection = h1
            .clone()
            .timer(HeadTimer(Arc::clone(&idle)))
            .serve_connection(io, service)
            .with_upgrades();
        let mut stopped = false;
        // `Some` when hyper is done with the connection (the client left, it was closed or upgraded).
        let done = poll_fn(|cx| {
            if !stopped && stop.as_mut().poll(cx).is_ready() {
                stopped = true;
                Pin::new(&mut connection).graceful_shutdown();
            }
            match Pin::new(&mut connection).poll(cx) {
                Poll::Ready(done) => Poll::Ready(Some(done)),
                Poll::Pending if !stopped && idle.parkable() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if let Some(done) = done {
            return done;
        }
        let Some(parts) = connection.into_parts() else {
            return Ok(());
        };
        let http1::Parts {
            io,
            read_buf,
            service: s,
            ..
        } = parts;
        unread = unread_head(read_buf, io.unread);
        stream = io.io.into_inner();
        service = s;
        let head_deadline = idle.deadline();
        deadline = Some(head_deadline);
        // Parked: only the socket, until the client speaks, the head's deadline passes (hyper would have
        // closed the connection then too), or the server stops.
        tokio::select! {
            biased;
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep_until(head_deadline.into()) => return Ok(()),
            ready = stream.readable() => {
                if ready.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// The bytes of a request head begun before the connection was parked (normally none): what hyper had
/// read, then what it had not. Copied, so that hyper's read buffer is freed now rather than kept.
fn unread_head(read_buf: Bytes, unread: Bytes) -> Bytes {
    if read_buf.is_empty() && unread.is_empty() {
        return Bytes::new();
    }
    Bytes::from([&read_buf[..], &unread[..]].concat())
}

/// What a hyper HTTP/1 connection reveals through its IO and its timer: whether it has waited
/// `PARK_AFTER` for a request head (hyper's header-read timer exists exactly while it waits for one), and
/// whether all it wrote is flushed.
struct Idle {
    head: Mutex<Head>,
    flushed: AtomicBool,
}

struct Head {
    /// Header-read timers alive (hyper keeps at most one).
    waiting: usize,
    /// The deadline of the latest one.
    deadline: Instant,
    /// The latest one has passed `PARK_AFTER`.
    lingered: bool,
    /// The deadline of a head begun before the connection was parked, which the next timer keeps.
    carried: Option<Instant>,
}

impl Idle {
    fn new(carried: Option<Instant>) -> Self {
        Self {
            head: Mutex::new(Head {
                waiting: 0,
                deadline: Instant::now(),
                lingered: false,
                carried,
            }),
            flushed: AtomicBool::new(true),
        }
    }

    fn head(&self) -> std::sync::MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hyper has waited a while for a request head and has nothing left to write: the connection can be
    /// taken apart.
    fn parkable(&self) -> bool {
        let head = self.head();
        head.waiting > 0 && head.lingered && self.flushed.load(Ordering::Relaxed)
    }

    fn deadline(&self) -> Instant {
        self.head().deadline
    }
}

/// The connection's socket, with bytes read before it was parked to give hyper first.
struct ParkIo {
    io: TokioIo<TcpStream>,
    unread: Bytes,
    idle: Arc<Idle>,
}

impl hyper::rt::Read for ParkIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unread.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for ParkIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.idle.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.idle.flushed.store(false, Ordering::Relaxed);
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    // Hyper flushes the socket only once its write buffer is empty.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            this.idle.flushed.store(true, Ordering::Relaxed);
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Hyper's header-read timer (the only timer an HTTP/1 server connection uses), reporting to `Idle`.
struct HeadTimer(Arc<Idle>);

impl HeadTimer {
    fn start(&self, sleep: &mut HeadSleep, deadline: Instant) {
        let mut head = self.0.head();
        let deadline = head.carried.take().map_or(deadline, |carried| carried.min(deadline));
        head.deadline = deadline;
        head.lingered = false;
        sleep.deadline = deadline;
        sleep.lingered = false;
        let wake = deadline.min(Instant::now() + PARK_AFTER);
        sleep.sleep.as_mut().reset(wake.into());
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.0.head().waiting += 1;
        let mut sleep = HeadSleep {
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            deadline,
            lingered: false,
            idle: Arc::clone(&self.0),
        };
        self.start(&mut sleep, deadline);
        Box::pin(sleep)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, deadline: Instant) {
        if let Some(sleep) = sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            self.start(sleep.get_mut(), deadline);
        }
    }
}

/// Wakes first at `PARK_AFTER`, to let the connection be parked, then at the head's deadline, which is
/// when hyper sees it complete.
struct HeadSleep {
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Instant,
    lingered: bool,
    idle: Arc<Idle>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            std::task::ready!(this.sleep.as_mut().poll(cx));
            if this.lingered {
                return Poll::Ready(());
            }
            // Hyper goes on waiting (and is parked by `serve_http1` right after this poll).
            this.lingered = true;
            this.idle.head().lingered = true;
            this.sleep.as_mut().reset(this.deadline.into());
        }
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.idle.head().waiting -= 1;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::config::Config;

    struct Server {
        addr: SocketAddr,
        stop: CancellationToken,
        done: tokio::task::JoinHandle<()>,
        _site: tempfile::TempDir,
    }

    async fn start(header_timeout: f64) -> Server {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("a.txt"), "hello").unwrap();
        let text = format!("[server]\nheader_timeout = {header_timeout}\nroot_path = \".\"\n");
        let config = Config::parse(&text, Path::new("t.toml"), site.path()).unwrap();
        let metrics = Arc::new(Metrics::new());
        let app = Arc::new(ArcSwap::from_pointee(App::new(
            config,
            site.path(),
            Arc::clone(&metrics),
        )));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let done = tokio::spawn(serve(app, metrics, listener, stop.clone().cancelled_owned()));
        Server {
            addr,
            stop,
            done,
            _site: site,
        }
    }

    /// Reads one response with a Content-Length body: its status and body.
    async fn response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, Vec<u8>) {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                let status = head[9..12].parse().unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse().unwrap());
                if pending.len() >= end + 4 + length {
                    let body = pending[end + 4..end + 4 + length].to_vec();
                    pending.drain(..end + 4 + length);
                    return (status, body);
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-response");
            pending.extend_from_slice(&chunk[..n]);
        }
    }

    /// Whether the server closes `stream` within `within` (reading nothing else).
    async fn closes(stream: &mut TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    const GET: &[u8] = b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    /// Long enough for a quiet connection to be parked.
    const PAUSE: Duration = PARK_AFTER.saturating_mul(2);

    #[tokio::test]
    async fn a_keep_alive_connection_is_served_across_parking() {
        let server = start(10.0).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let mut pending = Vec::new();
        // Requests with pauses between them: the connection is parked after each.
        for _ in 0..3 {
            stream.write_all(GET).await.unwrap();
            assert_eq!(response(&mut stream, &mut pending).await, (200, b"hello".to_vec()));
            tokio::time::sleep(PAUSE).await;
        }
        // A head in pieces: parked with part of it read, resumed with those bytes.
        for piece in GET.chunks(12) {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(PAUSE).await;
        }
        assert_eq!(response(&mut stream, &mut pending).await.0, 200);
        // Pipelined, the second head cut short until later.
        stream.write_all(&[GET, &GET[..10]].concat()).await.unwrap();
        assert_eq!(response(&mut stream, &mut pending).await.0, 200);
        tokio::time::sleep(PAUSE).await;
        stream.write_all(&GET[10..]).await.unwrap();
        assert_eq!(response(&mut stream, &mut pending).await.0, 200);
        // A request with a body, then another request.
        stream
            .write_all(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde")
            .await
            .unwrap();
        response(&mut stream, &mut pending).await;
        tokio::time::sleep(PAUSE).await;
        stream.write_all(GET).await.unwrap();
        assert_eq!(response(&mut stream, &mut pending).await, (200, b"hello".to_vec()));
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn header_timeout_still_bounds_idle_and_slow_heads() {
        let server = start(1.0).await;
        // Idle after a response: closed once header_timeout has passed, not before.
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        response(&mut idle, &mut Vec::new()).await;
        // A head dribbled a byte at a time: parking must not restart its clock.
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /a.txt HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        let dribble = async {
            for _ in 0..8 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if slow.write_all(b"X").await.is_err() {
                    break;
                }
            }
        };
        dribble.await;
        assert!(closes(&mut slow, Duration::from_secs(1)).await);
        assert!(started.elapsed() < Duration::from_millis(3500));
        assert!(closes(&mut idle, Duration::from_secs(1)).await);
        let mut fresh = TcpStream::connect(server.addr).await.unwrap();
        fresh.write_all(GET).await.unwrap();
        response(&mut fresh, &mut Vec::new()).await;
        assert!(
            !closes(&mut fresh, Duration::from_millis(500)).await,
            "closed before header_timeout"
        );
        assert!(
            closes(&mut fresh, Duration::from_secs(1)).await,
            "left open after header_timeout"
        );
    }

    #[tokio::test]
    async fn parked_connections_do_not_hold_up_shutdown() {
        let server = start(10.0).await;
        let mut parked = TcpStream::connect(server.addr).await.unwrap();
        parked.write_all(GET).await.unwrap();
        response(&mut parked, &mut Vec::new()).await;
        tokio::time::sleep(PAUSE).await;
        // Idle too, but still inside hyper.
        let mut resting = TcpStream::connect(server.addr).await.unwrap();
        resting.write_all(GET).await.unwrap();
        response(&mut resting, &mut Vec::new()).await;
        server.stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), server.done)
            .await
            .expect("shutdown waited for an idle connection")
            .unwrap();
        assert!(closes(&mut parked, Duration::from_secs(1)).await);
        assert!(closes(&mut resting, Duration::from_secs(1)).await);
    }
}
