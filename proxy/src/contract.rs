//! Method contracts (`_describe`, docs/PROTOCOL.md section 5): what a backend's answer to `_describe`
//! means, and how long the proxy keeps one. Pure decisions; the gateway does the asking.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// The request frame that asks a backend for its contract.
pub const DESCRIBE_REQUEST: &[u8] = br#"{"head":{"method":"_describe"}}"#;

/// How long a fetched document is served before a node is asked again, when nothing says the nodes
/// changed: short, because a backend redeployed without the proxy seeing a connection end may change its
/// methods; long enough that a page load asking for it costs a backend nothing.
pub const DESCRIBE_TTL: Duration = Duration::from_secs(30);

/// What a backend's reply to `_describe` says.
#[derive(Debug, PartialEq)]
pub enum Described {
    /// The contract document, checked for shape, as the backend's bytes.
    Document(Bytes),
    /// The backend does not implement `_describe` (`method_not_found`).
    NotImplemented,
    /// Any other reply: an error reply or a document without a `methods` array.
    Bad(String),
}

/// Reads a `_describe` reply.
pub fn read_reply(reply: Bytes) -> Described {
    let value: Value = match serde_json::from_slice(&reply) {
        Ok(value) => value,
        Err(error) => return Described::Bad(format!("reply is not JSON: {error}")),
    };
    if let Some(error) = value.get("error") {
        let code = error.get("code").and_then(Value::as_str).unwrap_or("");
        return if code == "method_not_found" {
            Described::NotImplemented
        } else {
            Described::Bad(format!("backend answered _describe with an error: {error}"))
        };
    }
    match value.get("methods").and_then(Value::as_array) {
        Some(methods) if methods.iter().all(|m| m.get("name").is_some_and(Value::is_string)) => {
            Described::Document(reply)
        }
        _ => Described::Bad("the document has no \"methods\" array of named methods".to_owned()),
    }
}

/// One module's last document, when it was fetched, and the module's node generation then.
///
/// The generation is a count that moves whenever a node may have been replaced: it was masked, the set
/// changed, or a backend closed a connection the proxy held (a restart does). A document from another
/// generation is asked again, so a redeployed backend's new methods show at its first reconnect.
#[derive(Debug, Default)]
pub struct Cached {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    at: Instant,
    generation: u64,
    document: Bytes,
}

impl Cached {
    /// The document, if it is younger than [`DESCRIBE_TTL`] at `now` and of `generation`.
    pub fn fresh(&self, now: Instant, generation: u64) -> Option<Bytes> {
        match &self.held {
            Some(held) if held.generation == generation && now.duration_since(held.at) < DESCRIBE_TTL => {
                Some(held.document.clone())
            }
            _ => None,
        }
    }

    /// Keeps `document`, fetched at `now` in `generation`.
    pub fn store(&mut self, document: Bytes, now: Instant, generation: u64) {
        self.held = Some(Held {
            at: now,
            generation,
            document,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_with_named_methods_is_kept_byte_for_byte() {
        let reply = Bytes::from_static(br#"{"methods":[{"name":"add","doc":null,"data":{},"result":{}}]}"#);
        assert_eq!(read_reply(reply.clone()), Described::Document(reply));
    }

    #[test]
    fn method_not_found_means_not_implemented_and_other_errors_are_bad() {
        let missing = br#"{"error":{"code":"method_not_found","message":"no method named '_describe'"}}"#;
        assert_eq!(read_reply(Bytes::from_static(missing)), Described::NotImplemented);
        let failed = br#"{"error":{"code":"handler_error","message":"boom"}}"#;
        assert!(matches!(read_reply(Bytes::from_static(failed)), Described::Bad(_)));
        assert!(matches!(
            read_reply(Bytes::from_static(b"{\"echo\":1}")),
            Described::Bad(_)
        ));
        assert!(matches!(read_reply(Bytes::from_static(b"not json")), Described::Bad(_)));
    }

    #[test]
    fn a_document_is_served_until_its_ttl() {
        let start = Instant::now();
        let mut cached = Cached::default();
        assert_eq!(cached.fresh(start, 0), None);
        cached.store(Bytes::from_static(b"{}"), start, 0);
        assert!(cached
            .fresh(start + DESCRIBE_TTL - Duration::from_millis(1), 0)
            .is_some());
        assert_eq!(cached.fresh(start + DESCRIBE_TTL, 0), None);
    }

    #[test]
    fn a_document_from_another_generation_is_asked_again() {
        let start = Instant::now();
        let mut cached = Cached::default();
        cached.store(Bytes::from_static(b"{}"), start, 3);
        assert!(cached.fresh(start, 3).is_some());
        assert_eq!(cached.fresh(start, 4), None, "a node reconnected since");
    }
}
