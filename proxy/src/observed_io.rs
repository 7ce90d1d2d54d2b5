//! An IO passed through unchanged but for what an [`IoObserver`] does around it: the one wrapper behind
//! `send_timeout`'s bound on stalled writes, `activity`'s idle clock, and the HTTP/1 and HTTP/2 servers'
//! watches on their connections. Statically dispatched and allocation-free, since every request's bytes
//! pass through it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The outcome of polling an IO operation.
pub type Polled<T = ()> = Poll<io::Result<T>>;

/// What one kind of [`ObservedIo`] notes about, or adds to, the IO it wraps. Every hook passes the IO
/// through unchanged by default.
pub trait IoObserver {
    /// Reads from `io` into `buf`.
    fn poll_read<S: AsyncRead + Unpin>(&mut self, io: &mut S, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Polled {
        Pin::new(io).poll_read(cx, buf)
    }

    /// Sees (and may replace) the outcome of a write, plain or vectored, just polled on the IO.
    fn written(&mut self, _cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
        written
    }

    /// Sees (and may replace) the outcome of a flush just polled on the IO.
    fn flushed(&mut self, _cx: &mut Context<'_>, flushed: Polled) -> Polled {
        flushed
    }

    /// Sees (and may replace) the outcome of a shutdown just polled on the IO.
    fn shut_down(&mut self, _cx: &mut Context<'_>, shut: Polled) -> Polled {
        shut
    }
}

/// `inner`, with every read and write passed through `observer`.
#[derive(Debug)]
pub struct ObservedIo<S, O> {
    inner: S,
    observer: O,
}

impl<S, O> ObservedIo<S, O> {
    /// `inner`, watched by `observer`.
    pub fn observing(inner: S, observer: O) -> Self {
        ObservedIo { inner, observer }
    }

    /// The IO underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// The IO underneath, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The IO underneath and the observer, apart.
    pub fn into_parts(self) -> (S, O) {
        (self.inner, self.observer)
    }
}

impl<S: AsyncRead + Unpin, O: IoObserver + Unpin> AsyncRead for ObservedIo<S, O> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.observer.poll_read(&mut this.inner, cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, O: IoObserver + Unpin> AsyncWrite for ObservedIo<S, O> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.observer.written(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.observer.written(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        this.observer.flushed(cx, flushed)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let shut = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.observer.shut_down(cx, shut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the bytes written, and turns every flush into an error.
    #[derive(Default)]
    struct Tally {
        written: usize,
    }

    impl IoObserver for Tally {
        fn written(&mut self, _cx: &mut Context<'_>, written: Polled<usize>) -> Polled<usize> {
            if let Poll::Ready(Ok(n)) = written {
                self.written += n;
            }
            written
        }

        fn flushed(&mut self, _cx: &mut Context<'_>, _flushed: Polled) -> Polled {
            Poll::Ready(Err(io::Error::other("no flushing")))
        }
    }

    #[tokio::test]
    async fn bytes_pass_unchanged_and_the_observer_sees_them() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut near = ObservedIo::observing(near, Tally::default());
        near.write_all(b"hello").await.unwrap();
        far.write_all(b"back").await.unwrap();
        let mut got = [0u8; 4];
        near.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"back");
        let mut sent = [0u8; 5];
        far.read_exact(&mut sent).await.unwrap();
        assert_eq!(&sent, b"hello");
        assert_eq!(near.observer().written, 5);
        assert_eq!(near.flush().await.unwrap_err().to_string(), "no flushing");
        near.shutdown().await.unwrap();
        assert_eq!(far.read(&mut sent).await.unwrap(), 0);
    }
}
