//! `serve` (blocking) and `serve_async` (awaitable): build a [`Router`] of Python handlers and run the
//! core's [`Server`] on the shared tokio runtime.

use std::sync::Arc;
use std::time::Duration;

use modproxy_sdk::frame::DEFAULT_MAX_FRAME;
use modproxy_sdk::{MethodDescription, Router, Server};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::handler::{MethodSpec, PyHandler};
use crate::log::logger;
use crate::registration::PyRegistration;

/// How often a blocking `serve` wakes up to let Python run its signal handlers. Python only runs them on
/// the main thread between bytecodes, never while that thread waits inside Rust.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Serves `methods` on `addr` until Ctrl-C, blocking the calling thread.
///
/// The GIL is released while serving. `async def` handlers run on `event_loop`, which must be running in
/// another thread. Returns when the server has stopped after a `KeyboardInterrupt` (Ctrl-C, or a signal
/// handler that raises it): gracefully, or at once if a second one comes during the shutdown. Any other
/// exception raised by a signal handler stops the server and propagates.
#[pyfunction]
#[pyo3(signature = (addr, methods, *, max_frame = DEFAULT_MAX_FRAME, event_loop = None, register = None))]
pub fn serve(
    py: Python<'_>,
    addr: &str,
    methods: Vec<MethodSpec>,
    max_frame: usize,
    event_loop: Option<Bound<'_, PyAny>>,
    register: Option<PyRef<'_, PyRegistration>>,
) -> PyResult<()> {
    let locals = event_loop
        .map(|event_loop| TaskLocals::new(event_loop).copy_context(py))
        .transpose()?;
    let router = router(methods, locals.as_ref())?;
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let server = bind(py, runtime, addr, max_frame, register.map(|r| r.inner.clone()))?;

    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_now, stopped_now) = oneshot::channel::<()>();
    let mut task = runtime.spawn(server.serve_until(
        router,
        async {
            let _ = stopped.await;
        },
        async {
            let _ = stopped_now.await;
        },
    ));
    let interrupt = match wait_or_signal(py, runtime, &mut task) {
        Finished(result) => return result,
        Signalled(interrupt) => interrupt,
    };
    // Graceful stop: no new connections, requests in flight get their replies. A second stop signal while
    // waiting (Ctrl-C, then a supervisor's SIGTERM) abandons them and is no error: the caller asked twice.
    let _ = stop.send(());
    match wait_or_signal(py, runtime, &mut task) {
        Finished(result) => result?,
        Signalled(second) if second.is_instance_of::<PyKeyboardInterrupt>(py) => {
            let _ = stop_now.send(());
            if let Finished(result) = wait_or_signal(py, runtime, &mut task) {
                result?;
            }
        }
        Signalled(second) => {
            task.abort();
            return Err(second);
        }
    }
    if interrupt.is_instance_of::<PyKeyboardInterrupt>(py) {
        Ok(())
    } else {
        Err(interrupt)
    }
}

/// Serves `methods` on `addr` until the returned awaitable is cancelled.
///
/// Must be called while an asyncio loop runs in this thread; `async def` handlers run on that loop. The
/// address is bound before this returns, so bind errors are raised here. Cancelling the awaitable stops
/// accepting connections and lets requests in flight finish in the background.
#[pyfunction]
#[pyo3(signature = (addr, methods, *, max_frame = DEFAULT_MAX_FRAME, register = None))]
pub fn serve_async<'py>(
    py: Python<'py>,
    addr: &str,
    methods: Vec<MethodSpec>,
    max_frame: usize,
    register: Option<PyRef<'py, PyRegistration>>,
) -> PyResult<Bound<'py, PyAny>> {
    let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
    let router = router(methods, Some(&locals))?;
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    let server = bind(py, runtime, addr, max_frame, register.map(|r| r.inner.clone()))?;
    pyo3_async_runtimes::tokio::future_into_py_with_locals(py, locals, async move {
        let (stop, stopped) = oneshot::channel::<()>();
        // Dropped when the awaitable is cancelled (the future is dropped), which starts the graceful stop.
        let _stop_on_drop = StopOnDrop(Some(stop));
        let task = tokio::spawn(server.serve_with_shutdown(router, async {
            let _ = stopped.await;
        }));
        joined(task.await)
    })
}

/// Builds the router. `async def` handlers need `event_loop`. The names were checked at registration
/// ([`check_method_name`]); the router checks them again, and would say so as a `ValueError`.
fn router(methods: Vec<MethodSpec>, event_loop: Option<&TaskLocals>) -> PyResult<Router> {
    let mut router = Router::new();
    for spec in methods {
        let locals = match (spec.is_async, event_loop) {
            (false, _) => None,
            (true, Some(locals)) => Some(locals.clone()),
            (true, None) => {
                return Err(PyRuntimeError::new_err(format!(
                    "method '{}' is async def but no asyncio event loop was given to run it",
                    spec.name
                )))
            }
        };
        let name = spec.name.clone();
        let description = serde_json::from_str::<MethodDescription>(&spec.description)
            .map_err(|e| PyValueError::new_err(format!("method '{name}': bad description: {e}")))?;
        router
            .try_insert(name.clone(), Arc::new(PyHandler::new(spec, locals)))
            .map_err(|refused| PyValueError::new_err(refused.to_string()))?;
        router.set_description(&name, description);
    }
    Ok(router)
}

/// Binds the listener without holding the GIL, and logs where it listens. With `register`, the server
/// registers in etcd while it serves.
fn bind(
    py: Python<'_>,
    runtime: &Runtime,
    addr: &str,
    max_frame: usize,
    register: Option<modproxy_sdk::Registration>,
) -> PyResult<Server> {
    let mut server = py.detach(|| runtime.block_on(Server::bind(addr)))?.max_frame(max_frame);
    if let Some(registration) = register {
        server = server.register(registration);
    }
    let local = server.local_addr()?.to_string();
    logger(py)?.call_method1("info", ("serving on %s", local))?;
    Ok(server)
}

enum Wait {
    Finished(PyResult<()>),
    Signalled(PyErr),
}
use Wait::{Finished, Signalled};

/// Waits for the server task with the GIL released, waking every [`SIGNAL_POLL`] to run Python's signal
/// handlers.
fn wait_or_signal(py: Python<'_>, runtime: &Runtime, task: &mut JoinHandle<std::io::Result<()>>) -> Wait {
    loop {
        let done = py.detach(|| runtime.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut *task).await.ok() }));
        if let Some(result) = done {
            return Finished(joined(result));
        }
        if let Err(interrupt) = py.check_signals() {
            return Signalled(interrupt);
        }
    }
}

fn joined(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> PyResult<()> {
    match result {
        Ok(served) => Ok(served?),
        Err(failed) => Err(PyRuntimeError::new_err(format!("the server task failed: {failed}"))),
    }
}

/// Sends the stop signal when dropped.
struct StopOnDrop(Option<oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Raises `ValueError` unless `name` may be registered beside the names in `registered`: the core's rules
/// (not empty, no leading `_`, each name once), so that Python refuses a name when it is registered rather
/// than when serving starts.
#[pyfunction]
pub fn check_method_name(name: &str, registered: &Bound<'_, PyAny>) -> PyResult<()> {
    modproxy_sdk::router::check_method_name(name, registered.contains(name)?)
        .map_err(|refused| PyValueError::new_err(refused.to_string()))
}
