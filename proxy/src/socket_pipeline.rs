//! `pipeline = N` on a socket module: up to N requests in flight on one backend connection.
//!
//! A node's requests share a few connections, its *lanes*. Each lane's task gathers the frames queued
//! while other tasks ran and writes them with one call, and hands each reply frame to the oldest request
//! still waiting, since the backend answers in order (the SDKs do: `modproxy_sdk::server`). On loopback
//! the cost is per write and per wake-up, not per byte, so one write for many requests is the saving.
//!
//! The price is head-of-line blocking: a reply waits for the replies owed before it on its lane. A new
//! request therefore joins the oldest lane that has room, and a lane never holds more than N.
//!
//! Only a request whose frame was never written may go on to another node: one refused by a connect
//! failure, or still queued when its lane closed.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use modproxy_sdk::{FrameError, LengthLineCodec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{Decoder, Encoder};

/// Buffers larger than this are given back once empty, so a lane that once carried a big frame stays small.
const KEEP_BUFFER: usize = 64 * 1024;

/// What became of a request handed to a lane.
#[derive(Debug)]
pub enum Outcome {
    /// The backend's reply.
    Reply(Bytes),
    /// The backend broke the wire format where this request's reply should be.
    BadReply(FrameError),
    /// The request may have been written, but its lane closed before a reply came.
    Closed,
    /// The request was never written: connecting failed (`Some`), or the lane closed first (`None`).
    Unsent(Option<io::Error>),
}

/// The lanes of one module's nodes.
#[derive(Debug)]
pub struct Pipelines {
    nodes: Vec<Mutex<Vec<Arc<Lane>>>>,
    depth: usize,
    max_frame: usize,
    connect_timeout: Duration,
}

#[derive(Debug)]
struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    /// Requests queued or written whose replies have not come.
    in_flight: AtomicUsize,
}

#[derive(Debug)]
struct Job {
    payload: Bytes,
    outcome: oneshot::Sender<Outcome>,
}

impl Pipelines {
    /// Lanes for `node_count` nodes, each carrying at most `depth` requests at a time.
    pub fn new(node_count: usize, depth: usize, max_frame: usize, connect_timeout: Duration) -> Self {
        Pipelines {
            nodes: (0..node_count).map(|_| Mutex::default()).collect(),
            depth,
            max_frame,
            connect_timeout,
        }
    }

    /// Sends `payload` to node `index` (at `addr`) and waits for what became of it. Cancel-safe: a request
    /// dropped while waiting leaves its place in the lane, and its reply is thrown away when it comes.
    pub async fn call(&self, index: usize, addr: &str, payload: Bytes) -> Outcome {
        let (outcome, answer) = oneshot::channel();
        let lane = self.lane(index, addr);
        if lane.jobs.send(Job { payload, outcome }).is_err() {
            // The lane closed since it was chosen; the request is still in hand.
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Outcome::Unsent(None);
        }
        // Not held while waiting: a lane the module has let go of closes as soon as its replies are in.
        drop(lane);
        answer.await.unwrap_or(Outcome::Closed)
    }

    /// Open lanes to node `index`.
    pub fn lanes(&self, index: usize) -> usize {
        let mut lanes = self.nodes[index].lock().expect("lanes lock");
        lanes.retain(|lane| !lane.jobs.is_closed());
        lanes.len()
    }

    /// The oldest open lane with room, or a new one (connecting in its own task: requests queue meanwhile),
    /// with the caller's request counted in it.
    fn lane(&self, index: usize, addr: &str) -> Arc<Lane> {
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
        let run = LaneTask {
            lane: Arc::downgrade(&lane),
            addr: addr.to_owned(),
            codec: LengthLineCodec::new(self.max_frame),
            connect_timeout: self.connect_timeout,
        };
        tokio::spawn(run.run(queue));
        lanes.push(Arc::clone(&lane));
        lane
    }
}

/// The task behind one lane: connects, then writes and reads until the connection or the module ends.
struct LaneTask {
    /// Weak, so that a lane no longer reachable from its module closes once its replies are in.
    lane: std::sync::Weak<Lane>,
    addr: String,
    codec: LengthLineCodec,
    connect_timeout: Duration,
}

/// Requests written and not yet answered, oldest first.
type Waiting = Mutex<VecDeque<oneshot::Sender<Outcome>>>;

impl LaneTask {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Job>) {
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
        let waiting = Waiting::default();
        let writing_done = AtomicBool::new(false);
        let reading = self.read_replies(&mut reader, &waiting, &writing_done);
        tokio::pin!(reading);
        tokio::select! {
            () = &mut reading => {}
            written = write_requests(&mut writer, &mut queue, &waiting) => {
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

    /// Hands each reply frame to the oldest waiting request, until the connection ends or, once writing
    /// is done, nothing waits any more.
    async fn read_replies(
        &self,
        reader: &mut tokio::net::tcp::OwnedReadHalf,
        waiting: &Waiting,
        writing_done: &AtomicBool,
    ) {
        let mut codec = self.codec.clone();
        let mut buffer = BytesMut::with_capacity(8 * 1024);
        loop {
            match reader.read_buf(&mut buffer).await {
                Ok(0) => return tracing::debug!(node = self.addr, "backend closed a pipelined connection"),
                Err(error) => return tracing::debug!(node = self.addr, %error, "pipelined connection failed"),
                Ok(_) => {}
            }
            loop {
                let outcome = match codec.decode(&mut buffer) {
                    Ok(Some(reply)) => Outcome::Reply(reply),
                    Ok(None) => break,
                    Err(error) => Outcome::BadReply(error),
                };
                let Some(waiter) = waiting.lock().expect("waiting lock").pop_front() else {
                    return tracing::warn!(
                        node = self.addr,
                        "backend sent a reply nobody asked for; connection closed"
                    );
                };
                self.answered();
                let broken = matches!(outcome, Outcome::BadReply(_));
                let _ = waiter.send(outcome);
                if broken {
                    return;
                }
            }
            if writing_done.load(Ordering::Relaxed) && waiting.lock().expect("waiting lock").is_empty() {
                return;
            }
            if buffer.is_empty() && buffer.capacity() > KEEP_BUFFER {
                buffer = BytesMut::with_capacity(8 * 1024);
            }
        }
    }

    fn answered(&self) {
        if let Some(lane) = self.lane.upgrade() {
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Writes queued requests, all that are queued at once, until the queue closes (`Ok`) or a write fails.
async fn write_requests(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    queue: &mut mpsc::UnboundedReceiver<Job>,
    waiting: &Waiting,
) -> io::Result<()> {
    let mut codec = LengthLineCodec::default();
    let mut out = BytesMut::new();
    while let Some(first) = queue.recv().await {
        // Let the other requests that are ready to run queue theirs first, to share this write.
        tokio::task::yield_now().await;
        {
            let mut waiting = waiting.lock().expect("waiting lock");
            let mut next = Some(first);
            while let Some(job) = next.take().or_else(|| queue.try_recv().ok()) {
                // A payload too long for a length line (10 digits) cannot be framed; its caller hears so.
                match codec.encode(&job.payload, &mut out) {
                    Ok(()) => waiting.push_back(job.outcome),
                    Err(error) => drop(job.outcome.send(Outcome::BadReply(error))),
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
fn refuse_queued(queue: &mut mpsc::UnboundedReceiver<Job>, connect_error: Option<io::Error>) {
    queue.close();
    while let Ok(job) = queue.try_recv() {
        let error = connect_error
            .as_ref()
            .map(|error| io::Error::new(error.kind(), error.to_string()));
        let _ = job.outcome.send(Outcome::Unsent(error));
    }
}
