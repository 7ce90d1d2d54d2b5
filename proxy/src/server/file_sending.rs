//! The connection side of `sendfile` (the body side and the rules are in `static_site/sendfile.rs`):
//! an IO that sends the file range a placeholder stands for with `sendfile(2)` when a write begins with
//! one, and refuses any placeholder that is not exactly what its connection owes.
//!
//! Plain TCP gets a [`FileSlot`], which [`WithSlot`] puts in every request of the connection; TLS and
//! HTTP/2 connections get none, so their bodies never yield placeholders, and should one reach their IO
//! anyway it ends the connection there.

use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::observed_io::Polled;
use crate::static_site::file_body::LargeReads;
use crate::static_site::sendfile::{front_for, is_placeholder, FileSlot};

/// A socket that may be able to send a file's bytes itself.
pub(crate) trait SendsFiles {
    /// Whether [`SendsFiles::poll_send_file`] works here.
    const SENDFILE: bool;

    /// Sends up to `len` bytes of `file` from `offset`: how many the socket took (0 at the file's end).
    fn poll_send_file(&self, cx: &mut Context<'_>, file: &File, offset: u64, len: usize) -> Polled<usize>;

    /// Holds back partial segments (`TCP_CORK`) while a file goes out, or lets them go.
    fn cork(&self, _on: bool) {}
}

impl SendsFiles for TcpStream {
    const SENDFILE: bool = cfg!(target_os = "linux");

    #[cfg(target_os = "linux")]
    fn poll_send_file(&self, cx: &mut Context<'_>, file: &File, offset: u64, len: usize) -> Polled<usize> {
        // The file's pages are read in this call, on the runtime's thread, as nginx does without `aio`:
        // a file that is not in the page cache makes the connection's task wait for the disk.
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            let mut at = offset;
            let sent = self.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(self, file, Some(&mut at), len).map_err(io::Error::from)
            });
            match sent {
                Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                    continue
                }
                sent => return Poll::Ready(sent),
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn poll_send_file(&self, _cx: &mut Context<'_>, _file: &File, _offset: u64, _len: usize) -> Polled<usize> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }

    // As nginx's `tcp_nopush` with `sendfile`: the head leaves in the file's first segment, and no
    // partial segment goes out until the file's end. On loopback this also moves sending from the
    // client's ACK processing into ours (the bench's CPU per MiB counts it; see bench/RESULTS.md).
    // The kernel lets a forgotten cork go after 200 ms; failing to set it only changes segment sizes.
    #[cfg(target_os = "linux")]
    fn cork(&self, on: bool) {
        let _ = rustix::net::sockopt::set_tcp_cork(self, on);
    }
}

impl SendsFiles for TlsStream<TcpStream> {
    // The file's bytes must be encrypted in user space.
    const SENDFILE: bool = false;

    fn poll_send_file(&self, _cx: &mut Context<'_>, _file: &File, _offset: u64, _len: usize) -> Polled<usize> {
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// `io`, sending the file ranges of its [`FileSlot`]'s placeholders with `sendfile`.
pub(crate) struct FileSending<T> {
    io: T,
    slot: Option<FileSlot>,
    /// `TCP_CORK` is on: a file is going out.
    corked: bool,
}

impl<T: SendsFiles> FileSending<T> {
    /// `io`, with a slot when it can `sendfile`. For HTTP/1.1: hyper must write body buffers as they are.
    pub fn new(io: T) -> Self {
        FileSending {
            io,
            slot: T::SENDFILE.then(FileSlot::default),
            corked: false,
        }
    }

    /// `io` without a slot, refusing placeholders: for a connection that may copy body buffers (HTTP/2).
    pub fn refusing(io: T) -> Self {
        FileSending {
            io,
            slot: None,
            corked: false,
        }
    }

    /// The socket under it.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// `service`, putting this connection's slot in each request, or, on an HTTP/1.1 connection without
    /// one, [`LargeReads`] (a response at a time, so one large read buffer per connection at most).
    pub fn serving<S>(&self, service: S) -> WithSlot<S> {
        WithSlot {
            inner: service,
            slot: self.slot.clone(),
        }
    }
}

fn astray(what: &str) -> io::Error {
    io::Error::other(format!(
        "{what}; closing the connection rather than send a placeholder's zeros"
    ))
}

impl<T: AsyncWrite + SendsFiles + Unpin> AsyncWrite for FileSending<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().position(|buf| is_placeholder(buf));
        let Some(slot) = &this.slot else {
            if first.is_some() {
                return Poll::Ready(Err(astray(
                    "a file placeholder reached a connection that cannot sendfile",
                )));
            }
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        };
        let mut owed = slot.owed();
        if first.is_some() && !this.corked {
            // The head and the file leave in full segments, the head in the first one.
            this.io.cork(true);
            this.corked = true;
        }
        match first {
            Some(0) => {
                let front = front_for(&mut owed, &bufs[0])?;
                let offset = front.offset + front.sent as u64;
                let sent = std::task::ready!(this.io.poll_send_file(cx, &front.file, offset, bufs[0].len()))?;
                if sent == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file became shorter while it was sent",
                    )));
                }
                front.sent += sent;
                if front.sent == front.len {
                    let last = front.last;
                    owed.pop_front();
                    if last && this.corked {
                        this.io.cork(false);
                        this.corked = false;
                    }
                }
                Poll::Ready(Ok(sent))
            }
            // What comes before the placeholder (the response head) goes out as it is.
            Some(before) => {
                drop(owed);
                Pin::new(&mut this.io).poll_write_vectored(cx, &bufs[..before])
            }
            // hyper writes every buffer it holds at once; a range owed and no placeholder in the write
            // means its bytes were copied somewhere (a flattening write strategy).
            None if !owed.is_empty() => {
                Poll::Ready(Err(astray("file ranges are owed but their placeholders are gone")))
            }
            None => {
                drop(owed);
                Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FileSending<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// A connection's service, putting the connection's [`FileSlot`] (or else [`LargeReads`]) in each
/// `GET` request's extensions.
#[derive(Clone)]
pub(crate) struct WithSlot<S> {
    inner: S,
    slot: Option<FileSlot>,
}

impl<S: hyper::service::Service<Request<B>>, B> hyper::service::Service<Request<B>> for WithSlot<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        // Only a GET is answered with a file's body; other requests are spared the insert.
        if request.method() == http::Method::GET {
            if let Some(slot) = &self.slot {
                request.extensions_mut().insert(slot.clone());
            } else {
                request.extensions_mut().insert(LargeReads);
            }
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use bytes::{Buf, Bytes};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::static_site::sendfile::SPAN;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        (near, listener.accept().await.unwrap().0)
    }

    fn file(contents: &[u8]) -> Arc<File> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(contents).unwrap();
        Arc::new(file)
    }

    /// Writes `bufs` as hyper does: each write with every buffer left, advancing by what it took.
    async fn write_as_hyper<T: AsyncWrite + SendsFiles + Unpin>(
        io: &mut FileSending<T>,
        mut bufs: Vec<Bytes>,
    ) -> io::Result<()> {
        while !bufs.is_empty() {
            let slices: Vec<IoSlice<'_>> = bufs.iter().map(|buf| IoSlice::new(buf)).collect();
            let mut n = std::future::poll_fn(|cx| Pin::new(&mut *io).poll_write_vectored(cx, &slices)).await?;
            drop(slices);
            while n > 0 {
                let take = n.min(bufs[0].len());
                bufs[0].advance(take);
                n -= take;
                if bufs[0].is_empty() {
                    bufs.remove(0);
                }
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn placeholders_go_out_as_the_files_bytes() {
        let (near, mut far) = pair().await;
        let mut io = FileSending::new(near);
        let slot = io.slot.clone().unwrap();
        let contents: Vec<u8> = (0..SPAN * 2 + 1000).map(|i| (i % 251) as u8 + 1).collect();
        let file = file(&contents);
        let mut bufs = vec![Bytes::from_static(b"HEAD")];
        for at in (0..contents.len()).step_by(SPAN) {
            let len = SPAN.min(contents.len() - at);
            bufs.push(slot.placeholder(&file, at as u64, len, false).unwrap());
        }
        bufs.push(Bytes::from_static(b"TAIL"));
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        write_as_hyper(&mut io, bufs).await.unwrap();
        assert!(slot.owed().is_empty());
        drop(io);
        let got = reading.await.unwrap();
        assert!(got == [&b"HEAD"[..], &contents, b"TAIL"].concat());
    }

    /// The cork set for a file is lifted at its end: its tail (and what follows) leaves at once, not
    /// after the kernel's 200 ms.
    #[tokio::test]
    async fn a_files_tail_leaves_without_waiting() {
        let (near, mut far) = pair().await;
        let mut io = FileSending::new(near);
        let slot = io.slot.clone().unwrap();
        let file = file(&[5u8; 1000]);
        for _ in 0..3 {
            let bufs = vec![
                Bytes::from_static(b"HEAD"),
                slot.placeholder(&file, 0, 1000, true).unwrap(),
            ];
            let started = std::time::Instant::now();
            write_as_hyper(&mut io, bufs).await.unwrap();
            let mut got = vec![0u8; 1004];
            far.read_exact(&mut got).await.unwrap();
            assert!(
                started.elapsed() < std::time::Duration::from_millis(150),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(&got[..4], b"HEAD");
        }
    }

    #[tokio::test]
    async fn a_placeholder_astray_ends_the_connection_before_a_byte_of_it() {
        let file = file(&[7u8; 1000]);
        // On a connection without a slot (TLS, HTTP/2).
        let (near, _far) = pair().await;
        let mut io = FileSending::refusing(near);
        let stray = FileSlot::default().placeholder(&file, 0, 1000, false).unwrap();
        assert!(write_as_hyper(&mut io, vec![stray]).await.is_err());
        // Not the range owed next.
        let (near, _far) = pair().await;
        let mut io = FileSending::new(near);
        let slot = io.slot.clone().unwrap();
        let first = slot.placeholder(&file, 0, 10, false).unwrap();
        let second = slot.placeholder(&file, 10, 990, false).unwrap();
        assert!(write_as_hyper(&mut io, vec![second, first]).await.is_err());
        // Copied out of its placeholder (a flattening write strategy): owed, and not in the write.
        let (near, _far) = pair().await;
        let mut io = FileSending::new(near);
        let slot = io.slot.clone().unwrap();
        let copied = Bytes::from(slot.placeholder(&file, 0, 1000, false).unwrap().to_vec());
        assert!(write_as_hyper(&mut io, vec![Bytes::from_static(b"HEAD"), copied])
            .await
            .is_err());
    }
}
