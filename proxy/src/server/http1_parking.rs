//! Serving HTTP/1.1 without holding hyper's buffers while a keep-alive connection idles.
//!
//! An HTTP/1.1 connection idling between requests holds no hyper state: hyper keeps a read and a write
//! buffer (8 KiB each, the read one often regrown to 16 KiB) and the service future's slot for as long as
//! its connection lives, about 30 KB of heap per idle keep-alive client. So when hyper is waiting for the
//! next request head and has nothing left to write, the connection is taken apart (`into_parts`), the
//! bare socket waits for readability, and a new hyper connection is built when the client speaks again.
//! Only after `PARK_AFTER` without a new request, so that busy clients do not pay for the rebuild.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::file_sending::{FileSending, SendsFiles};
use crate::observed_io::{IoObserver, ObservedIo, Polled};
use crate::send_timeout::SendTimeout;
use tokio_util::sync::CancellationToken;

use crate::body::Body;

/// How long an HTTP/1 connection waits for its next request inside hyper before it is parked. Rebuilding
/// hyper's connection costs about a microsecond of CPU per request: noticeable for a client that sends
/// back to back, nothing for one that pauses this long. Short, so that hyper's buffers are freed soon
/// and reused by the next connection rather than piling up in the heap.
const PARK_AFTER: Duration = Duration::from_millis(10);

/// A connection that can wait for the client's next bytes without a read buffer: plain TCP, or TLS over it.
pub(crate) trait Parkable: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when the client has sent something (or the socket failed).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Parkable for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        TcpStream::readable(self)
    }
}

impl<T: Parkable + SendsFiles> Parkable for FileSending<T> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().readable()
    }
}

/// Serves HTTP/1.1 on `stream`, parking it without hyper between requests (see the module docs). Large
/// files go out with `sendfile` where `stream` can (see `file_sending.rs`).
pub(super) async fn serve_http1<T: Parkable + SendsFiles, S>(
    stream: T,
    service: S,
    h1: &http1::Builder,
    send_timeout: Duration,
    stopping: &CancellationToken,
) -> hyper::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<Body>> + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // hyper 1.x queues body buffers for `writev` as they are (its default write strategy when the IO
    // takes vectored writes), which is what lets a placeholder reach `FileSending`.
    let mut stream = FileSending::new(stream);
    let mut service = stream.serving(service);
    let mut stop = pin!(stopping.cancelled());
    // A request head the client had begun when the connection was parked, and that head's deadline.
    let mut unread = Bytes::new();
    let mut deadline = None;
    loop {
        let idle = Arc::new(Idle::new(deadline));
        let parking = Parking {
            unread,
            idle: Arc::clone(&idle),
        };
        let io = TokioIo::new(ObservedIo::observing(SendTimeout::new(stream, send_timeout), parking));
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
        let (timed, parking) = io.into_inner().into_parts();
        unread = unread_head(read_buf, parking.unread);
        stream = timed.into_inner();
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
    /// The alarm of the last timer dropped, for the next one: hyper makes a timer per request head.
    spare: Option<Alarm>,
}

impl Idle {
    fn new(carried: Option<Instant>) -> Self {
        Self {
            head: Mutex::new(Head {
                waiting: 0,
                deadline: Instant::now(),
                lingered: false,
                carried,
                spare: None,
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

/// What the connection's socket adds for parking: bytes read before it was parked, to give hyper first,
/// and a note of whether all hyper wrote is flushed.
struct Parking {
    unread: Bytes,
    idle: Arc<Idle>,
}

impl IoObserver for Parking {
    fn poll_read<S: AsyncRead + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Polled {
        if self.unread.is_empty() {
            return Pin::new(io).poll_read(cx, buf);
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread.split_to(n));
        Poll::Ready(Ok(()))
    }

    // Whatever became of the write, there may be something to flush now. (Only the connection's own task
    // reads `flushed`, between polls, so noting it after the write is as good as before.)
    fn written(&mut self, _cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
        self.idle.flushed.store(false, Ordering::Relaxed);
        written
    }

    // Hyper flushes the socket only once its write buffer is empty.
    fn flushed(&mut self, _cx: &mut Context<'_>, flushed: Polled) -> Polled {
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.idle.flushed.store(true, Ordering::Relaxed);
        }
        flushed
    }
}

/// Hyper's header-read timer (the only timer an HTTP/1 server connection uses), reporting to `Idle`.
struct HeadTimer(Arc<Idle>);

impl HeadTimer {
    fn start(head: &mut Head, sleep: &mut HeadSleep, deadline: Instant) {
        let deadline = head.carried.take().map_or(deadline, |carried| carried.min(deadline));
        head.deadline = deadline;
        head.lingered = false;
        sleep.deadline = deadline;
        sleep.lingered = false;
        sleep.park_at = deadline.min(Instant::now() + PARK_AFTER);
        if let Some(alarm) = &mut sleep.alarm {
            // A busy connection starts a head every request: re-registering the timer each time would
            // cost more than the rest of this file. One armed earlier than needed stays, and re-arms
            // when it fires.
            if alarm.armed > sleep.park_at {
                alarm.arm(sleep.park_at);
            }
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let mut head = self.0.head();
        head.waiting += 1;
        let alarm = head.spare.take().unwrap_or_else(|| Alarm::new(deadline));
        let mut sleep = HeadSleep {
            alarm: Some(alarm),
            park_at: deadline,
            deadline,
            lingered: false,
            idle: Arc::clone(&self.0),
        };
        Self::start(&mut head, &mut sleep, deadline);
        drop(head);
        Box::pin(sleep)
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, deadline: Instant) {
        if let Some(sleep) = sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Self::start(&mut self.0.head(), sleep.get_mut(), deadline);
        }
    }
}

/// A tokio timer and when it is set to fire.
struct Alarm {
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Instant,
}

impl Alarm {
    fn new(at: Instant) -> Self {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(at.into())),
            armed: at,
        }
    }

    fn arm(&mut self, at: Instant) {
        self.armed = at;
        self.sleep.as_mut().reset(at.into());
    }
}

/// Wakes first at `PARK_AFTER`, to let the connection be parked, then at the head's deadline, which is
/// when hyper sees it complete.
struct HeadSleep {
    /// Always `Some` until dropped, when it goes back to [`Head::spare`]. It may be set earlier than the
    /// wake wanted (see [`HeadTimer::start`]).
    alarm: Option<Alarm>,
    /// `PARK_AFTER` past the start of the head (or its deadline, if sooner).
    park_at: Instant,
    deadline: Instant,
    lingered: bool,
    idle: Arc<Idle>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(alarm) = &mut this.alarm else {
            return Poll::Pending;
        };
        loop {
            std::task::ready!(alarm.sleep.as_mut().poll(cx));
            if !this.lingered {
                if alarm.armed < this.park_at {
                    // Fired for an earlier head.
                    alarm.arm(this.park_at);
                    continue;
                }
                // Hyper goes on waiting (and is parked by `serve_http1` right after this poll).
                this.lingered = true;
                this.idle.head().lingered = true;
            }
            if alarm.armed >= this.deadline {
                return Poll::Ready(());
            }
            alarm.arm(this.deadline);
        }
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        let mut head = self.idle.head();
        head.waiting -= 1;
        head.spare = self.alarm.take();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use std::net::SocketAddr;

    use arc_swap::ArcSwap;
    use tokio::net::TcpListener;

    use super::*;
    use crate::app::App;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::server::serve;

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
            None,
        )));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let done = tokio::spawn(serve(
            app,
            metrics,
            listener,
            crate::server::Front::Plain(Default::default()),
            stop.clone().cancelled_owned(),
        ));
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
