//! Keep-alive connections to upstream HTTP nodes, one idle stack per node, each connection driven by
//! the request that holds it.
//!
//! hyper's HTTP/1 client connection is a future that must be polled for anything to happen on the
//! socket. Spawned as a task of its own (as a pooled client does), every request would cross tasks
//! twice (the request over a channel to the connection's task, the response back) and pay for the
//! pool's checkout bookkeeping. Here the request's own task polls the connection: while waiting for the
//! response head ([`send`]) and then from the response body ([`UpstreamBody`]), which gives the
//! connection back to its node's idle stack once the body has ended. A connection nobody polls notices
//! nothing, so an idle one is checked before it is reused, and [`Pool::reap`] drops the ones the
//! upstream closed or that sat idle longer than [`POOL_IDLE`].
//!
//! Upgrade requests (WebSocket) take a fresh connection whose future runs as a task of its own, since
//! an upgraded connection outlives the request (see [`Pool::connect_detached`]).
//!
//! Connections to `https://` nodes are TLS (see [`crate::tls::upstream`]) and are pooled the same way.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::unsent_body::UnsentBody;
use crate::balancer::per_node::PerNode;
use crate::balancer::{InFlight, Node};
use crate::body::BoxError;
use crate::socket_forward::pool::MAX_IDLE_PER_NODE;
use crate::tls::upstream::{Connector, UpstreamStream};

/// How long an idle upstream connection is kept for reuse.
pub const POOL_IDLE: Duration = Duration::from_secs(30);

/// How often idle connections are checked for having been closed or having expired.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// The body of a request as an upstream connection sends it.
pub type RequestBody = UnsentBody<super::ClientBody>;

/// Boxed: the connection's state is large, and it moves between the pool, requests and bodies.
type Connection = Pin<Box<http1::Connection<TokioIo<UpstreamStream>, RequestBody>>>;
type Sender = http1::SendRequest<RequestBody>;

/// The idle connections of one module's nodes.
pub struct Pool {
    idle: PerNode<Mutex<Vec<IdleConnection>>>,
    keepalive: bool,
    connect_timeout: Duration,
    connector: Connector,
    builder: http1::Builder,
    reaper_started: AtomicBool,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("nodes", &self.idle.len())
            .field("keepalive", &self.keepalive)
            .finish_non_exhaustive()
    }
}

/// A connection waiting in a node's idle stack, and since when.
struct IdleConnection {
    sender: Sender,
    connection: Connection,
    since: Instant,
}

/// A connection held by one request: its sending half and its future.
pub struct Lease {
    pool: Arc<Pool>,
    node: usize,
    sender: Sender,
    connection: Connection,
    reused: bool,
}

/// Why no response head came back.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("could not connect")]
    Connect(#[source] io::Error),
    #[error("the HTTP/1.1 exchange failed")]
    Http(#[source] hyper::Error),
    /// On a pipelined connection (see [`super::pipeline`]).
    #[error("{0}")]
    Pipelined(String),
}

impl Pool {
    /// A pool for a module's nodes, each given its stack on first use, whose connections `connector` opens.
    pub fn new(keepalive: bool, connect_timeout: Duration, connector: Connector) -> Arc<Pool> {
        Arc::new(Pool {
            idle: PerNode::new(|_| Mutex::new(Vec::new())),
            keepalive,
            connect_timeout,
            connector,
            builder: http1::Builder::new(),
            reaper_started: AtomicBool::new(false),
        })
    }

    /// A live idle connection to node `node` (`index`), or a new one.
    pub async fn get(self: &Arc<Self>, index: usize, node: &Node) -> Result<Lease, io::Error> {
        if let Some(lease) = self.take_idle(index) {
            return Ok(lease);
        }
        // Boxed: connecting is the rare case, and its state would otherwise enlarge every request's future.
        let (sender, connection) = Box::pin(self.connect(node)).await?;
        let node = index;
        Ok(Lease {
            pool: Arc::clone(self),
            node,
            sender,
            connection: Box::pin(connection),
            reused: false,
        })
    }

    /// A new connection to `node` whose future runs as a task of its own, with upgrades enabled.
    pub async fn connect_detached(&self, node: &Node) -> Result<Sender, io::Error> {
        let (sender, connection) = Box::pin(self.connect(node)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn connect(
        &self,
        node: &Node,
    ) -> Result<(Sender, http1::Connection<TokioIo<UpstreamStream>, RequestBody>), io::Error> {
        let stream = self
            .connector
            .connect(node.address(), node.tls_name().as_deref(), self.connect_timeout)
            .await?;
        self.builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)
    }

    fn take_idle(self: &Arc<Self>, node: usize) -> Option<Lease> {
        loop {
            let idle = lock(&self.idle.get(node)).pop()?;
            // Not polled here: the request's first poll of the connection notices a close, and a request
            // a closed connection never took comes back to be sent on another one.
            if idle.since.elapsed() >= POOL_IDLE || !idle.sender.is_ready() {
                continue;
            }
            return Some(Lease {
                pool: Arc::clone(self),
                node,
                sender: idle.sender,
                connection: idle.connection,
                reused: true,
            });
        }
    }

    fn put(self: &Arc<Self>, node: usize, sender: Sender, connection: Connection) {
        if !self.keepalive {
            return;
        }
        let mut idle = IdleConnection {
            sender,
            connection,
            since: Instant::now(),
        };
        // Polled once with a waker that does nothing: the connection finishes its exchange and stops
        // holding the waker of the task that used it.
        if idle.poll_closed() {
            return;
        }
        {
            // After a burst, more than this would only hold sockets on both ends until POOL_IDLE.
            let stack = self.idle.get(node);
            let mut stack = lock(&stack);
            if stack.len() >= MAX_IDLE_PER_NODE {
                return;
            }
            stack.push(idle);
        }
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(reap(Arc::downgrade(self)));
            }
        }
    }

    /// Number of idle connections held for node `node`.
    pub fn idle_count(&self, node: usize) -> usize {
        lock(&self.idle.get(node)).len()
    }

    /// Drops the idle connections to node `node` (it left the module's set).
    pub fn clear(&self, node: usize) {
        lock(&self.idle.get(node)).clear();
    }

    /// Drops the idle connections that expired or that the upstream closed.
    fn reap(&self) {
        for idle in self.idle.all() {
            lock(&idle).retain_mut(|idle| idle.since.elapsed() < POOL_IDLE && idle.is_usable());
        }
    }
}

/// Checks the pool's idle connections every [`REAP_EVERY`] for as long as the pool exists.
async fn reap(pool: Weak<Pool>) {
    let mut every = tokio::time::interval(REAP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.reap();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl IdleConnection {
    /// Whether the connection is open and ready for a request.
    fn is_usable(&mut self) -> bool {
        !self.poll_closed() && self.sender.is_ready()
    }

    /// Polls the connection without a waker; true once it has ended (closed by the upstream, or failed).
    fn poll_closed(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.connection.as_mut().poll(&mut cx).is_ready()
    }
}

impl Lease {
    /// Whether the connection served a request before.
    pub fn is_reused(&self) -> bool {
        self.reused
    }
}

/// Sends `request` on `lease` and drives the connection until the response head is in. The lease
/// comes back with the response unless the connection ended. If the request could not be sent at all
/// (the connection was closed before it took the request), the error carries it back.
pub async fn send(
    lease: Lease,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Option<Lease>), (hyper::Error, Option<Request<RequestBody>>)> {
    let Lease {
        pool,
        node,
        mut sender,
        connection,
        reused,
    } = lease;
    let response = sender.try_send_request(request);
    let mut response = std::pin::pin!(response);
    let mut connection = Some(connection);
    let outcome = poll_fn(|cx| {
        if let Some(running) = &mut connection {
            if running.as_mut().poll(cx).is_ready() {
                // Ended (the outcome went to the response) or failed; dropping it hands back a request
                // it never took.
                connection = None;
            }
        }
        if connection.is_some() {
            // Only the connection, polled just above with this task's waker, completes the response:
            // its own wake-up would only poll this task once more for nothing.
            response.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        } else {
            response.as_mut().poll(cx)
        }
    })
    .await;
    match outcome {
        Ok(response) => Ok((
            response,
            connection.map(|connection| Lease {
                pool,
                node,
                sender,
                connection,
                reused,
            }),
        )),
        Err(mut error) => {
            let request = error.take_message();
            Err((error.into_error(), request))
        }
    }
}

/// An upstream response body. It drives the connection it arrives on, gives the connection back to the
/// pool once it has ended, and holds the node's in-flight count until then or until it is dropped.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
    _in_flight: InFlight,
}

impl UpstreamBody {
    /// `body`, arriving on `lease` (if its connection is driven by the request).
    pub fn new(body: Incoming, lease: Option<Lease>, in_flight: InFlight) -> Self {
        UpstreamBody {
            body,
            lease,
            _in_flight: in_flight,
        }
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.pool.put(lease.node, lease.sender, lease.connection);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(lease) = &mut this.lease {
            if lease.connection.as_mut().poll(cx).is_ready() {
                // The body has its end or its error already.
                this.lease = None;
            }
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        polled.map(|frame| frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Done (the server stops polling a body that says it has ended): the connection is reusable.
        // Not done: the rest of the body is still on the connection, which closes with it.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::{Balancer, SystemClock};
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;
    use tokio::net::{TcpListener, TcpStream};

    /// An upstream answering `hello` to every request; it counts connections and can close them all.
    struct Upstream {
        url: String,
        connections: Arc<AtomicUsize>,
        close: tokio::sync::watch::Sender<bool>,
    }

    async fn upstream() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let (close, closed) = tokio::sync::watch::channel(false);
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                let mut closed = closed.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(|_| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello")))) });
                    let connection =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = closed.wait_for(|&c| c) => {}
                    }
                });
            }
        });
        Upstream {
            url,
            connections,
            close,
        }
    }

    /// A client body as the forward makes one, with room to spare.
    fn timed(body: Incoming) -> super::super::ClientBody {
        let forever = Duration::from_secs(60);
        http_body_util::Limited::new(crate::request_body::TimedBody::new(body, forever, forever), 1024)
    }

    fn request(slot: &super::super::unsent_body::BodySlot<super::super::ClientBody>) -> Request<RequestBody> {
        let mut request = Request::new(slot.attempt());
        request
            .headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("upstream"));
        request
    }

    /// One exchange over `pool` to node 0; the body is read to its end, as the server would.
    /// A pool for `up` alone, and the balancer that [`exchange`] reports to.
    fn pool_for(up: &Upstream, keepalive: bool) -> (Balancer, Arc<Pool>) {
        let nodes = vec![Node::new(&up.url, 1)];
        let balancer = Balancer::new(nodes, Duration::from_secs(1), Arc::new(SystemClock::default()));
        (
            balancer,
            Pool::new(keepalive, Duration::from_secs(1), Connector::plain()),
        )
    }

    async fn exchange(pool: &Arc<Pool>, balancer: &Balancer, body: Incoming) -> (bool, Bytes) {
        let lease = pool.get(0, &balancer.node(0)).await.unwrap();
        let reused = lease.is_reused();
        let slot = super::super::unsent_body::BodySlot::new(timed(body));
        let (response, lease) = send(lease, request(&slot)).await.map_err(|(e, _)| e).unwrap();
        let body = UpstreamBody::new(response.into_body(), lease, balancer.track(0));
        (reused, body.collect().await.unwrap().to_bytes())
    }

    /// An empty request body, as hyper's server hands one over.
    async fn empty_body() -> Incoming {
        // An `Incoming` only comes from hyper: here, the empty body of a 204 from a throwaway server.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(|_| async {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = http::StatusCode::NO_CONTENT;
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .header(http::header::HOST, "x")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(request).await.unwrap().into_body()
    }

    #[tokio::test]
    async fn connections_are_reused_then_reaped_once_closed() {
        let up = upstream().await;
        let (balancer, pool) = pool_for(&up, true);

        for round in 0..3 {
            let (reused, body) = exchange(&pool, &balancer, empty_body().await).await;
            assert_eq!(body, "hello");
            assert_eq!(reused, round > 0, "round {round}");
            assert_eq!(pool.idle_count(0), 1, "the connection went back to the pool");
        }
        assert_eq!(up.connections.load(Ordering::SeqCst), 1);

        // The upstream closes its idle connections: the reaper drops them.
        up.close.send(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.idle_count(0) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(pool.idle_count(0), 0, "a closed idle connection is dropped");
    }

    #[tokio::test]
    async fn a_request_a_closed_connection_never_took_comes_back() {
        let up = upstream().await;
        let (balancer, pool) = pool_for(&up, true);
        exchange(&pool, &balancer, empty_body().await).await;
        assert_eq!(pool.idle_count(0), 1);

        // Closed by the upstream, and taken from the pool before the reaper saw it.
        up.close.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lease = pool.take_idle(0).expect("still pooled: nothing polled it");
        let slot = super::super::unsent_body::BodySlot::new(timed(empty_body().await));
        let (_, unsent) = send(lease, request(&slot))
            .await
            .err()
            .expect("the connection is closed");
        assert!(unsent.is_some(), "the request comes back unsent");
        assert!(!slot.is_taken());
    }

    #[tokio::test]
    async fn idle_connections_are_capped_per_node() {
        let up = upstream().await;
        let pool = Pool::new(true, Duration::from_secs(1), Connector::plain());
        let node = Node::new(&up.url, 1);
        let mut leases = Vec::new();
        for _ in 0..MAX_IDLE_PER_NODE + 5 {
            leases.push(pool.get(0, &node).await.unwrap());
        }
        for lease in leases {
            pool.put(lease.node, lease.sender, lease.connection);
        }
        assert_eq!(pool.idle_count(0), MAX_IDLE_PER_NODE);
    }

    #[tokio::test]
    async fn without_keepalive_nothing_is_pooled() {
        let up = upstream().await;
        let (balancer, pool) = pool_for(&up, false);
        for _ in 0..2 {
            let (reused, body) = exchange(&pool, &balancer, empty_body().await).await;
            assert_eq!((reused, body), (false, Bytes::from("hello")));
        }
        assert_eq!(pool.idle_count(0), 0);
        assert_eq!(up.connections.load(Ordering::SeqCst), 2);
    }
}
