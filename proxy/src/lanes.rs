//! Lanes: backend connections shared by the requests in flight together (`pipeline = N`).
//!
//! A node's requests share a few connections, its *lanes*. Each lane's task gathers the requests queued
//! while other tasks ran and writes them with one call, and hands each reply to the oldest request still
//! waiting, since a backend answers a connection's requests in order. On loopback the cost is per write
//! and per wake-up, not per byte, so one write for many requests is the saving.
//!
//! The price is head-of-line blocking: a reply waits for the replies owed before it on its lane. A new
//! request therefore joins the oldest lane that has room, and a lane never holds more than N.
//!
//! What goes on the wire is a [`Wire`]'s business: length-line frames for socket modules
//! ([`crate::socket_forward::pipeline`]), HTTP/1.1 for HTTP modules ([`crate::http_forward::pipeline`]).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Buffers larger than this are given back once empty, so a lane that once carried a big request or
/// reply stays small.
pub const KEEP_BUFFER: usize = 64 * 1024;

/// A protocol spoken on lanes: how requests are written and replies read.
pub trait Wire: Clone + Send + Sync + 'static {
    /// A request as its caller hands it over.
    type Request: Send + 'static;
    /// What the reader must know of a written request to read its reply.
    type Expect: Send + 'static;
    /// What becomes of a request.
    type Outcome: Send + 'static;

    /// Appends `request` to `out`, or refuses it with the outcome its caller gets.
    fn encode(&mut self, request: Self::Request, out: &mut BytesMut) -> Result<Self::Expect, Self::Outcome>;

    /// The outcome of a request that was never written: connecting failed (`Some`), or its lane closed
    /// first (`None`).
    fn unsent(error: Option<io::Error>) -> Self::Outcome;

    /// The outcome of a request that may have been written, whose lane closed before its reply came.
    fn closed() -> Self::Outcome;

    /// Reads replies, handing each to [`Replies::next`], until the connection ends, the reply stream
    /// breaks, or [`Replies::finished`].
    fn read_replies(
        &mut self,
        reader: &mut OwnedReadHalf,
        replies: &Replies<'_, Self>,
    ) -> impl Future<Output = ()> + Send;
}

/// The lanes of one module's nodes.
#[derive(Debug)]
pub struct Lanes<W: Wire> {
    nodes: Vec<Mutex<Vec<Arc<Lane<W>>>>>,
    depth: usize,
    connect_timeout: Duration,
    wire: W,
}

#[derive(Debug)]
struct Lane<W: Wire> {
    jobs: mpsc::UnboundedSender<Job<W>>,
    /// Requests queued or written whose replies have not come.
    in_flight: AtomicUsize,
}

#[derive(Debug)]
struct Job<W: Wire> {
    request: W::Request,
    outcome: oneshot::Sender<W::Outcome>,
}

/// Requests written and not yet answered, oldest first.
type Waiting<W> = Mutex<VecDeque<(<W as Wire>::Expect, oneshot::Sender<<W as Wire>::Outcome>)>>;

impl<W: Wire> Lanes<W> {
    /// Lanes for `node_count` nodes, each carrying at most `depth` requests at a time.
    pub fn new(node_count: usize, depth: usize, connect_timeout: Duration, wire: W) -> Self {
        Lanes {
            nodes: (0..node_count).map(|_| Mutex::default()).collect(),
            depth,
            connect_timeout,
            wire,
        }
    }

    /// Sends `request` to node `index` (at `addr`, `host:port`) and waits for what became of it.
    /// Cancel-safe: a request dropped while waiting leaves its place in the lane, and its reply is thrown
    /// away when it comes.
    pub async fn call(&self, index: usize, addr: &str, request: W::Request) -> W::Outcome {
        let (outcome, answer) = oneshot::channel();
        let lane = self.lane(index, addr);
        if lane.jobs.send(Job { request, outcome }).is_err() {
            // The lane closed since it was chosen; the request is still in hand.
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
            return W::unsent(None);
        }
        // Not held while waiting: a lane the module has let go of closes as soon as its replies are in.
        drop(lane);
        answer.await.unwrap_or_else(|_| W::closed())
    }

    /// Open lanes to node `index`.
    pub fn open(&self, index: usize) -> usize {
        let mut lanes = self.nodes[index].lock().expect("lanes lock");
        lanes.retain(|lane| !lane.jobs.is_closed());
        lanes.len()
    }

    /// The oldest open lane with room, or a new one (connecting in its own task: requests queue meanwhile),
    /// with the caller's request counted in it.
    fn lane(&self, index: usize, addr: &str) -> Arc<Lane<W>> {
        let mut lanes = self.nodes[index].lock().expect("lanes lock");
        lanes.retain(|lane| !lane.jobs.is_closed());
        if let Some(lane) = lanes
            .iter()
            .find(|lane| lane.in_flight.load(Ordering::Relaxed) < self.depth)
        {
            lane.in_flight.fetch_add(1, Ordering::Relaxed);
            return Arc::clone(lane);
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        let lane = Arc::new(Lane {
            jobs,
            in_flight: AtomicUsize::new(1),
        });
        let task = LaneTask {
            lane: Arc::downgrade(&lane),
            addr: addr.to_owned(),
            connect_timeout: self.connect_timeout,
            wire: self.wire.clone(),
        };
        tokio::spawn(task.run(queue));
        lanes.push(Arc::clone(&lane));
        lane
    }
}

/// The task behind one lane: connects, then writes and reads until the connection or the module ends.
struct LaneTask<W: Wire> {
    /// Weak, so that a lane no longer reachable from its module closes once its replies are in.
    lane: Weak<Lane<W>>,
    addr: String,
    connect_timeout: Duration,
    wire: W,
}

/// The reading side's view of a lane: the requests waiting for replies.
pub struct Replies<'a, W: Wire> {
    waiting: &'a Waiting<W>,
    lane: &'a Weak<Lane<W>>,
    writing_done: &'a AtomicBool,
    node: &'a str,
}

impl<W: Wire> Replies<'_, W> {
    /// The oldest request waiting for a reply, now answered as far as the lane's room goes.
    pub fn next(&self) -> Option<(W::Expect, oneshot::Sender<W::Outcome>)> {
        let next = self.waiting.lock().expect("waiting lock").pop_front()?;
        if let Some(lane) = self.lane.upgrade() {
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        Some(next)
    }

    /// True once the module let go of the lane and every reply owed has come: time to close.
    pub fn finished(&self) -> bool {
        self.writing_done.load(Ordering::Relaxed) && self.waiting.lock().expect("waiting lock").is_empty()
    }

    /// The backend said it reads nothing more from this connection: every request still waiting is
    /// handed back as never taken, free to go out again.
    pub fn hand_back_unread(&self) {
        while let Some((_, outcome)) = self.next() {
            let _ = outcome.send(W::unsent(None));
        }
    }

    /// The node the lane connects to, for log lines.
    pub fn node(&self) -> &str {
        self.node
    }
}

impl<W: Wire> LaneTask<W> {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job<W>>) {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return refuse_queued(&mut queue, Some(error)),
            Err(_) => {
                let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                return refuse_queued(&mut queue, Some(timed_out));
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let waiting = Waiting::<W>::default();
        let writing_done = AtomicBool::new(false);
        let replies = Replies {
            waiting: &waiting,
            lane: &self.lane,
            writing_done: &writing_done,
            node: &self.addr,
        };
        let mut reading_wire = self.wire.clone();
        let reading = reading_wire.read_replies(&mut reader, &replies);
        tokio::pin!(reading);
        tokio::select! {
            () = &mut reading => {}
            written = write_requests(self.wire, &mut writer, &mut queue, &waiting) => {
                // The module let go of this lane: collect the replies still owed, then close.
                if written.is_ok() {
                    writing_done.store(true, Ordering::Relaxed);
                    if !waiting.lock().expect("waiting lock").is_empty() {
                        reading.await;
                    }
                }
            }
        }
        // Whatever is still queued was never written: its callers may try another lane or node. Whatever
        // waits for a reply learns, as its sender drops here, that the lane closed.
        refuse_queued(&mut queue, None);
    }
}

/// Writes queued requests, all that are queued at once, until the queue closes (`Ok`) or a write fails.
async fn write_requests<W: Wire>(
    mut wire: W,
    writer: &mut OwnedWriteHalf,
    queue: &mut mpsc::UnboundedReceiver<Job<W>>,
    waiting: &Waiting<W>,
) -> io::Result<()> {
    let mut out = BytesMut::new();
    while let Some(first) = queue.recv().await {
        // Let the other requests that are ready to run queue theirs first, to share this write.
        tokio::task::yield_now().await;
        {
            let mut waiting = waiting.lock().expect("waiting lock");
            let mut next = Some(first);
            while let Some(job) = next.take().or_else(|| queue.try_recv().ok()) {
                match wire.encode(job.request, &mut out) {
                    Ok(expect) => waiting.push_back((expect, job.outcome)),
                    Err(refused) => drop(job.outcome.send(refused)),
                }
            }
        }
        writer.write_all(&out).await?;
        out.clear();
        if out.capacity() > KEEP_BUFFER {
            out = BytesMut::new();
        }
    }
    Ok(())
}

/// Refuses every request still queued: none of them was written.
fn refuse_queued<W: Wire>(queue: &mut mpsc::UnboundedReceiver<Job<W>>, connect_error: Option<io::Error>) {
    queue.close();
    while let Ok(job) = queue.try_recv() {
        let error = connect_error
            .as_ref()
            .map(|error| io::Error::new(error.kind(), error.to_string()));
        let _ = job.outcome.send(W::unsent(error));
    }
}
