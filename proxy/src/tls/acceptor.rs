//! The rustls server configuration: ring as the only crypto provider, TLS 1.2 and 1.3 only, ALPN, and
//! session resumption both by ticket and by session id.

use std::sync::Arc;

use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Sessions remembered for resumption by id (and for TLS 1.3 tickets when stateless ones fail); about
/// 200 bytes each, so the cache stays under a few megabytes.
pub const SESSION_CACHE: usize = 10_000;

/// The acceptor for the HTTPS listener, serving whatever certificate `certificates` picks.
pub fn acceptor(certificates: Arc<dyn ResolvesServerCert>) -> Result<TlsAcceptor, rustls::Error> {
    // One provider, named here, so no other crate's default provider is ever consulted.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    // `acme-tls/1` last: only an ACME server validating TLS-ALPN-01 asks for it (see `acme::ChallengeResolver`).
    config.alpn_protocols = vec![
        b"h2".to_vec(),
        b"http/1.1".to_vec(),
        super::acme::ACME_TLS_ALPN.to_vec(),
    ];
    // The provider's order (strongest first, all AEAD with forward secrecy), not whatever a client prefers.
    config.ignore_client_order = true;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
