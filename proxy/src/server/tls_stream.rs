//! The TLS side of an HTTPS connection: the handshake, bounded in time, and what it agreed.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::http1_parking::Parkable;

/// Completes the handshake within `timeout` (the header timeout: a client that stalls it holds a slot).
/// `Ok(None)` when the server is stopping, or when the handshake was a TLS-ALPN-01 check, which ends
/// there (RFC 8737: no application data follows).
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    stopping: &CancellationToken,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    tokio::select! {
        () = stopping.cancelled() => Ok(None),
        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) if stream.get_ref().1.alpn_protocol() == Some(crate::tls::acme::ACME_TLS_ALPN) => {
                tracing::debug!("TLS-ALPN-01 check answered");
                Ok(None)
            }
            Ok(stream) => stream.map(Some),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
        },
    }
}

/// Whether ALPN chose HTTP/2.
pub(super) fn is_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

impl Parkable for TlsStream<TcpStream> {
    // Parked only once hyper has read all rustls had decrypted (it waits for a head), so nothing is
    // buffered above the socket.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        self.get_ref().0.readable()
    }
}
