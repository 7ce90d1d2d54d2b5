//! [`PyHandler`]: a Python callable behind the core's [`Handler`] trait.
//!
//! The core calls handlers from tokio worker threads, which must never wait for the GIL: a worker stuck on
//! the GIL stalls every connection scheduled on it. So every touch of Python happens on tokio's blocking
//! pool, through [`with_gil`]'s queue (which runs many calls per acquisition of the GIL), and the GIL is
//! held only while converting values and calling the function. `async def` handlers are scheduled onto the
//! asyncio loop captured when serving started and awaited from tokio without holding the GIL.

use std::sync::Arc;

use modproxy_sdk::{BoxFuture, Handler, HandlerResult, Head, MethodError, Request};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use pyo3_async_runtimes::TaskLocals;

use crate::convert::{to_json, to_python, type_name};
use crate::gil::with_gil;
use crate::log::logger;

/// One registered method as the Python package describes it (any object with these attributes).
#[derive(FromPyObject)]
pub struct MethodSpec {
    /// The name callers put in `head.method`.
    pub name: String,
    /// The function to call.
    pub func: Py<PyAny>,
    /// Whether the function takes `(data, head)` rather than `(data)`.
    pub takes_head: bool,
    /// Whether the function is `async def`.
    pub is_async: bool,
    /// What `_describe` says about it: `{"doc", "data", "result"}` as JSON text, derived from its hints.
    pub description: String,
}

/// A Python function serving one method.
pub struct PyHandler {
    inner: Arc<Callable>,
}

struct Callable {
    name: String,
    func: Py<PyAny>,
    takes_head: bool,
    /// The asyncio loop (and contextvars) that runs this handler, for `async def` handlers only.
    event_loop: Option<TaskLocals>,
}

impl PyHandler {
    /// Wraps a registered method. `event_loop` must be given for an `async def` handler.
    pub fn new(spec: MethodSpec, event_loop: Option<TaskLocals>) -> Self {
        PyHandler {
            inner: Arc::new(Callable {
                name: spec.name,
                func: spec.func,
                takes_head: spec.takes_head,
                event_loop,
            }),
        }
    }
}

impl Handler for PyHandler {
    fn call(&self, request: Request) -> BoxFuture<HandlerResult> {
        let callable = Arc::clone(&self.inner);
        Box::pin(async move {
            if callable.event_loop.is_some() {
                callable.call_async(request).await
            } else {
                callable.call_sync(request).await
            }
        })
    }
}

impl Callable {
    /// Runs a plain function through the GIL queue.
    async fn call_sync(self: Arc<Self>, request: Request) -> HandlerResult {
        with_gil(move |py| {
            let outcome = self.invoke(py, request);
            self.reply(py, outcome)
        })
        .await
    }

    /// Creates the coroutine (with the GIL, through the queue), runs it on the asyncio loop, waits for it
    /// without the GIL, then converts its result (through the queue again).
    async fn call_async(self: Arc<Self>, request: Request) -> HandlerResult {
        let this = Arc::clone(&self);
        let running = with_gil(move |py| {
            let locals = this.event_loop.as_ref().expect("async handlers have a loop");
            this.invoke(py, request)
                .and_then(|coroutine| {
                    let running = pyo3_async_runtimes::into_future_with_locals(locals, coroutine.clone())?;
                    Ok((running, coroutine.unbind()))
                })
                .map_err(|error| this.error_reply(py, error))
        })
        .await?;
        // asyncio keeps only weak references to tasks, and nothing else holds the one that runs the
        // coroutine: a handler awaiting a future that only it knows of would be garbage-collected mid-call
        // ("Task was destroyed but it is pending!"). Holding the coroutine holds its task too (through the
        // awaited future's wake-up callback) until the call is over.
        let (running, coroutine) = running;
        let outcome = running.await;
        with_gil(move |py| {
            drop(coroutine);
            let outcome = outcome.map(|value| value.into_bound(py));
            self.reply(py, outcome)
        })
        .await
    }

    /// Calls the function with `data` or `(data, head)`.
    fn invoke<'py>(&self, py: Python<'py>, request: Request) -> PyResult<Bound<'py, PyAny>> {
        let data = to_python(py, &request.data)?;
        let func = self.func.bind(py);
        if self.takes_head {
            func.call1((data, head_to_python(py, &request.head)?))
        } else {
            func.call1((data,))
        }
    }

    /// Turns what the function returned or raised into the reply.
    fn reply(&self, py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) -> HandlerResult {
        match outcome {
            Ok(value) => to_json(&value).map_err(|not_json| {
                // A plain `def` that returns a coroutine (an async function behind a sync decorator) is
                // an easy mistake: say so, and close the coroutine so Python does not warn it was never
                // awaited.
                let hint = if !value.hasattr("__await__").unwrap_or(false) {
                    ""
                } else {
                    let _ = value.call_method0("close");
                    if self.event_loop.is_none() {
                        "; it is awaitable: declare the handler `async def` so that it is awaited"
                    } else {
                        "; it is awaitable: await it in the handler"
                    }
                };
                MethodError::handler_error(format!(
                    "the reply of '{}' cannot be converted to JSON: {not_json}{hint}",
                    self.name
                ))
            }),
            Err(error) => Err(self.error_reply(py, error)),
        }
    }

    /// A raised `MethodError` becomes its own reply; anything else a logged `handler_error`.
    fn error_reply(&self, py: Python<'_>, error: PyErr) -> MethodError {
        let value = error.value(py);
        if let Some(chosen) = chosen_error(py, value) {
            return chosen;
        }
        log_exception(py, &self.name, &error);
        let text = value.str().map(|s| s.to_string()).unwrap_or_default();
        let kind = type_name(value);
        MethodError::handler_error(if text.is_empty() {
            kind
        } else {
            format!("{kind}: {text}")
        })
    }
}

/// The `head` as a plain dict: `method`, `token` when sent, and every other field.
fn head_to_python<'py>(py: Python<'py>, head: &Head) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(head).expect("a Head always serialises");
    to_python(py, &value)
}

/// The code and message of a raised `modproxy_sdk.MethodError` (or subclass), if that is what it is.
fn chosen_error(py: Python<'_>, value: &Bound<'_, PyAny>) -> Option<MethodError> {
    static METHOD_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let class = METHOD_ERROR.import(py, "modproxy_sdk", "MethodError").ok()?;
    if !value.is_instance(class).unwrap_or(false) {
        return None;
    }
    let field = |name: &str| {
        value
            .getattr(name)
            .and_then(|field| field.str())
            .map(|field| field.to_string())
            .unwrap_or_default()
    };
    Some(MethodError::new(field("code"), field("message")))
}

/// Logs a handler's exception with its traceback on the `modproxy_sdk` logger.
fn log_exception(py: Python<'_>, method: &str, error: &PyErr) {
    let logged = (|| -> PyResult<()> {
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", (error.get_type(py), error.value(py), error.traceback(py)))?;
        logger(py)?.call_method(
            "error",
            ("handler for method %r raised an exception", method),
            Some(&kwargs),
        )?;
        Ok(())
    })();
    if let Err(failure) = logged {
        // Logging itself failed (a broken handler, say): fall back to stderr rather than lose the trace.
        error.clone_ref(py).print(py);
        failure.print(py);
    }
}
