//! TLS to `https://` upstream nodes: how their certificates are checked, and the connections to them.
//!
//! Certificates are verified against the system's roots (read by rustls-native-certs from the store
//! Debian's ca-certificates keeps, so a CA an operator added with `update-ca-certificates` counts as it
//! does for curl) plus the module's `ca_file`. The node's host name is sent as SNI and checked against
//! the certificate. `insecure = true` checks nothing but the handshake's own signatures.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a module's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("ca_file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("ca_file {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("ca_file {}: {why}", path.display())]
    BadCertificate { path: PathBuf, why: String },
    #[error("proxy_pass {node:?}: {host:?} is not a host name or IP address a certificate can be checked against")]
    BadName { node: String, host: String },
}

/// How connections to one module's nodes are opened: plain TCP for `http://` nodes, TLS over it for
/// `https://` ones, whose certificate must carry the host name the node is sent as `Host` (for a node
/// found through DNS, the name configured, not the address it resolved to).
#[derive(Clone)]
pub struct Connector {
    /// `None` when no node is `https://`.
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls.is_some()).finish()
    }
}

impl Connector {
    /// Plain TCP to every node.
    pub fn plain() -> Connector {
        Connector { tls: None }
    }

    /// The connector for `nodes` (a module's `proxy_pass` URLs); the roots are read only if one is
    /// `https://`.
    pub fn for_nodes(nodes: &[String], ca_file: Option<&Path>, insecure: bool) -> Result<Connector, UpstreamTlsError> {
        let names = nodes
            .iter()
            .map(|node| server_name(node))
            .collect::<Result<Vec<_>, _>>()?;
        if names.iter().all(Option::is_none) {
            return Ok(Connector::plain());
        }
        let roots = if insecure {
            RootCertStore::empty()
        } else {
            roots(ca_file)?
        };
        Ok(Connector {
            tls: Some(TlsConnector::from(Arc::new(client_config(roots, insecure)))),
        })
    }

    /// A connection to `address`, with TLS when `tls_name` gives the name the certificate must carry (an
    /// `https://` node's). `timeout` bounds the TCP connect and the handshake together.
    pub async fn connect(
        &self,
        address: &str,
        tls_name: Option<&str>,
        timeout: Duration,
    ) -> io::Result<UpstreamStream> {
        let name =
            match (&self.tls, tls_name) {
                (Some(_), Some(name)) => Some(ServerName::try_from(name.to_owned()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is no TLS server name"))
                })?),
                _ => None,
            };
        let open = async {
            let tcp = TcpStream::connect(address).await?;
            tcp.set_nodelay(true)?;
            let (Some(name), Some(tls)) = (name, &self.tls) else {
                return Ok(UpstreamStream::Plain(tcp));
            };
            match tls.connect(name.clone(), tcp).await {
                Ok(tls) => Ok(UpstreamStream::Tls(Box::new(tls))),
                Err(error) => Err(handshake_failed(&name, error)),
            }
        };
        tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

/// Whether `nodes` and `ca_file` can be used (for the config's check): every `https://` node names a
/// host a certificate can carry, and the file holds certificates.
pub fn check(nodes: &[String], ca_file: Option<&Path>) -> Result<(), UpstreamTlsError> {
    for node in nodes {
        server_name(node)?;
    }
    if let Some(path) = ca_file {
        let mut roots = RootCertStore::empty();
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|why| UpstreamTlsError::BadCertificate {
                path: path.to_owned(),
                why: why.to_string(),
            })?;
        }
    }
    Ok(())
}

/// The name an `https://` node's certificate must carry; `None` for an `http://` node.
fn server_name(node: &str) -> Result<Option<ServerName<'static>>, UpstreamTlsError> {
    let Ok(uri) = node.parse::<Uri>() else { return Ok(None) };
    if uri.scheme_str() != Some("https") {
        return Ok(None);
    }
    let host = uri.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map(Some)
        .map_err(|_| UpstreamTlsError::BadName {
            node: node.to_owned(),
            host: host.to_owned(),
        })
}

/// The system's roots (read once per process) and those of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, UpstreamTlsError> {
    let mut roots = system_roots().clone();
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|why| UpstreamTlsError::BadCertificate {
                path: path.to_owned(),
                why: why.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// The certificates in a PEM file; at least one.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let pem = std::fs::read(path).map_err(|source| UpstreamTlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|why| UpstreamTlsError::BadCertificate {
                path: path.to_owned(),
                why: why.to_string(),
            })?;
    if certs.is_empty() {
        return Err(UpstreamTlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "could not read some of the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates for https:// upstreams");
        roots
    })
}

fn client_config(roots: RootCertStore, insecure: bool) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Upstreams are spoken to in HTTP/1.1; saying so keeps an h2-preferring server from choosing h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if insecure {
        let algorithms = provider.signature_verification_algorithms;
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Unchecked { algorithms }));
    }
    config
}

/// `insecure = true`: any certificate is taken; the handshake is still signed by its key.
#[derive(Debug)]
struct Unchecked {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A failed handshake as the log says it: what was wrong, and what to do about it.
fn handshake_failed(name: &ServerName<'_>, error: io::Error) -> io::Error {
    let why = match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls) => explain(rustls),
        None => error.to_string(),
    };
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!("TLS handshake with {} failed: {why}", name.to_str()),
    )
}

/// Says why a handshake failed, in words an operator can act on.
fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate from an unknown issuer (set ca_file to the CA that signed it)".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "name mismatch: the certificate is not valid for this host name (proxy_pass must name a host the certificate lists)"
            .to_owned(),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the certificate has expired".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the certificate is not valid yet (is the clock right?)".to_owned(),
        rustls::Error::InvalidCertificate(other) => format!("bad certificate: {other:?}"),
        other => other.to_string(),
    }
}

/// A connection to an upstream node, plain or TLS.
pub enum UpstreamStream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`. Boxed: the TLS state is large, the plain case common.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            UpstreamStream::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            UpstreamStream::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(stream) => stream.is_write_vectored(),
            UpstreamStream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            UpstreamStream::Tls(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            UpstreamStream::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_nodes_get_a_server_name() {
        assert!(server_name("http://a.example:80").unwrap().is_none());
        let name = server_name("https://a.example:8443").unwrap().unwrap();
        assert_eq!(name.to_str(), "a.example");
        let ip = server_name("https://[::1]:8443").unwrap().unwrap();
        assert_eq!(ip.to_str(), "::1");
    }

    #[test]
    fn handshake_errors_say_what_to_fix() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(explain(&unknown).contains("unknown issuer"));
        assert!(explain(&unknown).contains("ca_file"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(explain(&name).contains("name mismatch"));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert!(explain(&expired).contains("expired"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = Connector::for_nodes(&["https://a:1".to_owned()], Some(&path), false).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        let missing = Connector::for_nodes(&["https://a:1".to_owned()], Some(&dir.path().join("nope")), false);
        assert!(missing.unwrap_err().to_string().contains("nope"));
    }
}
