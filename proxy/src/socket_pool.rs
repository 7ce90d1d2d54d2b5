//! Keep-alive connections to socket backends, one idle stack per node.
//!
//! Backends in the seed's style close the connection after every reply. Such a connection is found dead
//! (end of stream) when it is taken from the pool, before anything is sent on it; the node is then
//! remembered as one that closes, and its connections are no longer kept, so a request is never written
//! into a connection the backend is about to close.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use modproxy_sdk::LengthLineCodec;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// A framed connection to one backend node.
pub type Connection = Framed<TcpStream, LengthLineCodec>;

/// Most idle connections kept per node; more are closed on return.
const MAX_IDLE_PER_NODE: usize = 256;

/// The idle connections of one module's nodes.
#[derive(Debug)]
pub struct SocketPool {
    nodes: Vec<NodePool>,
    keepalive: bool,
    max_frame: usize,
    connect_timeout: Duration,
}

#[derive(Debug, Default)]
struct NodePool {
    idle: Mutex<Vec<Connection>>,
    closes_after_reply: AtomicBool,
}

/// How a connection was obtained, which decides what a failure on it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Opened for this request.
    Fresh,
    /// Taken from the pool.
    Reused,
}

impl SocketPool {
    /// A pool for `node_count` nodes.
    pub fn new(node_count: usize, keepalive: bool, max_frame: usize, connect_timeout: Duration) -> Self {
        SocketPool {
            nodes: (0..node_count).map(|_| NodePool::default()).collect(),
            keepalive,
            max_frame,
            connect_timeout,
        }
    }

    /// A live idle connection to node `index`, or a new one to `addr`.
    pub async fn get(&self, index: usize, addr: &str) -> io::Result<(Connection, Origin)> {
        if let Some(connection) = self.take_idle(index) {
            return Ok((connection, Origin::Reused));
        }
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok((Framed::new(stream, LengthLineCodec::new(self.max_frame)), Origin::Fresh))
    }

    /// Returns a connection after a complete exchange.
    pub fn put(&self, index: usize, connection: Connection) {
        let node = &self.nodes[index];
        if !self.keepalive || node.closes_after_reply.load(Ordering::Relaxed) {
            return;
        }
        let mut idle = node.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE_PER_NODE {
            idle.push(connection);
        }
    }

    /// Number of idle connections held for node `index`.
    pub fn idle_count(&self, index: usize) -> usize {
        self.nodes[index].idle.lock().expect("pool lock").len()
    }

    /// Drops every idle connection to node `index` (after it failed, they are suspect).
    pub fn clear(&self, index: usize) {
        self.nodes[index].idle.lock().expect("pool lock").clear();
    }

    fn take_idle(&self, index: usize) -> Option<Connection> {
        let node = &self.nodes[index];
        loop {
            let connection = node.idle.lock().expect("pool lock").pop()?;
            match liveness(&connection) {
                Liveness::Open => return Some(connection),
                Liveness::Closed => {
                    tracing::debug!(
                        node = index,
                        "backend closes after each reply; not keeping its connections"
                    );
                    node.closes_after_reply.store(true, Ordering::Relaxed);
                    node.idle.lock().expect("pool lock").clear();
                }
                Liveness::Unexpected => tracing::warn!(node = index, "backend sent bytes nobody asked for; dropped"),
            }
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
    if !connection.read_buffer().is_empty() {
        return Liveness::Unexpected;
    }
    let mut probe = [0u8; 1];
    match connection.get_ref().try_read(&mut probe) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Liveness::Open,
        Ok(0) | Err(_) => Liveness::Closed,
        Ok(_) => Liveness::Unexpected,
    }
}
