//! A backend node as every module sees it, built once from the config.

use std::sync::Arc;

use http::{HeaderValue, Uri};

/// One node of a module or `[[stream]]`: where its connections go, what it is called, what `Host` it is
/// sent, and its weight. Modules index their per-node state (health, pools, lanes) by its position.
#[derive(Debug, Clone)]
pub struct Node {
    name: Arc<str>,
    address: String,
    host_header: HeaderValue,
    weight: u32,
}

impl Node {
    /// The node the config names `configured` (`host:port`, or `http://host[:port]` for HTTP modules).
    pub fn new(configured: &str, weight: u32) -> Self {
        let (address, host_header) = if configured.contains("://") {
            let uri = configured.parse::<Uri>().ok();
            let host = uri.as_ref().and_then(Uri::host).unwrap_or("localhost");
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let https = uri.as_ref().and_then(Uri::scheme_str) == Some("https");
            let port = uri
                .as_ref()
                .and_then(Uri::port_u16)
                .unwrap_or(if https { 443 } else { 80 });
            let address = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            // The authority as configured: a URL without a port is sent `Host: name`, not `name:80`.
            let authority = uri.as_ref().and_then(Uri::authority).map_or("", |a| a.as_str());
            let host_header =
                HeaderValue::from_str(authority).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
            (address, host_header)
        } else {
            let host_header =
                HeaderValue::from_str(configured).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
            (configured.to_owned(), host_header)
        };
        Node {
            name: Arc::from(configured),
            address,
            host_header,
            weight,
        }
    }

    /// The same node, sent `host` as `Host` (a node found through a DNS name keeps the name configured).
    pub fn with_host(mut self, host: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(host) {
            self.host_header = value;
        }
        self
    }

    /// The nodes of `configured`, in order, each with its weight (1 where `weights` has none).
    pub fn list(configured: &[String], weights: &[u32]) -> Vec<Node> {
        configured
            .iter()
            .enumerate()
            .map(|(i, node)| Node::new(node, weights.get(i).copied().unwrap_or(1)))
            .collect()
    }

    /// The node as the config names it: for log lines, metrics and the access log (`ServedBy`).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// `host:port` (IPv6 in brackets), as a socket connects to it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The `Host` an HTTP upstream is sent unless the client's is passed on (`pass_host`).
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// For an `https://` node, the name its certificate must carry: the host of the `Host` it is sent (for
    /// a node found through DNS, the name configured, not the address it resolved to).
    pub fn tls_name(&self) -> Option<String> {
        if !self.name.starts_with("https://") {
            return None;
        }
        let authority = self.host_header.to_str().ok()?;
        let host = authority
            .parse::<http::uri::Authority>()
            .map_or(authority.to_owned(), |authority| {
                authority
                    .host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            });
        Some(host)
    }

    /// Its share of requests relative to the other nodes.
    pub fn weight(&self) -> u32 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_node_connects_to_host_and_port_and_is_sent_its_authority() {
        let node = Node::new("http://127.0.0.1:8081", 2);
        assert_eq!(node.address(), "127.0.0.1:8081");
        assert_eq!(node.host_header(), "127.0.0.1:8081");
        assert_eq!(&**node.name(), "http://127.0.0.1:8081");
        assert_eq!(node.weight(), 2);
        let node = Node::new("http://example.test", 1);
        assert_eq!(
            (node.address(), node.host_header().as_bytes()),
            ("example.test:80", &b"example.test"[..])
        );
        assert_eq!(Node::new("http://[::1]:9000", 1).address(), "[::1]:9000");
        let node = Node::new("https://example.test", 1);
        assert_eq!(
            (node.address(), node.host_header().as_bytes()),
            ("example.test:443", &b"example.test"[..])
        );
    }

    #[test]
    fn a_socket_node_is_its_address() {
        let node = Node::new("127.0.0.1:9000", 1);
        assert_eq!((node.address(), &**node.name()), ("127.0.0.1:9000", "127.0.0.1:9000"));
    }
}
