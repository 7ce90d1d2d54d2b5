//! The rustls server configuration: ring as the only crypto provider, TLS 1.2 and 1.3 only, ALPN, and
//! session resumption both by ticket and by session id.

use std::sync::Arc;

use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// Sessions remembered for resumption by id (and for TLS 1.3 tickets when stateless ones fail); about
/// 200 bytes each, so the cache stays under a few megabytes.
pub const SESSION_CACHE: usize = 10_000;

/// ring's suites in Mozilla's order ("intermediate" and "modern"): AES-128-GCM first. All are AEAD with
/// forward secrecy. AES-128 rather than ring's AES-256 first because the suite's hash runs the handshake's
/// key schedule: SHA-256 has CPU instructions (SHA-NI) that ring uses, SHA-384 has none and ring only
/// vectorises it on Intel. On the bench's AMD EPYC, SHA-384 was 9.5 % of a new connection's CPU and
/// SHA-256 is 2.3 %; the client saves alike.
const CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::ring::cipher_suite::*;
    &[
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// The acceptor for the HTTPS listener, serving whatever certificate `certificates` picks.
pub fn acceptor(certificates: Arc<dyn ResolvesServerCert>) -> Result<TlsAcceptor, rustls::Error> {
    // One provider, named here, so no other crate's default provider is ever consulted.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::ring::default_provider()
    });
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
    // `CIPHER_SUITES`' order, not whatever a client prefers.
    config.ignore_client_order = true;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
