//! `decode_frames`: the core's length-line decoder, exposed so that Python tests can check the shared
//! test vectors against the one implementation of the wire format. The SDK itself never frames in Python.

use bytes::BytesMut;
use modproxy_sdk::frame::DEFAULT_MAX_FRAME;
use modproxy_sdk::{FrameError, LengthLineCodec};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio_util::codec::Decoder;

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
    let (frames, error) = decode(data, max_frame, chunk_size);
    if let Some(FrameError::Io(io)) = &error {
        return Err(PyValueError::new_err(format!("unexpected i/o error: {io}")));
    }
    let frames = frames.iter().map(|frame| PyBytes::new(py, frame)).collect();
    Ok((frames, error.map(|error| error.kind())))
}

fn decode(data: &[u8], max_frame: usize, chunk_size: usize) -> (Vec<bytes::Bytes>, Option<FrameError>) {
    let mut codec = LengthLineCodec::new(max_frame);
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in data.chunks(chunk_size) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error)),
        }
    }
}
