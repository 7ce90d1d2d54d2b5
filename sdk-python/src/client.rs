//! `Client` and `AsyncClient`'s native half: the core's [`BlockingClient`] and [`Client`] over one
//! keep-alive connection, reconnected on the next call after a failure. Python only adapts values and
//! errors; the wire format stays in the core.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use modproxy_sdk::{BlockingClient, Client, ClientError, Request};
use pyo3::exceptions::{PyConnectionError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;

use crate::convert::{to_json, to_python};

/// Where calls go and how long they may take; shared by the sync and async clients.
#[derive(Clone)]
struct Target {
    addr: String,
    /// Set when `addr` is the proxy's raw-frame port: the request names the module in `head.module`.
    module: Option<String>,
    timeout: Duration,
}

impl Target {
    fn request(&self, method: &str, data: &Bound<'_, PyAny>) -> PyResult<Request> {
        let data = to_json(data).map_err(|e| PyValueError::new_err(format!("data for '{method}' is not JSON: {e}")))?;
        let mut request = Request::new(method, data);
        if let Some(module) = &self.module {
            request.head = request.head.with_module(module.as_str());
        }
        Ok(request)
    }
}

/// A blocking client; the GIL is released while it waits.
#[pyclass(module = "modproxy_sdk._native", frozen)]
pub struct NativeClient {
    target: Target,
    conn: Mutex<Option<BlockingClient>>,
}

#[pymethods]
impl NativeClient {
    #[new]
    #[pyo3(signature = (addr, *, module = None, timeout = 30.0))]
    fn new(addr: String, module: Option<String>, timeout: f64) -> PyResult<Self> {
        Ok(NativeClient {
            target: Target {
                addr,
                module,
                timeout: duration(timeout)?,
            },
            conn: Mutex::new(None),
        })
    }

    /// Calls `method` with `data` and returns the reply.
    fn call(&self, py: Python<'_>, method: &str, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let request = self.target.request(method, data)?;
        let target = &self.target;
        let reply = py.detach(|| {
            let mut conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if conn.is_none() {
                let connected = BlockingClient::connect_timeout(target.addr.as_str(), target.timeout)?
                    .reply_timeout(target.timeout)?;
                *conn = Some(connected);
            }
            let reply = conn.as_mut().expect("connected above").call_request(&request);
            if spoils_connection(&reply) {
                *conn = None;
            }
            reply
        });
        reply_to_python(py, reply)
    }

    /// Closes the connection; the next call opens another.
    fn close(&self) {
        *self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }
}

/// An asyncio client: calls run on the core's tokio runtime and are awaited from the caller's loop.
#[pyclass(module = "modproxy_sdk._native", frozen)]
pub struct NativeAsyncClient {
    target: Target,
    conn: Arc<tokio::sync::Mutex<Option<Client>>>,
}

#[pymethods]
impl NativeAsyncClient {
    #[new]
    #[pyo3(signature = (addr, *, module = None, timeout = 30.0))]
    fn new(addr: String, module: Option<String>, timeout: f64) -> PyResult<Self> {
        Ok(NativeAsyncClient {
            target: Target {
                addr,
                module,
                timeout: duration(timeout)?,
            },
            conn: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// Calls `method` with `data`; the awaitable gives the reply.
    fn call<'py>(&self, py: Python<'py>, method: &str, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let request = self.target.request(method, data)?;
        let target = self.target.clone();
        let conn = Arc::clone(&self.conn);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            // One call at a time per connection, as the protocol wants without pipelining.
            let mut conn = conn.lock().await;
            let reply = async {
                if conn.is_none() {
                    let connected = Client::connect_timeout(target.addr.as_str(), target.timeout).await?;
                    *conn = Some(connected.reply_timeout(target.timeout));
                }
                conn.as_mut().expect("connected above").call_request(&request).await
            }
            .await;
            if spoils_connection(&reply) {
                *conn = None;
            }
            Python::attach(|py| reply_to_python(py, reply))
        })
    }
}

/// Whether the connection must be dropped: anything but a reply or an error reply leaves it unusable.
fn spoils_connection<T>(reply: &Result<T, ClientError>) -> bool {
    !matches!(reply, Ok(_) | Err(ClientError::Method(_)))
}

fn duration(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err(format!("timeout must be a positive number of seconds, not {seconds}")))
}

/// The reply as a Python value; an error reply as `modproxy_sdk.MethodError` (with `code`), a timeout as
/// `TimeoutError`, any other failure as `ConnectionError`.
fn reply_to_python(py: Python<'_>, reply: Result<serde_json::Value, ClientError>) -> PyResult<Py<PyAny>> {
    match reply {
        Ok(value) => Ok(to_python(py, &value)?.unbind()),
        Err(ClientError::Method(error)) => {
            let class = py.import("modproxy_sdk._error")?.getattr("MethodError")?;
            Err(PyErr::from_value(class.call1((error.code.as_ref(), error.message))?))
        }
        Err(error @ (ClientError::Timeout(_) | ClientError::ConnectTimeout { .. })) => {
            Err(PyTimeoutError::new_err(error.to_string()))
        }
        Err(error) => Err(PyConnectionError::new_err(error.to_string())),
    }
}
