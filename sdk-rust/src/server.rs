//! [`Server`]: accepts connections and answers each frame through a [`Backend`].
//!
//! Every connection runs in its own task and carries any number of request/reply pairs, so a slow handler
//! holds up only its own connection. A peer may also send frames before the replies to earlier ones have
//! come (the proxy's `pipeline`): up to [`MAX_PIPELINED`] of them are answered concurrently. A peer whose
//! first frame is `_pipeline` gets `{"pipeline":1}`, and then every reply in the sequenced envelope
//! `{"seq":S,"reply":R}` ([`crate::pipeline`]), written as soon as it is ready: the seq says which request
//! it answers, so one slow handler holds up no other reply. Other connections get bare replies, in the
//! order their requests arrived, which is how such a peer matches them. A frame that breaks the protocol gets a
//! `bad_request` reply, after the replies owed before it, and ends that connection only.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::stream::{FuturesOrdered, FuturesUnordered};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::time::Instant;
use tokio_util::codec::{Encoder, Framed};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use crate::codec::LengthLineCodec;
use crate::dispatch::{dispatch, Backend};
use crate::error::MethodError;
use crate::frame::{FrameError, DEFAULT_MAX_FRAME};
use crate::pipeline::{self, Sequenced, PIPELINE_ACCEPTED};

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
    #[cfg(feature = "etcd")]
    registration: Option<crate::registration::Registration>,
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
            #[cfg(feature = "etcd")]
            registration: None,
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

    /// Registers this server in etcd while it serves: from when it listens until its shutdown begins
    /// (the lease is revoked before in-flight requests drain, so the proxy stops sending new ones).
    #[cfg(feature = "etcd")]
    pub fn register(mut self, registration: crate::registration::Registration) -> Self {
        self.registration = Some(registration);
        self
    }

    /// Serves until Ctrl-C or SIGTERM, then shuts down gracefully. A second Ctrl-C or SIGTERM during the
    /// shutdown (a terminal's Ctrl-C, then a supervisor's kill) stops at once, without waiting for the
    /// requests in flight.
    pub async fn serve<B: Backend>(self, backend: B) -> io::Result<()> {
        // `shutdown_signal` listens only once polled, so the second listens only once the first has fired.
        self.serve_until(backend, shutdown_signal(), shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then stops accepting, lets each connection finish the request it
    /// is answering (up to the shutdown grace), and returns.
    pub async fn serve_with_shutdown<B: Backend>(
        self,
        backend: B,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        self.serve_until(backend, shutdown, std::future::pending()).await
    }

    /// Like [`Server::serve_with_shutdown`], and if `now` completes during the shutdown grace, returns at
    /// once: the requests still in flight get no reply. `now` is first polled when the shutdown begins.
    pub async fn serve_until<B: Backend>(
        #[allow(unused_mut)] mut self,
        backend: B,
        shutdown: impl Future<Output = ()>,
        now: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let backend = Arc::new(backend);
        let stop = Stop::default();
        let tracker = TaskTracker::new();
        let addr = self.local_addr()?;
        tracing::info!(%addr, "backend listening");
        #[cfg(feature = "etcd")]
        let registered = self.start_registration(addr)?;
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
        #[cfg(feature = "etcd")]
        if let Some(registered) = registered {
            registered.revoke().await;
        }
        stop.begin();
        tracker.close();
        tokio::select! {
            finished = tokio::time::timeout(self.shutdown_grace, tracker.wait()) => if finished.is_err() {
                tracing::warn!(
                    open = tracker.len(),
                    "shutdown grace elapsed with requests still in flight"
                );
            },
            () = now => tracing::info!(open = tracker.len(), "stopped at once, not waiting for requests in flight"),
        }
        tracing::info!(%addr, "backend stopped");
        Ok(())
    }
}

#[cfg(feature = "etcd")]
impl Server {
    fn start_registration(&mut self, local: SocketAddr) -> io::Result<Option<crate::registration::Registered>> {
        let Some(registration) = self.registration.take() else {
            return Ok(None);
        };
        let address = registration.address_for(local).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("registration: the server listens on {local}; set the address to advertise"),
            )
        })?;
        let registered = registration
            .start(address)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Some(registered))
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

/// Most requests of one connection answered at once; further frames wait in the socket until one is done.
pub const MAX_PIPELINED: usize = 64;

struct Connection<B> {
    backend: Arc<B>,
    codec: LengthLineCodec,
    idle_timeout: Duration,
    stop: Stop,
}

/// The server's shutdown as its connections see it. A connection waits on it between requests, and reads the
/// flag there instead of polling the token: the token's `is_cancelled` and its waiter list each take a lock
/// that every connection shares, once per request.
#[derive(Clone, Default)]
struct Stop {
    token: CancellationToken,
    /// Set before the token is cancelled, so a task the token wakes finds it set.
    begun: Arc<AtomicBool>,
}

impl Stop {
    fn begin(&self) {
        self.begun.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Ready once shutdown has begun. `cancelled` (this token's, pinned for the connection's life) is polled
    /// only to hand it a waker it does not hold yet; it keeps that waker registered until the token is
    /// cancelled, which then wakes the task.
    fn poll(
        &self,
        cancelled: Pin<&mut WaitForCancellationFuture<'_>>,
        registered: &mut Option<Waker>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        if self.begun.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if registered.as_ref().is_some_and(|waker| waker.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        let polled = cancelled.poll(cx);
        if polled.is_pending() {
            *registered = Some(cx.waker().clone());
        }
        polled
    }
}

/// How a connection writes its replies: bare in request order, or (after `_pipeline`) each in the envelope
/// numbered by its request, in the order they complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replies {
    Bare,
    Sequenced,
}

/// A reply and the number of the request it answers (counted after `_pipeline`; unused on bare connections).
type Numbered = (u64, Vec<u8>);

/// What the connection loop waits for.
enum Event {
    Frame(Option<Result<Bytes, FrameError>>),
    /// The reply to the request answered in place.
    Solo(Numbered),
    /// A reply from the requests queued behind it: the next in order (bare), or the next done (sequenced).
    Reply(Numbered),
    Stop,
    Idle,
}

impl<B: Backend> Connection<B> {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, self.codec);
        let backend = &*self.backend;
        let answer = |seq: u64, payload: Bytes| async move { (seq, dispatch(backend, &payload).await) };
        // A request that arrives with none other in hand (a peer that waits for each reply) is answered in
        // place here, sparing it the queue's allocation and wake-up indirection.
        let mut solo = std::pin::pin!(nothing_from(&answer));
        // A peer may send frames before their replies arrive (the proxy's `pipeline`). They are answered
        // concurrently. On a bare connection they are replied to in the order they came, which is how the
        // peer matches them: those behind `solo` wait in `answering`, and their replies wait in `held` until
        // `solo`'s reply is out. On a sequenced one each reply goes out when it is done (`racing`).
        let mut answering = FuturesOrdered::new();
        let mut held = VecDeque::new();
        let mut racing = FuturesUnordered::new();
        // Only the first frame may ask for sequenced replies: later, replies would already be owed bare.
        let mut first_frame = true;
        let mut replies = Replies::Bare;
        // The number of the last request read since `_pipeline`: a request is numbered as it arrives.
        let mut last_seq: u64 = 0;
        // Set once no more frames are read (end of stream, a bad frame, shutdown): the requests in hand are
        // still answered, then the connection closes, after `farewell` if a bad frame needs an answer.
        let mut reading = true;
        let mut farewell = None;
        // Replies are buffered while more work is ready, and written together when nothing is: one write for
        // all the replies to frames that arrived in one read.
        let mut unflushed = false;
        // One cancellation waiter and one idle timer for the connection's whole life rather than one of each
        // per request: arming either takes a shared lock (the token's waiter list, the timer wheel). The
        // timer is moved only when it fires while the connection was active since it was set.
        let stopped = self.stop.token.cancelled();
        tokio::pin!(stopped);
        let mut stop_waker = None;
        let mut active = Instant::now();
        let idle = tokio::time::sleep_until(active + self.idle_timeout);
        tokio::pin!(idle);
        loop {
            let solo_busy = solo.is_some();
            let in_hand = usize::from(solo_busy) + answering.len() + held.len() + racing.len();
            // With replies unflushed the loop only looks for work that is ready now, so the shutdown and
            // idle timer, which cost a lock to poll, are left out until it waits.
            let waiting = !unflushed;
            let next = async {
                tokio::select! {
                    biased;
                    reply = poll_fn(|cx| match solo.as_mut().as_pin_mut() {
                        Some(answer) => answer.poll(cx),
                        None => Poll::Pending,
                    }), if solo_busy => Some(Event::Solo(reply)),
                    Some(reply) = answering.next(), if !answering.is_empty() => Some(Event::Reply(reply)),
                    Some(reply) = racing.next(), if !racing.is_empty() => Some(Event::Reply(reply)),
                    () = poll_fn(|cx| self.stop.poll(stopped.as_mut(), &mut stop_waker, cx)), if reading && waiting => {
                        Some(Event::Stop)
                    }
                    next = framed.next(), if reading && in_hand < MAX_PIPELINED => Some(Event::Frame(next)),
                    () = &mut idle, if reading && waiting && in_hand == 0 => Some(Event::Idle),
                    else => None,
                }
            };
            let event = if unflushed {
                match next.now_or_never() {
                    Some(event) => event,
                    None => {
                        if !write_out(&mut framed, self.idle_timeout, peer).await {
                            return;
                        }
                        unflushed = false;
                        continue;
                    }
                }
            } else {
                next.await
            };
            let negotiating = first_frame
                && matches!(&event, Some(Event::Frame(Some(Ok(payload)))) if pipeline::is_negotiation(payload));
            if matches!(event, Some(Event::Frame(_))) {
                first_frame = false;
                // Frames after `_pipeline`, and a bad frame too: its farewell is numbered as its request.
                if !negotiating {
                    last_seq += 1;
                }
            }
            match event {
                None => break,
                Some(Event::Frame(Some(Ok(_)))) if negotiating => {
                    // Nothing else is in hand: this is the connection's first frame.
                    let accepted = [(0, PIPELINE_ACCEPTED.to_vec())];
                    if !queue_replies(&mut framed, replies, accepted, self.idle_timeout, peer).await {
                        return;
                    }
                    replies = Replies::Sequenced;
                    unflushed = true;
                    active = Instant::now();
                }
                Some(Event::Solo(reply)) => {
                    solo.set(None);
                    let ready = std::iter::once(reply).chain(held.drain(..));
                    if !queue_replies(&mut framed, replies, ready, self.idle_timeout, peer).await {
                        return;
                    }
                    unflushed = true;
                    active = Instant::now();
                }
                Some(Event::Reply(reply)) if solo.is_some() && replies == Replies::Bare => held.push_back(reply),
                Some(Event::Reply(reply)) => {
                    if !queue_replies(&mut framed, replies, [reply], self.idle_timeout, peer).await {
                        return;
                    }
                    unflushed = true;
                    active = Instant::now();
                }
                Some(Event::Frame(Some(Ok(payload)))) if solo.is_none() && answering.is_empty() => {
                    solo.set(Some(answer(last_seq, payload)));
                    // Most handlers are done at once. Then the reply goes out without another turn of the
                    // loop, and is written at once unless more frames are already here to join it.
                    let polled = poll_fn(|cx| Poll::Ready(solo.as_mut().as_pin_mut().map(|answer| answer.poll(cx))));
                    if let Some(Poll::Ready(reply)) = polled.await {
                        solo.set(None);
                        if !queue_replies(&mut framed, replies, [reply], self.idle_timeout, peer).await {
                            return;
                        }
                        active = Instant::now();
                        unflushed = !framed.read_buffer().is_empty();
                        if !unflushed && !write_out(&mut framed, self.idle_timeout, peer).await {
                            return;
                        }
                    }
                }
                Some(Event::Frame(Some(Ok(payload)))) if replies == Replies::Bare => {
                    answering.push_back(answer(last_seq, payload))
                }
                Some(Event::Frame(Some(Ok(payload)))) => racing.push(answer(last_seq, payload)),
                Some(Event::Frame(None)) | Some(Event::Stop) => reading = false,
                Some(Event::Frame(Some(Err(FrameError::Io(error))))) => {
                    tracing::debug!(%peer, %error, "connection failed");
                    return;
                }
                Some(Event::Frame(Some(Err(error)))) => {
                    tracing::warn!(%peer, %error, "bad frame; closing the connection");
                    farewell = Some((
                        last_seq,
                        MethodError::bad_request(format!("bad frame: {error}")).to_reply(),
                    ));
                    reading = false;
                }
                Some(Event::Idle) => {
                    let deadline = active + self.idle_timeout;
                    if Instant::now() >= deadline {
                        tracing::debug!(%peer, "idle connection closed");
                        return;
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        }
        if let Some(reply) = farewell {
            // Numbered as the request the bad frame would have been.
            if queue_replies(&mut framed, replies, [reply], self.idle_timeout, peer).await {
                let _ = write_out(&mut framed, self.idle_timeout, peer).await;
            }
        } else if unflushed {
            let _ = write_out(&mut framed, self.idle_timeout, peer).await;
        }
    }
}

/// Buffers replies for the next write: bare, or each in the envelope numbered by its request. They go
/// straight into the write buffer, which is written out early only once it holds `WRITE_HIGH_WATER` bytes
/// (as the sink's `feed` would, without its machinery around each reply).
async fn queue_replies(
    framed: &mut Framed<TcpStream, LengthLineCodec>,
    replies: Replies,
    ready: impl IntoIterator<Item = Numbered>,
    limit: Duration,
    peer: SocketAddr,
) -> bool {
    for (seq, reply) in ready {
        let mut codec = LengthLineCodec::default();
        let buffer = framed.write_buffer_mut();
        let encoded = match replies {
            Replies::Bare => codec.encode(reply, buffer),
            Replies::Sequenced => codec.encode(Sequenced { seq, reply }, buffer),
        };
        if let Err(error) = encoded {
            tracing::debug!(%peer, %error, "could not send reply");
            return false;
        }
        if framed.write_buffer().len() >= WRITE_HIGH_WATER && !write_out(framed, limit, peer).await {
            return false;
        }
    }
    true
}

/// Buffered replies beyond which they are written out before more are added (`Framed`'s own boundary).
const WRITE_HIGH_WATER: usize = 8 * 1024;

/// Writes every buffered reply; whether it succeeded. Usually the socket takes them all at once: one
/// `send`, tried before the sink's flush and its timer. (The sink would write with `writev`, whose VFS path
/// costs the kernel more than `send` for the one slice there is.)
async fn write_out(framed: &mut Framed<TcpStream, LengthLineCodec>, limit: Duration, peer: SocketAddr) -> bool {
    if framed.write_buffer().is_empty() {
        return true;
    }
    match framed.get_ref().try_write(framed.write_buffer()) {
        Ok(written) => framed.write_buffer_mut().advance(written),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
        Err(error) => {
            tracing::debug!(%peer, %error, "could not send reply");
            return false;
        }
    }
    framed.write_buffer().is_empty() || write_within(flush(framed), limit, peer).await
}

/// Writes every buffered reply.
fn flush(framed: &mut Framed<TcpStream, LengthLineCodec>) -> impl Future<Output = Result<(), FrameError>> + '_ {
    SinkExt::<Vec<u8>>::flush(framed)
}

/// An empty slot for what `answer` returns (its type has no name to write).
fn nothing_from<F>(_answer: &impl Fn(u64, Bytes) -> F) -> Option<F> {
    None
}

/// Runs a write, giving a peer that does not read at most `limit`; whether it succeeded. The timer is armed
/// only when the write cannot complete at once; usually the socket takes the bytes straight away.
async fn write_within(write: impl Future<Output = Result<(), FrameError>>, limit: Duration, peer: SocketAddr) -> bool {
    tokio::pin!(write);
    let written = match (&mut write).now_or_never() {
        Some(written) => Ok(written),
        None => tokio::time::timeout(limit, write).await,
    };
    match written {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "could not send reply");
            false
        }
        Err(_) => {
            tracing::debug!(%peer, "peer stopped reading replies; closing the connection");
            false
        }
    }
}
