//! `[[stream]]`: TCP forwarding. Each connection to a stream's `listen` address is joined, bytes unchanged,
//! to one node chosen by the shared [`Balancer`].
//!
//! Only a failed connect masks a node and moves the client on to the next one: nothing has been sent yet,
//! so that is always safe. Once joined, a reset on either side ends the connection and is not the node's
//! fault (a database may close an idle session). Half-close is forwarded: one side's end of stream
//! becomes a write shutdown on the other, and the other direction keeps flowing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activity::{Activity, Touching};
use crate::balancer::attempts::{self, Attempt, Event, Miss};
use crate::balancer::{Balancer, Node, SystemClock};
use crate::config::StreamConfig;
use crate::metrics::{Metrics, StreamMetrics};

/// How long shutdown waits for forwarded connections to end by themselves.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Copy buffer per direction: large enough that a bulk transfer is not syscall-bound.
const COPY_BUFFER: usize = 64 * 1024;

/// A stream listener that could not be bound; names the `[[stream]]` it belongs to.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ([[stream]] listen = \"{addr}\"): {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: io::Error,
}

/// A `[[stream]]` whose port is bound, ready to serve.
#[derive(Debug)]
pub struct StreamListener {
    config: StreamConfig,
    listener: TcpListener,
}

/// Binds every stream's port, so that a taken port is a startup error rather than a log line.
pub async fn bind(streams: &[StreamConfig]) -> Result<Vec<StreamListener>, BindError> {
    let mut bound = Vec::with_capacity(streams.len());
    for config in streams {
        let listener = TcpListener::bind(config.listen).await.map_err(|source| BindError {
            addr: config.listen,
            source,
        })?;
        tracing::info!(listen = %config.listen, nodes = config.nodes.join(", "), "stream listening");
        bound.push(StreamListener {
            config: config.clone(),
            listener,
        });
    }
    Ok(bound)
}

/// Forwards connections on every listener until `shutdown` is cancelled; then stops accepting and gives
/// open connections [`SHUTDOWN_GRACE`] to end.
pub async fn serve(listeners: Vec<StreamListener>, metrics: &Metrics, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    for StreamListener { config, listener } in listeners {
        let balancer = Arc::new(Balancer::new(
            Node::list(&config.nodes, &[]),
            config.fail_timeout,
            Arc::new(SystemClock::default()),
        ));
        let listen = config.listen.to_string();
        metrics.watch_stream_nodes(&listen, Arc::clone(&balancer));
        let forward = Arc::new(Forward {
            slots: Arc::new(Semaphore::new(config.max_connections)),
            listen: listen.clone(),
            balancer,
            metrics: metrics.stream(&listen),
            config,
        });
        tracker.spawn(accept(forward, listener, tracker.clone(), shutdown.clone()));
    }
    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("shutdown grace elapsed with stream connections still open; closing them");
    }
}

async fn accept(forward: Arc<Forward>, listener: TcpListener, tracker: TaskTracker, shutdown: CancellationToken) {
    loop {
        let (client, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off rather than spin.
                    tracing::warn!(listen = %forward.config.listen, %error, "stream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&forward.slots).try_acquire_owned() else {
            tracing::warn!(listen = %forward.config.listen, %peer, limit = forward.config.max_connections,
                "stream connection refused: at its max_connections");
            continue;
        };
        let forward = Arc::clone(&forward);
        tracker.spawn(async move {
            forward.handle(client, peer).await;
            drop(slot);
        });
    }
}

/// One `[[stream]]` at run time.
struct Forward {
    config: StreamConfig,
    /// One per open connection, up to the stream's `max_connections`.
    slots: Arc<Semaphore>,
    /// The listen address, naming the stream in log lines.
    listen: String,
    balancer: Arc<Balancer>,
    metrics: StreamMetrics,
}

impl Forward {
    async fn handle(&self, client: TcpStream, peer: SocketAddr) {
        let listen = self.config.listen;
        self.metrics.connections.inc();
        let started = Instant::now();
        let Some((node, index)) = self.connect().await else {
            self.metrics.unreachable.inc();
            tracing::error!(%listen, %peer, nodes = self.config.nodes.join(", "),
                "no stream node accepted a connection; client closed");
            return;
        };
        let _ = client.set_nodelay(true);
        self.metrics.open.inc();
        let session = self.join(client, node).await;
        self.metrics.open.dec();
        let (up, down) = (session.up, session.down);
        let ended = match &session.end {
            End::Closed => "closed".to_owned(),
            End::IdleTimeout => format!("idle for {} s", self.config.idle_timeout.as_secs_f64()),
            End::Error(error) => format!("error: {error}"),
        };
        tracing::info!(
            target: "access",
            "{peer} STREAM {listen} node={} up={up} down={down} ms={:.2} end={ended}",
            self.balancer.node(index).name(),
            started.elapsed().as_secs_f64() * 1000.0,
        );
    }

    /// A connection to a healthy node, trying each node at most once; `None` when none accepts.
    async fn connect(&self) -> Option<(TcpStream, usize)> {
        let mut connect = Connect {
            timeout: self.config.connect_timeout,
        };
        // Nothing is sent before the connection is up, so only refused connects come back, and move on.
        match attempts::run(&self.balancer, &self.listen, false, &mut connect).await {
            Ok(answered) => Some((answered.answer, answered.index)),
            Err(_) => None,
        }
    }

    /// Copies both ways until both directions have ended, an error, or `idle_timeout` without a byte.
    async fn join(&self, client: TcpStream, node: TcpStream) -> Session {
        let activity = Arc::new(Activity::default());
        let mut client = Touching::counting(client, Arc::clone(&activity), self.metrics.bytes_up.clone());
        let mut node = Touching::counting(node, Arc::clone(&activity), self.metrics.bytes_down.clone());
        let end = tokio::select! {
            copied = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut node, COPY_BUFFER, COPY_BUFFER) => {
                match copied {
                    Ok(_) => End::Closed,
                    Err(error) => End::Error(error),
                }
            }
            () = activity.idle_for(self.config.idle_timeout) => End::IdleTimeout,
        };
        Session {
            up: client.bytes_read(),
            down: node.bytes_read(),
            end,
        }
    }
}

/// A joined connection once it ended: the bytes each way and how it ended.
struct Session {
    up: u64,
    down: u64,
    end: End,
}

enum End {
    Closed,
    IdleTimeout,
    Error(io::Error),
}

/// Connecting to a stream node: the whole of a stream's attempt.
struct Connect {
    timeout: Duration,
}

impl Attempt for Connect {
    type Answer = TcpStream;
    type Error = String;
    const KIND: &'static str = "stream ";

    async fn attempt(&mut self, _index: usize, node: &Node, _resend: bool) -> Result<TcpStream, Miss<String>> {
        let error = match tokio::time::timeout(self.timeout, TcpStream::connect(node.address())).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no connection within {:?} (connect_timeout)", self.timeout),
        };
        Err(Miss::new(Event::Refused, false, error))
    }
}
