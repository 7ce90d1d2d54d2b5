//! HTTP/2 (and connections that might be): hyper-util's auto builder, with an idle bound, since HTTP/2 has
//! no header-read timer.

use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::file_sending::{FileSending, SendsFiles};
use crate::activity::Activity;
use crate::body::Body;
use crate::observed_io::{IoObserver, ObservedIo, Polled};
use crate::send_timeout::SendTimeout;

/// Serves a connection whose protocol hyper-util's auto builder decides: HTTP/2, or HTTP/1 whose first
/// bytes could not rule HTTP/2 out. HTTP/2 has no header-read timer, so without a bound an idle client
/// would hold its connection slot for ever: a connection with no request being handled that moves no
/// byte either way for `idle_after` is shut down gracefully (the client is told to go away), and dropped
/// if it stays quiet for `idle_after` more (a client that never acknowledges the goodbye).
pub(super) async fn serve_auto<T, S>(
    stream: T,
    service: S,
    http: &auto::Builder<TokioExecutor>,
    idle_after: Duration,
    send_timeout: Duration,
    stopping: &CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    T: AsyncRead + AsyncWrite + SendsFiles + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = hyper::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let watch = Arc::new(Watch::default());
    let io = TokioIo::new(ObservedIo::observing(
        // No slot: HTTP/2 (and hyper-util's HTTP/1) may copy body buffers, so no placeholder is made
        // here, and one that came anyway ends the connection.
        SendTimeout::new(FileSending::refusing(stream), send_timeout),
        Arc::clone(&watch),
    ));
    let counted = {
        let watch = Arc::clone(&watch);
        service_fn(move |request| {
            let handling = Handling::new(&watch);
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
        tokio::select! {
            done = connection.as_mut() => return done,
            () = &mut stop, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = watch.activity.idle_for(idle_after) => {
                if watch.handling.load(Ordering::Relaxed) > 0 {
                    // A request in hand counts as activity: look again `idle_after` from now.
                    watch.activity.touch();
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

/// A connection's activity, and how many of its requests are being handled.
#[derive(Default)]
struct Watch {
    activity: Activity,
    handling: AtomicUsize,
}

/// Counts a request as being handled until dropped; its end counts as activity.
struct Handling(Arc<Watch>);

impl Handling {
    fn new(watch: &Arc<Watch>) -> Self {
        watch.handling.fetch_add(1, Ordering::Relaxed);
        Handling(Arc::clone(watch))
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        self.0.activity.touch();
    }
}

/// A socket's reads and writes note when it last moved a byte: completing one, whatever its outcome,
/// counts as activity.
impl IoObserver for Arc<Watch> {
    fn poll_read<S: AsyncRead + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Polled {
        let read = Pin::new(io).poll_read(cx, buf);
        if read.is_ready() {
            self.activity.touch();
        }
        read
    }

    fn written(&mut self, _cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
        if written.is_ready() {
            self.activity.touch();
        }
        written
    }
}
