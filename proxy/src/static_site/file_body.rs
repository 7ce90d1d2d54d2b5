//! The body of a large file sent whole: large reads straight into the buffers hyper writes.
//!
//! tower-http's body reads through `tokio::fs::File`, which reads into a buffer of its own and copies
//! that into the stream's buffer: two copies in user space and a trip to the blocking pool per 64 KiB.
//! Here each read goes from the file into the `Bytes` that hyper hands to `writev` as it is (hyper
//! queues body buffers rather than copying them when the socket takes vectored writes), [`CHUNK`] at a
//! time. One read is in flight per response, so memory stays at one chunk per download, whatever the
//! file's size.
//!
//! Where the connection can `sendfile` (plain HTTP/1.1: its requests carry a [`FileSlot`]), the body
//! reads nothing: it yields placeholders that the connection's IO replaces with `sendfile` from the file
//! ([`super::sendfile`]), and no byte of the file passes through user space.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use super::sendfile::{self, FileSlot};
use crate::body::BoxError;

/// Bytes per read: large enough that the blocking-pool trip and the `writev` per chunk are a small
/// part of the cost, small enough that many downloads at once hold little memory.
pub const CHUNK: usize = 256 * 1024;

/// Bytes per read on an HTTP/1.1 connection that cannot `sendfile` (TLS), which marks its requests with
/// [`LargeReads`]: one response at a time there, so one such buffer per connection. Measured over TLS
/// against [`CHUNK`]: CPU per MiB served −35 % for a 1 MiB file, −5 % at 10 and 100 MiB. Not for HTTP/2,
/// which holds a chunk per stream in flight.
pub const LARGE_CHUNK: usize = 1024 * 1024;

/// In a request's extensions: its connection is HTTP/1.1 without `sendfile`; read [`LARGE_CHUNK`] at a time.
#[derive(Clone, Copy, Debug)]
pub struct LargeReads;

/// The next `remaining` bytes of an open file, read [`CHUNK`] (or [`LARGE_CHUNK`]) at a time.
pub struct FileBody {
    /// The file, while no read is in flight.
    file: Option<File>,
    /// The read in flight: it hands the file back with what it read.
    reading: Option<JoinHandle<(File, io::Result<Vec<u8>>)>>,
    remaining: u64,
    /// Bytes per read.
    chunk: usize,
    /// Sent by the connection's `sendfile` instead: the file, the offset of the next placeholder, and
    /// the slot that notes what each one stands for.
    placeholders: Option<(Arc<File>, u64, FileSlot)>,
}

impl FileBody {
    /// Sends the next `len` bytes of `file` from its current position; a file that turns out shorter
    /// ends the body with an error, so the client sees a cut response, never a short one as whole.
    pub fn new(file: File, len: u64) -> Self {
        FileBody {
            file: Some(file),
            reading: None,
            remaining: len,
            chunk: CHUNK,
            placeholders: None,
        }
    }

    /// As [`FileBody::new`], but with `slot` (the connection can `sendfile`) as placeholders that the
    /// connection sends from the file, a file that turns out shorter cutting the connection there; or,
    /// with `large_reads` ([`LargeReads`]), read [`LARGE_CHUNK`] at a time.
    pub fn sent_by(file: File, len: u64, slot: Option<FileSlot>, large_reads: bool) -> io::Result<Self> {
        let Some(slot) = slot else {
            let chunk = if large_reads { LARGE_CHUNK } else { CHUNK };
            return Ok(FileBody {
                chunk,
                ..Self::new(file, len)
            });
        };
        let offset = (&file).stream_position()?;
        Ok(FileBody {
            file: None,
            reading: None,
            remaining: len,
            chunk: CHUNK,
            placeholders: Some((Arc::new(file), offset, slot)),
        })
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        if let Some((file, offset, slot)) = this.placeholders.as_mut() {
            let len = this.remaining.min(sendfile::SPAN as u64) as usize;
            let placeholder = slot.placeholder(file, *offset, len, this.remaining == len as u64)?;
            *offset += len as u64;
            this.remaining -= len as u64;
            return Poll::Ready(Some(Ok(Frame::data(placeholder))));
        }
        if this.reading.is_none() {
            let Some(file) = this.file.take() else {
                return Poll::Ready(None);
            };
            let want = this.remaining.min(this.chunk as u64);
            // Allocated here, where hyper frees it after the write: one thread's heap reuses it,
            // where buffers allocated on the blocking pool's threads piled up in theirs.
            let mut buf = Vec::with_capacity(want as usize);
            this.reading = Some(tokio::task::spawn_blocking(move || {
                // `read_to_end` reads into the spare capacity without zeroing it first.
                let read = (&file).take(want).read_to_end(&mut buf).map(|_| buf);
                (file, read)
            }));
        }
        let Some(reading) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let (file, read) = match joined {
            Ok(done) => done,
            Err(error) => return Poll::Ready(Some(Err(error.into()))),
        };
        let buf = match read {
            Ok(buf) => buf,
            Err(error) => return Poll::Ready(Some(Err(error.into()))),
        };
        if buf.is_empty() {
            return Poll::Ready(Some(Err("file became shorter while it was sent".into())));
        }
        this.remaining -= buf.len() as u64;
        this.file = Some(file);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::{Seek, SeekFrom, Write};

    #[tokio::test]
    async fn sends_the_bytes_asked_for_in_chunks() {
        let mut file = tempfile::tempfile().unwrap();
        let contents: Vec<u8> = (0..CHUNK * 2 + 1000).map(|i| (i % 251) as u8).collect();
        file.write_all(&contents).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut body = FileBody::new(file, contents.len() as u64);
        let mut sizes = Vec::new();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            sizes.push(data.len());
            got.extend_from_slice(&data);
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 1000]);
        assert!(got == contents, "the same bytes in the same order");
    }

    #[tokio::test]
    async fn large_reads_read_a_mebibyte_at_a_time() {
        let mut file = tempfile::tempfile().unwrap();
        let contents: Vec<u8> = (0..LARGE_CHUNK + 5).map(|i| (i % 251) as u8).collect();
        file.write_all(&contents).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut body = FileBody::sent_by(file, contents.len() as u64, None, true).unwrap();
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
        }
        assert_eq!(sizes, [LARGE_CHUNK, 5]);
    }

    #[tokio::test]
    async fn a_file_cut_short_ends_with_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"abc").unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut body = FileBody::new(file, 10);
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "abc");
        assert!(body.frame().await.unwrap().is_err());
    }
}
