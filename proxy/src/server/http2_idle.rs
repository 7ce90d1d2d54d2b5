//! HTTP/2 (and connections that might be): hyper-util's auto builder, with an idle bound, since HTTP/2 has
//! no header-read timer.

use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::rt::ReadBufCursor;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::body::Body;

/// Serves a connection whose protocol hyper-util's auto builder decides: HTTP/2, or HTTP/1 whose first
/// bytes could not rule HTTP/2 out. HTTP/2 has no header-read timer, so without a bound an idle client
/// would hold its connection slot for ever: a connection with no request being handled that moves no
/// byte either way for `idle_after` is shut down gracefully (the client is told to go away), and dropped
/// if it stays quiet for `idle_after` more (a client that never acknowledges the goodbye).
pub(super) async fn serve_auto<S>(
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
