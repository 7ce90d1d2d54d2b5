//! HTTPS: the certificates the listener serves (chosen by SNI, re-read when their files change), the
//! rustls configuration (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, resumption), and the plain-HTTP
//! redirect to HTTPS; certificates from ACME; `modproxy cert local`'s development CA; and TLS to
//! `https://` upstreams ([`upstream`]). The listener in [`server`](crate::server) does the I/O.

pub mod acceptor;
pub mod acme;
pub mod certificates;
pub mod local_ca;
pub mod redirect;
pub mod upstream;
