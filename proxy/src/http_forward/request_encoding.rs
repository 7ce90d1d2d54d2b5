//! A bodyless request as the bytes a pipelined connection writes: request line and header section
//! (RFC 9112, section 3). Pure: the lane copies these bytes into its write.

use bytes::BufMut;
use http::{header, HeaderMap, HeaderValue, Method};

/// A request ready for the wire.
#[derive(Debug)]
pub struct Head {
    /// A `Vec`, not `Bytes`: it is only copied into its lane's write, and freezing one allocates.
    bytes: Vec<u8>,
    head_only: bool,
}

impl Head {
    /// The request line and header section of a bodyless request to `target` (origin form), with `host`
    /// in place of any `Host` among `headers`.
    pub fn new(method: &Method, target: &str, host: &HeaderValue, headers: &HeaderMap) -> Head {
        let mut bytes = Vec::with_capacity(256);
        bytes.put_slice(method.as_str().as_bytes());
        bytes.put_u8(b' ');
        bytes.put_slice(target.as_bytes());
        bytes.put_slice(b" HTTP/1.1\r\nhost: ");
        bytes.put_slice(host.as_bytes());
        bytes.put_slice(b"\r\n");
        for (name, value) in headers.iter().filter(|(name, _)| *name != header::HOST) {
            bytes.put_slice(name.as_str().as_bytes());
            bytes.put_slice(b": ");
            bytes.put_slice(value.as_bytes());
            bytes.put_slice(b"\r\n");
        }
        bytes.put_slice(b"\r\n");
        Head {
            bytes,
            head_only: method == Method::HEAD,
        }
    }

    /// The request as it goes on the wire.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the request was `HEAD`, whose response has no body whatever its headers say.
    pub fn head_only(&self) -> bool {
        self.head_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_given_replaces_the_requests_own() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("client.example"));
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let head = Head::new(
            &Method::GET,
            "/p/x?q=1",
            &HeaderValue::from_static("node:8080"),
            &headers,
        );
        assert_eq!(
            head.bytes(),
            b"GET /p/x?q=1 HTTP/1.1\r\nhost: node:8080\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        assert!(!head.head_only());
        assert!(Head::new(&Method::HEAD, "/", &HeaderValue::from_static("h"), &HeaderMap::new()).head_only());
    }
}
