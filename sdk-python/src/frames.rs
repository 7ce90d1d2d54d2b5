//! `decode_frames`: the core's length-line decoder, exposed so that Python tests can check the shared
//! test vectors against the one implementation of the wire format. The SDK itself never frames in Python.

use modproxy_sdk::frame::DEFAULT_MAX_FRAME;
use modproxy_sdk::{decode_stream, FrameError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Decodes `data` as a stream of frames, fed to the decoder `chunk_size` bytes at a time (all at once when
/// 0), and ends the stream after the last byte.
///
/// Returns the payloads delivered, and `None` if the stream ended cleanly or else the error's kind
/// (`missing_crlf`, `bad_digit`, `empty`, `too_large` or `truncated`, as in the test vectors).
#[pyfunction]
#[pyo3(signature = (data, max_frame = DEFAULT_MAX_FRAME, chunk_size = 0))]
pub fn decode_frames<'py>(
    py: Python<'py>,
    data: &[u8],
    max_frame: usize,
    chunk_size: usize,
) -> PyResult<(Vec<Bound<'py, PyBytes>>, Option<&'static str>)> {
    let chunk_size = if chunk_size == 0 { data.len().max(1) } else { chunk_size };
    let decoded = decode_stream(max_frame, data.chunks(chunk_size));
    if let Some(FrameError::Io(io)) = &decoded.error {
        return Err(PyValueError::new_err(format!("unexpected i/o error: {io}")));
    }
    let frames = decoded.frames.iter().map(|frame| PyBytes::new(py, frame)).collect();
    Ok((frames, decoded.error.map(|error| error.kind())))
}
