//! `Registration`: where a Python backend registers itself in etcd. The core does the registering
//! (`modproxy_sdk::registration`); this only carries the settings across.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Registers the backend under its module's etcd prefix while it serves; see the `.pyi`.
#[pyclass(name = "Registration", module = "modproxy_sdk._native", frozen)]
pub struct PyRegistration {
    pub(crate) inner: modproxy_sdk::Registration,
}

#[pymethods]
impl PyRegistration {
    #[new]
    #[pyo3(signature = (etcd, module, *, address = None, prefix = None, ttl = 10.0))]
    fn new(
        etcd: Vec<String>,
        module: &str,
        address: Option<String>,
        prefix: Option<String>,
        ttl: f64,
    ) -> PyResult<Self> {
        if !(ttl >= 1.0 && ttl.is_finite()) {
            return Err(PyValueError::new_err(format!(
                "ttl must be at least 1 second, not {ttl}"
            )));
        }
        let mut inner = modproxy_sdk::Registration::new(etcd, module).ttl(Duration::from_secs_f64(ttl));
        if let Some(address) = address {
            inner = inner.advertise(address);
        }
        if let Some(prefix) = prefix {
            inner = inner.prefix(prefix);
        }
        Ok(PyRegistration { inner })
    }

    fn __repr__(&self) -> String {
        format!("{:?}", self.inner)
    }
}
