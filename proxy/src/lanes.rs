//! Lanes: backend connections shared by the requests in flight together (`pipeline = N`).
//!
//! A node's requests share a few connections, its *lanes*. Each lane's task gathers the requests queued
//! while other tasks ran and writes them with one call, and hands each reply to the oldest request still
//! waiting, since a backend answers a connection's requests in order. On loopback the cost is per write
//! and per wake-up, not per byte, so one write for many requests is the saving.
//!
//! A new request joins the oldest lane that has room, and a lane never holds more than N. A wire may match
//! replies by order ([`Replies::next`]) or by a key the reply carries ([`Replies::take`]); with the latter
//! (sequenced socket replies) a slow reply holds up nobody.
//!
//! Limits ([`LaneLimits`]): at most `max_lanes` lanes per node (a request finding them all full waits
//! [`ROOM_WAIT`] for room, then is handed back as busy); a lane whose oldest request has waited longer than
//! `overdue` takes no new requests and closes once every request still waiting on it is answered or given
//! up by its caller; a lane idle for `idle` closes.
//!
//! What goes on the wire is a [`Wire`]'s business: length-line frames for socket modules
//! ([`crate::socket_forward::pipeline`]), HTTP/1.1 for HTTP modules ([`crate::http_forward::pipeline`]).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::balancer::per_node::PerNode;

/// How long a request waits for room when every lane to its node is full and no more may open.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// How long a node that refused pipelining ([`Wire::handshake`]) is remembered as one that does not: its
/// requests go one at a time on plain connections meanwhile, and the next lane asks again.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(60);

/// How often a lane looks at its waiting requests' ages and its idleness.
const WATCH_EVERY: Duration = Duration::from_millis(50);

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

    /// Asks the peer, before any request goes out on `stream`, whether it takes `depth` requests in flight
    /// together; `false` (a refusal, a close, no answer within `within`) leaves the connection unused and
    /// the node remembered as one that does not ([`Lanes::pipelines`]). The default asks nothing.
    fn handshake(
        &mut self,
        stream: &mut TcpStream,
        depth: usize,
        within: Duration,
    ) -> impl Future<Output = bool> + Send {
        let _ = (stream, depth, within);
        async { true }
    }

    /// Reads replies, handing each to [`Replies::next`] or [`Replies::take`], until the connection ends, the reply stream
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
    nodes: PerNode<NodeLanes<W>>,
    settings: Settings<W>,
}

/// What every lane of a module is given: a copy each.
#[derive(Debug, Clone)]
struct Settings<W: Wire> {
    /// Most requests a lane carries at a time.
    depth: usize,
    connect_timeout: Duration,
    limits: LaneLimits,
    report: Option<Report>,
    wire: W,
    /// Lanes whose backend closed them (or broke the wire's rules) ([`Lanes::closed_by_backend`]).
    closed_by_backend: Arc<AtomicU64>,
}

/// Told the index of a node that broke the wire's rules ([`Lanes::when_broken`]).
#[derive(Clone)]
struct Report(Arc<dyn Fn(usize) + Send + Sync>);

impl std::fmt::Debug for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Report")
    }
}

/// Bounds on a node's lanes (see the module's doc).
#[derive(Debug, Clone, Copy)]
pub struct LaneLimits {
    /// Most lanes open at once to one node.
    pub max_lanes: usize,
    /// Age of a lane's oldest waiting request past which the lane takes no new requests.
    pub overdue: Option<Duration>,
    /// How long a lane with nothing to do stays open.
    pub idle: Option<Duration>,
}

impl Default for LaneLimits {
    fn default() -> Self {
        LaneLimits {
            max_lanes: usize::MAX,
            overdue: None,
            idle: None,
        }
    }
}

/// What a node's lanes hold at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneLoad {
    /// Lanes open.
    pub open: usize,
    /// Requests queued or written on them whose replies have not come.
    pub requests: usize,
}

/// One node's lanes, and what it said to pipelining.
#[derive(Debug)]
struct NodeLanes<W: Wire> {
    lanes: Mutex<Vec<Arc<Lane<W>>>>,
    /// When the node last refused pipelining.
    refused_at: Mutex<Option<Instant>>,
    /// The node's position, for [`Lanes::when_broken`].
    index: usize,
}

#[derive(Debug)]
struct Lane<W: Wire> {
    jobs: mpsc::UnboundedSender<Job<W>>,
    /// Requests queued or written whose replies have not come.
    in_flight: AtomicUsize,
    state: Arc<LaneState<W>>,
}

/// What a lane's task and its module both see of it.
struct LaneState<W: Wire> {
    waiting: Waiting<W>,
    /// Takes no new requests (overdue, idle or closing).
    retired: AtomicBool,
    /// Takes no new requests, and its reader alone closes it, once the reply it is reading has ended
    /// ([`Replies::detach`]).
    detached: AtomicBool,
}

impl<W: Wire> std::fmt::Debug for LaneState<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneState")
            .field("retired", &self.retired)
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

impl<W: Wire> LaneState<W> {
    fn oldest_waited_longer_than(&self, limit: Duration) -> bool {
        let waiting = self.waiting.lock().expect("waiting lock");
        waiting.front().is_some_and(|entry| entry.since.elapsed() > limit)
    }
}

#[derive(Debug)]
struct Job<W: Wire> {
    request: W::Request,
    outcome: oneshot::Sender<W::Outcome>,
}

/// A request written and not yet answered.
struct Entry<W: Wire> {
    expect: W::Expect,
    outcome: oneshot::Sender<W::Outcome>,
    since: Instant,
}

/// Requests written and not yet answered, oldest first.
type Waiting<W> = Mutex<VecDeque<Entry<W>>>;

impl<W: Wire> Lanes<W> {
    /// Lanes for a module's nodes, each lane carrying at most `depth` requests at a time.
    pub fn new(depth: usize, connect_timeout: Duration, wire: W) -> Self {
        Lanes {
            nodes: PerNode::new(|index| NodeLanes {
                lanes: Mutex::default(),
                refused_at: Mutex::default(),
                index,
            }),
            settings: Settings {
                depth,
                connect_timeout,
                limits: LaneLimits::default(),
                report: None,
                wire,
                closed_by_backend: Arc::default(),
            },
        }
    }

    /// How many lanes ended because their backend closed them or broke the wire's rules: a count that
    /// moves when a backend may have restarted.
    pub fn closed_by_backend(&self) -> u64 {
        self.settings.closed_by_backend.load(Ordering::Relaxed)
    }

    /// The same lanes under `limits`.
    pub fn with_limits(mut self, limits: LaneLimits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// Whether node `index` is taken to pipeline: false for [`REFUSAL_MEMORY`] after it refused.
    pub fn pipelines(&self, index: usize) -> bool {
        let node = self.nodes.get(index);
        let refused_at = node.refused_at.lock().expect("lanes lock");
        !refused_at.is_some_and(|at| at.elapsed() < REFUSAL_MEMORY)
    }

    /// The same lanes, calling `report` with a node's index as soon as one of its lanes sees it break the
    /// wire's rules (to mask it), whether or not a request was waiting then.
    pub fn when_broken(mut self, report: impl Fn(usize) + Send + Sync + 'static) -> Self {
        self.settings.report = Some(Report(Arc::new(report)));
        self
    }

    /// Sends `request` to node `index` (at `addr`, `host:port`) and waits for what became of it.
    /// Cancel-safe: a request dropped while waiting leaves its place in the lane, and its reply is thrown
    /// away when it comes.
    pub async fn call(&self, index: usize, addr: &str, request: W::Request) -> W::Outcome {
        let (outcome, answer) = oneshot::channel();
        let waited = Instant::now();
        let lane = loop {
            if let Some(lane) = self.lane(index, addr) {
                break lane;
            }
            if waited.elapsed() >= ROOM_WAIT {
                let full = io::Error::new(io::ErrorKind::WouldBlock, "every lane to the node is full");
                return W::unsent(Some(full));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if lane.jobs.send(Job { request, outcome }).is_err() {
            // The lane closed since it was chosen; the request is still in hand.
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
            return W::unsent(None);
        }
        // Not held while waiting: a lane the module has let go of closes as soon as its replies are in.
        drop(lane);
        answer.await.unwrap_or_else(|_| W::closed())
    }

    /// The lanes open to node `index` and the requests they carry, for the metrics and status pages.
    pub fn load(&self, index: usize) -> LaneLoad {
        let node = self.nodes.get(index);
        let mut lanes = node.lanes.lock().expect("lanes lock");
        lanes.retain(|lane| !lane.jobs.is_closed());
        LaneLoad {
            open: lanes.len(),
            requests: lanes.iter().map(|lane| lane.in_flight.load(Ordering::Relaxed)).sum(),
        }
    }

    /// Lets go of node `index`'s lanes (it left the module's set): each closes once its replies are in.
    pub fn release(&self, index: usize) {
        self.nodes.get(index).lanes.lock().expect("lanes lock").clear();
    }

    /// The oldest open lane with room that is not overdue, or a new one (connecting in its own task:
    /// requests queue meanwhile), with the caller's request counted in it; `None` when every lane is full
    /// and no more may open.
    fn lane(&self, index: usize, addr: &str) -> Option<Arc<Lane<W>>> {
        let node = self.nodes.get(index);
        let mut lanes = node.lanes.lock().expect("lanes lock");
        lanes.retain(|lane| !lane.jobs.is_closed());
        let overdue = |lane: &Lane<W>| {
            if lane.state.retired.load(Ordering::Relaxed) || lane.state.detached.load(Ordering::Relaxed) {
                return true;
            }
            let late = self
                .settings
                .limits
                .overdue
                .is_some_and(|limit| lane.state.oldest_waited_longer_than(limit));
            if late {
                // From now on it only finishes what it holds.
                lane.state.retired.store(true, Ordering::Relaxed);
            }
            late
        };
        if let Some(lane) = lanes
            .iter()
            .find(|lane| lane.in_flight.load(Ordering::Relaxed) < self.settings.depth && !overdue(lane))
        {
            lane.in_flight.fetch_add(1, Ordering::Relaxed);
            return Some(Arc::clone(lane));
        }
        if lanes.len() >= self.settings.limits.max_lanes {
            return None;
        }
        let (jobs, queue) = mpsc::unbounded_channel();
        let state = Arc::new(LaneState {
            waiting: Mutex::default(),
            retired: AtomicBool::new(false),
            detached: AtomicBool::new(false),
        });
        let lane = Arc::new(Lane {
            jobs,
            in_flight: AtomicUsize::new(1),
            state: Arc::clone(&state),
        });
        let task = LaneTask {
            lane: Arc::downgrade(&lane),
            state,
            node: Arc::clone(&node),
            addr: addr.to_owned(),
            settings: self.settings.clone(),
        };
        tokio::spawn(task.run(queue));
        lanes.push(Arc::clone(&lane));
        Some(lane)
    }
}

impl<W: Wire> Drop for Lanes<W> {
    /// A replaced module (a reload) lets go of its lanes: each finishes the replies it owes, then closes.
    /// Their tasks hold the node's list, so without this nothing would close them.
    fn drop(&mut self) {
        for node in self.nodes.all() {
            if let Ok(mut lanes) = node.lanes.lock() {
                lanes.clear();
            }
        }
    }
}

/// The task behind one lane: connects, then writes and reads until the connection or the module ends.
struct LaneTask<W: Wire> {
    /// Weak, so that a lane no longer reachable from its module closes once its replies are in.
    lane: Weak<Lane<W>>,
    state: Arc<LaneState<W>>,
    node: Arc<NodeLanes<W>>,
    addr: String,
    settings: Settings<W>,
}

/// The reading side's view of a lane: the requests waiting for replies.
pub struct Replies<'a, W: Wire> {
    waiting: &'a Waiting<W>,
    lane: &'a Weak<Lane<W>>,
    node_lanes: &'a NodeLanes<W>,
    report: Option<&'a Report>,
    writing_done: &'a AtomicBool,
    /// Set while a reply taken off the line is still being read (a streamed body).
    replying: &'a AtomicBool,
    detached: &'a AtomicBool,
    node: &'a str,
}

impl<W: Wire> Replies<'_, W> {
    /// The oldest request waiting for a reply, now answered as far as the lane's room goes.
    pub fn next(&self) -> Option<(W::Expect, oneshot::Sender<W::Outcome>)> {
        let next = self.waiting.lock().expect("waiting lock").pop_front()?;
        self.answered();
        Some((next.expect, next.outcome))
    }

    /// The waiting request whose `Expect` satisfies `answers`, wherever it is in the line (a wire whose
    /// replies say which request they answer); `None` if no request waiting is the one.
    pub fn take(&self, answers: impl Fn(&W::Expect) -> bool) -> Option<oneshot::Sender<W::Outcome>> {
        let mut waiting = self.waiting.lock().expect("waiting lock");
        let at = waiting.iter().position(|entry| answers(&entry.expect))?;
        let entry = waiting.remove(at)?;
        drop(waiting);
        self.answered();
        Some(entry.outcome)
    }

    /// The peer broke the wire's rules: every request waiting gets `outcome()`, and the node is reported
    /// ([`Lanes::when_broken`]). The caller then closes the lane.
    pub fn broken(&self, outcome: impl Fn() -> W::Outcome) {
        if let Some(Report(report)) = self.report {
            report(self.node_lanes.index);
        }
        while let Some((_, waiter)) = self.next() {
            let _ = waiter.send(outcome());
        }
    }

    fn answered(&self) {
        if let Some(lane) = self.lane.upgrade() {
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
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

    /// Says that a reply taken off the line ([`Replies::next`]) is still being read, so the lane stays open
    /// for it even once nothing waits and the module has let go of the lane; `false` once it is whole.
    /// Set it before the next await after taking the reply.
    pub fn replying(&self, busy: bool) {
        self.replying.store(busy, Ordering::Relaxed);
    }

    /// The reply being read now will be the lane's last: it takes no new requests, and those waiting
    /// behind are handed back as never taken ([`Replies::hand_back_unread`]). True the first time.
    pub fn detach(&self) -> bool {
        let first = !self.detached.swap(true, Ordering::Relaxed);
        self.hand_back_unread();
        first
    }

    /// The node the lane connects to, for log lines.
    pub fn node(&self) -> &str {
        self.node
    }
}

impl<W: Wire> LaneTask<W> {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job<W>>) {
        let connect = TcpStream::connect(&self.addr);
        let mut stream = match tokio::time::timeout(self.settings.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return refuse_queued(&mut queue, Some(error)),
            Err(_) => {
                let timed_out = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                return refuse_queued(&mut queue, Some(timed_out));
            }
        };
        let _ = stream.set_nodelay(true);
        if !self
            .settings
            .wire
            .handshake(&mut stream, self.settings.depth, self.settings.connect_timeout)
            .await
        {
            tracing::info!(
                node = self.addr,
                "backend does not pipeline; one request at a time per connection"
            );
            *self.node.refused_at.lock().expect("lanes lock") = Some(Instant::now());
            self.state.retired.store(true, Ordering::Relaxed);
            return refuse_queued(&mut queue, None);
        }
        let (mut reader, mut writer) = stream.into_split();
        let waiting = &self.state.waiting;
        let writing_done = AtomicBool::new(false);
        let replying = AtomicBool::new(false);
        let replies = Replies {
            waiting,
            lane: &self.lane,
            node_lanes: &self.node,
            report: self.settings.report.as_ref(),
            writing_done: &writing_done,
            replying: &replying,
            detached: &self.state.detached,
            node: &self.addr,
        };
        let mut reading_wire = self.settings.wire.clone();
        let reading = reading_wire.read_replies(&mut reader, &replies);
        tokio::pin!(reading);
        tokio::select! {
            () = &mut reading => {
                self.settings.closed_by_backend.fetch_add(1, Ordering::Relaxed);
            }
            () = watch(&self.lane, &self.state, &self.node, self.settings.limits) => {}
            written = write_requests(self.settings.wire.clone(), &mut writer, &mut queue, waiting) => {
                // The module let go of this lane: collect the replies still owed, then close.
                if written.is_ok() {
                    writing_done.store(true, Ordering::Relaxed);
                    if replying.load(Ordering::Relaxed) || !waiting.lock().expect("waiting lock").is_empty() {
                        reading.await;
                    }
                }
            }
        }
        // Whatever is still queued was never written: its callers may try another lane or node. Whatever
        // waits for a reply learns, as its sender drops here, that the lane closed.
        self.state.retired.store(true, Ordering::Relaxed);
        refuse_queued(&mut queue, None);
        self.state.waiting.lock().expect("waiting lock").clear();
    }
}

/// Returns when the lane should close: it was retired (overdue) and no caller waits on it any more, or it
/// sat idle past `limits.idle`.
async fn watch<W: Wire>(lane: &Weak<Lane<W>>, state: &LaneState<W>, node: &NodeLanes<W>, limits: LaneLimits) {
    if limits.overdue.is_none() && limits.idle.is_none() {
        return std::future::pending().await;
    }
    let mut idle_since = Instant::now();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if state.detached.load(Ordering::Relaxed) {
            // Its last reply may still be on its way to a slow client; the reader closes it after.
            return std::future::pending().await;
        }
        if let Some(overdue) = limits.overdue {
            if state.oldest_waited_longer_than(overdue) {
                state.retired.store(true, Ordering::Relaxed);
            }
        }
        let (empty, abandoned) = {
            let waiting = state.waiting.lock().expect("waiting lock");
            (
                waiting.is_empty(),
                waiting.iter().all(|entry| entry.outcome.is_closed()),
            )
        };
        if state.retired.load(Ordering::Relaxed) && abandoned {
            let queued = lane.upgrade().map_or(0, |lane| lane.in_flight.load(Ordering::Relaxed));
            // Callers that gave up leave their count behind; only the waiting ones hold it up.
            let unwritten = queued.saturating_sub(state.waiting.lock().expect("waiting lock").len());
            if unwritten == 0 {
                return tracing::debug!("closing a retired lane: no caller waits on it");
            }
        }
        if !empty {
            idle_since = Instant::now();
            continue;
        }
        let Some(idle) = limits.idle else { continue };
        if idle_since.elapsed() < idle {
            continue;
        }
        // Under the node's lock, so no request is counted in the lane while it goes.
        let mut lanes = node.lanes.lock().expect("lanes lock");
        let Some(this) = lane.upgrade() else { return };
        if this.in_flight.load(Ordering::Relaxed) == 0 {
            this.state.retired.store(true, Ordering::Relaxed);
            lanes.retain(|other| !Arc::ptr_eq(other, &this));
            return tracing::debug!("closing an idle lane");
        }
        idle_since = Instant::now();
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
            // One clock reading for the batch: its requests go out in the same write.
            let since = Instant::now();
            let mut waiting = waiting.lock().expect("waiting lock");
            let mut next = Some(first);
            while let Some(job) = next.take().or_else(|| queue.try_recv().ok()) {
                match wire.encode(job.request, &mut out) {
                    Ok(expect) => waiting.push_back(Entry {
                        expect,
                        outcome: job.outcome,
                        since,
                    }),
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
