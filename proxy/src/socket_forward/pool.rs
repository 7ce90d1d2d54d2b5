//! Keep-alive connections to socket backends, one idle stack per node.
//!
//! Backends in the seed's style close the connection after every reply. Such a connection is found dead
//! (end of stream) when it is taken from the pool, before anything is sent on it; the node is then
//! remembered as one that closes, and for a while its connections are not kept, so a request is rarely
//! written into a connection the backend is about to close. Only a connection that served exactly one
//! exchange counts as evidence: a long-lived connection found dead means an idle timeout or a restart.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use modproxy_sdk::LengthLineCodec;

use crate::balancer::per_node::PerNode;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Most idle connections kept per node; more are closed on return. `module_http`'s pool keeps the same.
pub(crate) const MAX_IDLE_PER_NODE: usize = 256;

/// How long a node that closes after each reply goes unpooled before pooling is tried again.
const CLOSER_MEMORY: Duration = Duration::from_secs(30);

/// A framed connection to one backend node.
#[derive(Debug)]
pub struct Connection {
    /// The framed stream.
    pub framed: Framed<TcpStream, LengthLineCodec>,
    /// Complete request/reply exchanges it has carried.
    pub exchanges: u32,
}

impl Connection {
    /// Whether this connection came from the pool (it has carried an exchange before).
    pub fn is_reused(&self) -> bool {
        self.exchanges > 0
    }

    /// Whether not one byte of a reply has arrived since the last complete exchange.
    pub fn nothing_received(&self) -> bool {
        self.framed.read_buffer().is_empty() && !self.framed.codec().is_mid_frame()
    }
}

/// The idle connections of one module's nodes.
#[derive(Debug)]
pub struct SocketPool {
    nodes: PerNode<NodePool>,
    keepalive: bool,
    max_frame: usize,
    connect_timeout: Duration,
    /// Kept connections found closed by their backend ([`Self::closed_by_backend`]).
    closed_by_backend: AtomicU64,
}

#[derive(Debug, Default)]
struct NodePool {
    idle: Mutex<Vec<Connection>>,
    /// When the node was last seen closing a connection after its first reply.
    closer_seen: Mutex<Option<Instant>>,
}

impl SocketPool {
    /// A pool for a module's nodes, each given its stack on first use.
    pub fn new(keepalive: bool, max_frame: usize, connect_timeout: Duration) -> Self {
        SocketPool {
            nodes: PerNode::new(|_| NodePool::default()),
            keepalive,
            max_frame,
            connect_timeout,
            closed_by_backend: AtomicU64::new(0),
        }
    }

    /// How many kept connections have been found closed by their backend: a count that moves when a
    /// backend may have restarted.
    pub fn closed_by_backend(&self) -> u64 {
        self.closed_by_backend.load(Ordering::Relaxed)
    }

    /// A live idle connection to node `index`, or a new one to `addr`.
    pub async fn get(&self, index: usize, addr: &str) -> io::Result<Connection> {
        if let Some(connection) = self.take_idle(index) {
            return Ok(connection);
        }
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(Connection {
            framed: Framed::new(stream, LengthLineCodec::new(self.max_frame)),
            exchanges: 0,
        })
    }

    /// Returns a connection after a complete exchange.
    pub fn put(&self, index: usize, mut connection: Connection) {
        connection.exchanges = connection.exchanges.saturating_add(1);
        let node = self.nodes.get(index);
        if !self.keepalive || node.recently_closed_after_reply() {
            return;
        }
        let mut idle = node.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE_PER_NODE {
            idle.push(connection);
        }
    }

    /// Number of idle connections held for node `index`.
    pub fn idle_count(&self, index: usize) -> usize {
        self.nodes.get(index).idle.lock().expect("pool lock").len()
    }

    /// Drops every idle connection to node `index` (after it failed, they are suspect; after it left the
    /// module's set, nothing will take them).
    pub fn clear(&self, index: usize) {
        self.nodes.get(index).idle.lock().expect("pool lock").clear();
    }

    fn take_idle(&self, index: usize) -> Option<Connection> {
        let node = self.nodes.get(index);
        loop {
            let connection = node.idle.lock().expect("pool lock").pop()?;
            let state = liveness(&connection);
            if matches!(state, Liveness::Closed) {
                self.closed_by_backend.fetch_add(1, Ordering::Relaxed);
            }
            match state {
                Liveness::Open => return Some(connection),
                Liveness::Closed if connection.exchanges == 1 => {
                    tracing::debug!(
                        node = index,
                        "backend closes after each reply; not pooling its connections"
                    );
                    *node.closer_seen.lock().expect("pool lock") = Some(Instant::now());
                    node.idle.lock().expect("pool lock").clear();
                }
                Liveness::Closed => tracing::debug!(node = index, "idle connection closed by the backend"),
                Liveness::Unexpected => tracing::warn!(node = index, "backend sent bytes nobody asked for; dropped"),
            }
        }
    }
}

impl NodePool {
    fn recently_closed_after_reply(&self) -> bool {
        let mut seen = self.closer_seen.lock().expect("pool lock");
        match *seen {
            Some(at) if at.elapsed() < CLOSER_MEMORY => true,
            Some(_) => {
                // Long enough: try pooling again, in case the backend changed.
                *seen = None;
                false
            }
            None => false,
        }
    }
}

enum Liveness {
    Open,
    Closed,
    Unexpected,
}

/// Checks an idle connection without blocking: nothing to read means it is still open.
fn liveness(connection: &Connection) -> Liveness {
    if !connection.framed.read_buffer().is_empty() {
        return Liveness::Unexpected;
    }
    let mut probe = [0u8; 1];
    match connection.framed.get_ref().try_read(&mut probe) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Liveness::Open,
        Ok(0) | Err(_) => Liveness::Closed,
        Ok(_) => Liveness::Unexpected,
    }
}
