//! [`Server`]: accepts connections and answers each frame through a [`Backend`].
//!
//! Every connection runs in its own task and carries any number of request/reply pairs in sequence, so a
//! slow handler holds up only its own connection. A frame that breaks the protocol gets a `bad_request`
//! reply and ends that connection only.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::time::error::Elapsed;
use tokio::time::Instant;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::codec::LengthLineCodec;
use crate::dispatch::{dispatch, Backend};
use crate::error::MethodError;
use crate::frame::{FrameError, DEFAULT_MAX_FRAME};

/// How long a connection may sit idle between frames before the server closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long graceful shutdown waits for in-flight requests before giving up on them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound listener and its settings. Build with [`Server::bind`], then [`Server::serve`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    max_frame: usize,
    idle_timeout: Duration,
    shutdown_grace: Duration,
}

impl Server {
    /// Binds a listener. Binding is separate from serving so that callers learn the address (and any
    /// bind error) before the first connection.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Ok(Server::from_listener(TcpListener::bind(addr).await?))
    }

    /// Wraps a listener that is already bound.
    pub fn from_listener(listener: TcpListener) -> Server {
        Server {
            listener,
            max_frame: DEFAULT_MAX_FRAME,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Largest request payload accepted; a larger one gets a `bad_request` reply and the connection closes.
    pub fn max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// How long a connection may wait for its next request, and how long a reply may wait for the peer
    /// to read it (a peer that sends but never reads would otherwise hold its connection forever).
    pub fn idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// How long shutdown waits for requests in flight.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully.
    pub async fn serve<B: Backend>(self, backend: B) -> io::Result<()> {
        self.serve_with_shutdown(backend, shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then stops accepting, lets each connection finish the request it
    /// is answering (up to the shutdown grace), and returns.
    pub async fn serve_with_shutdown<B: Backend>(
        self,
        backend: B,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let backend = Arc::new(backend);
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let addr = self.local_addr()?;
        tracing::info!(%addr, "backend listening");
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let connection = Connection {
                backend: Arc::clone(&backend),
                codec: LengthLineCodec::new(self.max_frame),
                idle_timeout: self.idle_timeout,
                stop: stop.clone(),
            };
            tracker.spawn(connection.run(stream, peer));
        }
        drop(self.listener);
        stop.cancel();
        tracker.close();
        if tokio::time::timeout(self.shutdown_grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                open = tracker.len(),
                "shutdown grace elapsed with requests still in flight"
            );
        }
        tracing::info!(%addr, "backend stopped");
        Ok(())
    }
}

/// Binds `addr` and serves `backend` until Ctrl-C or SIGTERM.
pub async fn serve<B: Backend>(addr: impl ToSocketAddrs, backend: B) -> io::Result<()> {
    Server::bind(addr).await?.serve(backend).await
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

struct Connection<B> {
    backend: Arc<B>,
    codec: LengthLineCodec,
    idle_timeout: Duration,
    stop: CancellationToken,
}

impl<B: Backend> Connection<B> {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, self.codec);
        // One cancellation waiter and one idle timer for the connection's whole life rather than one of each
        // per request: arming either takes a shared lock (the token's waiter list, the timer wheel). The
        // timer is moved only when it fires while the connection was active since it was set.
        let stopped = self.stop.cancelled();
        tokio::pin!(stopped);
        let mut active = Instant::now();
        let idle = tokio::time::sleep_until(active + self.idle_timeout);
        tokio::pin!(idle);
        loop {
            let next = tokio::select! {
                () = &mut stopped => break,
                next = framed.next() => next,
                () = &mut idle => {
                    let deadline = active + self.idle_timeout;
                    if Instant::now() >= deadline {
                        tracing::debug!(%peer, "idle connection closed");
                        break;
                    }
                    idle.as_mut().reset(deadline);
                    continue;
                }
            };
            let payload = match next {
                None => break,
                Some(Ok(payload)) => payload,
                Some(Err(FrameError::Io(error))) => {
                    tracing::debug!(%peer, %error, "connection failed");
                    break;
                }
                Some(Err(error)) => {
                    tracing::warn!(%peer, %error, "bad frame; closing the connection");
                    let reply = MethodError::bad_request(format!("bad frame: {error}")).to_reply();
                    let _ = tokio::time::timeout(self.idle_timeout, framed.send(reply)).await;
                    break;
                }
            };
            let reply = dispatch(&*self.backend, &payload).await;
            match send_within(&mut framed, reply, self.idle_timeout).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "could not send reply");
                    break;
                }
                Err(_) => {
                    tracing::debug!(%peer, "peer stopped reading replies; closing the connection");
                    break;
                }
            }
            active = Instant::now();
        }
    }
}

/// Sends a reply, giving a peer that does not read at most `limit`. The timer is armed only when the write
/// cannot complete at once; usually the socket takes the reply straight away.
async fn send_within(
    framed: &mut Framed<TcpStream, LengthLineCodec>,
    reply: Vec<u8>,
    limit: Duration,
) -> Result<Result<(), FrameError>, Elapsed> {
    let mut send = framed.send(reply);
    if let Some(sent) = (&mut send).now_or_never() {
        return Ok(sent);
    }
    tokio::time::timeout(limit, send).await
}
