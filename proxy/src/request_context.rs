//! What the proxy knows about a request beyond the request itself: who sent it and its id. The server
//! puts a [`RequestContext`] in every request's extensions; roles read it from there.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

/// The header that carries the request id, in and out. A `HeaderName`, not a `&str`: every insert by
/// `&str` parses the name and allocates it.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id passed through; a longer one is replaced.
const MAX_ID_LEN: usize = 128;

/// The client's address and the request's id.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The client's address: the socket peer, or the client a trusted proxy or a PROXY header names
    /// (see [`client_address`](crate::client_address)).
    pub peer: SocketAddr,
    /// The request id: the client's `X-Request-Id` when it sent a sensible one, else generated.
    pub id: RequestId,
}

/// A request id, and whether the client chose it. A client-chosen id is fine for tying log lines
/// together, never for a field a backend trusts as the proxy's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    text: Arc<str>,
    from_client: bool,
}

impl RequestId {
    /// Whether the id is the client's own `X-Request-Id`.
    pub fn from_client(&self) -> bool {
        self.from_client
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The request id to use: the incoming `X-Request-Id` if it is short visible ASCII, else a new one.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(generate, |id| RequestId {
            text: Arc::from(id),
            from_client: true,
        })
}

/// A new id made by the proxy: 128 random bits as 32 hex digits.
pub fn generate() -> RequestId {
    // By hand: `format!` costs every request more than the rest of this module together.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let bits = rand::rng().random::<u128>();
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = DIGITS[(bits >> (124 - 4 * i)) as usize & 0xf];
    }
    RequestId {
        text: Arc::from(std::str::from_utf8(&hex).expect("hex digits are ASCII")),
        from_client: false,
    }
}

/// The id as a header value (it is visible ASCII by construction).
pub fn header_value(id: &str) -> HeaderValue {
    HeaderValue::from_str(id).expect("request ids are visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensible_ids_pass_through_others_are_replaced() {
        let mut headers = HeaderMap::new();
        assert_eq!(request_id(&headers).len(), 32);
        assert!(!request_id(&headers).from_client());
        headers.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(&*request_id(&headers), "abc-123");
        assert!(request_id(&headers).from_client());
        headers.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        assert_ne!(&*request_id(&headers), "has space");
        assert!(!request_id(&headers).from_client());
        headers.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(200)).unwrap());
        assert_eq!(request_id(&headers).len(), 32);
        assert_ne!(generate(), generate());
        assert!(generate()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
