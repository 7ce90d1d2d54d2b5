//! Error replies: `{"error": {"code": "<code>", "message": "<text>"}}`.

use std::borrow::Cow;

use serde_json::json;

/// An error a handler returns (or the SDK produces) that becomes an error *reply*; the connection lives on.
///
/// The SDK's own codes are `bad_request`, `method_not_found` and `handler_error`; a handler may choose
/// any other code with [`MethodError::new`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct MethodError {
    /// Machine-readable code, e.g. `"not_found"`.
    pub code: Cow<'static, str>,
    /// Human-readable explanation.
    pub message: String,
}

impl MethodError {
    /// An error with a code of the handler's choosing.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        MethodError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The payload was not JSON or had no `head.method`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        MethodError::new("bad_request", message)
    }

    /// No handler is registered under `method`.
    pub fn method_not_found(method: &str) -> Self {
        MethodError::new("method_not_found", format!("no method named '{method}'"))
    }

    /// The handler failed without choosing a code (it raised, threw or panicked).
    pub fn handler_error(message: impl Into<String>) -> Self {
        MethodError::new("handler_error", message)
    }

    /// The reply payload for this error.
    pub fn to_reply(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({ "error": { "code": self.code, "message": self.message } }))
            .expect("an error reply always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_shape() {
        let reply = MethodError::new("not_found", "no todo 3").to_reply();
        assert_eq!(reply, br#"{"error":{"code":"not_found","message":"no todo 3"}}"#);
    }
}
