//! `modproxy_sdk._native`: the Python binding of the Module Proxy backend SDK.
//!
//! All framing, dispatch and networking happen in the `modproxy-sdk` crate; this crate only converts
//! values and carries calls between tokio and Python. The Python package `modproxy_sdk` (in `python/`)
//! builds the public API (`@method`, `serve`, `Backend`, `MethodError`) on these functions.

/// glibc's malloc and free were 6 % of the extension's samples per echoed message (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod convert;
mod frames;
mod gil;
mod handler;
mod log;
mod registration;
mod serving;

use pyo3::prelude::*;

/// The native core of `modproxy_sdk`.
#[pymodule]
mod _native {
    #[pymodule_export]
    use crate::client::{NativeAsyncClient, NativeClient};
    #[pymodule_export]
    use crate::frames::decode_frames;
    #[pymodule_export]
    use crate::registration::PyRegistration;
    #[pymodule_export]
    use crate::serving::{check_method_name, serve, serve_async};

    /// Largest request payload accepted by default (64 MiB).
    #[pymodule_export]
    const DEFAULT_MAX_FRAME: usize = modproxy_sdk::frame::DEFAULT_MAX_FRAME;
}
