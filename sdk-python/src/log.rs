//! The `modproxy_sdk` logger of Python's `logging`, where the binding reports what Python users should see:
//! where it listens, and the tracebacks of handlers that raised.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// `logging.getLogger("modproxy_sdk")`.
pub fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("logging")?
                    .call_method1("getLogger", ("modproxy_sdk",))?
                    .unbind(),
            )
        })
        .map(|logger| logger.bind(py))
}
