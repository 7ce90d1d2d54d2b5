//! [`with_gil`]: runs Python work for tokio tasks, many calls per acquisition of the GIL.
//!
//! Python runs one thread at a time. Giving every call its own blocking-pool thread (as a plain
//! `spawn_blocking` per call does) makes each call wake a thread and pass the GIL along: under load,
//! dozens of threads queue on the GIL and each request pays a thread switch or two. Instead, calls wait in
//! one queue, and a *drainer* on tokio's blocking pool takes the GIL once and runs them back to back until
//! the queue is empty.
//!
//! A handler may block (`time.sleep`, a lock, I/O), releasing the GIL while the drainer's thread waits.
//! So that it never holds up other connections, every waiting call checks every [`STALL`] whether any call
//! has started since it last looked; if none has while calls are queued, it starts another drainer. A
//! drainer that finds the queue empty returns its thread to the pool.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use modproxy_sdk::MethodError;
use pyo3::prelude::*;
use tokio::sync::oneshot;

/// How long queued calls wait without any call starting before another drainer is started.
const STALL: Duration = Duration::from_millis(1);

type Job = Box<dyn FnOnce(Python<'_>) + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Drainers running (or about to run) on the blocking pool.
    drainers: usize,
    /// Calls started so far: progress, as seen by waiting calls.
    started: u64,
    /// `started` when a stall last started a drainer; one extra drainer per stall, not one per waiter.
    stall_mark: Option<u64>,
}

fn queue() -> MutexGuard<'static, Queue> {
    static QUEUE: OnceLock<Mutex<Queue>> = OnceLock::new();
    QUEUE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `work` with the GIL on a blocking-pool thread and returns what it returns. Never blocks the
/// calling tokio worker.
pub async fn with_gil<T, F>(work: F) -> Result<T, MethodError>
where
    T: Send + 'static,
    F: FnOnce(Python<'_>) -> Result<T, MethodError> + Send + 'static,
{
    let (reply, replied) = oneshot::channel();
    let job: Job = Box::new(move |py| {
        let _ = reply.send(work(py));
    });
    let mut seen = {
        let mut queue = queue();
        queue.jobs.push_back(job);
        if queue.drainers == 0 {
            start_drainer(&mut queue);
        }
        queue.started
    };
    tokio::pin!(replied);
    loop {
        tokio::select! {
            outcome = &mut replied => {
                return outcome.unwrap_or_else(|_| {
                    Err(MethodError::handler_error("the handler's worker thread failed"))
                });
            }
            () = tokio::time::sleep(STALL) => {
                let mut queue = queue();
                if queue.started == seen && !queue.jobs.is_empty() && queue.stall_mark != Some(seen) {
                    // Every drainer is inside a call that does not return (it waits on something):
                    // another one keeps the rest of the queue moving.
                    queue.stall_mark = Some(seen);
                    start_drainer(&mut queue);
                }
                seen = queue.started;
            }
        }
    }
}

fn start_drainer(queue: &mut Queue) {
    queue.drainers += 1;
    tokio::task::spawn_blocking(drain);
}

/// Takes the next job, or retires this drainer when there is none.
fn next_job() -> Option<Job> {
    let mut queue = queue();
    match queue.jobs.pop_front() {
        Some(job) => {
            queue.started += 1;
            Some(job)
        }
        None => {
            queue.drainers -= 1;
            None
        }
    }
}

/// Runs queued jobs until the queue is empty, taking the GIL only if there is one to run.
fn drain() {
    let Some(first) = next_job() else { return };
    Python::attach(|py| {
        let mut job = first;
        loop {
            // A panic drops the job's reply sender, which its caller reports as a failed handler; the
            // drainer carries on with the rest of the queue.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(py)));
            match next_job() {
                Some(next) => job = next,
                None => return,
            }
        }
    });
}
