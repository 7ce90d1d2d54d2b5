//! Dispatch on `head.method`: the [`Backend`] trait, the type-erased [`Handler`], and [`dispatch`],
//! which turns one request payload into one reply payload.
//!
//! This is the seam the language bindings use: Python and Node register one [`Handler`] per method in a
//! [`crate::Router`] and hand it to [`crate::Server`]; they never see frames or sockets.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;
use serde_json::Value;

use crate::envelope::{method_of, Request};
use crate::error::MethodError;
use crate::pipeline::PIPELINE_METHOD;

/// A boxed, sendable future, the return type of [`Handler::call`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler produces: a JSON value for the reply, or an error reply.
pub type HandlerResult = Result<Value, MethodError>;

/// What a handler that writes its own JSON produces: the reply payload, already serialised, or an error
/// reply. The bytes must be one UTF-8 JSON document; [`dispatch`] sends them as they are.
pub type RawHandlerResult = Result<Vec<u8>, MethodError>;

/// A backend: something that answers requests. Implement it on your own type to `match` on the method
/// name yourself, or use a [`crate::Router`].
pub trait Backend: Send + Sync + 'static {
    /// Answers one request. Errors become error replies; a panic becomes a `handler_error` reply.
    fn handle(&self, request: Request) -> impl Future<Output = HandlerResult> + Send;

    /// Answers one request with the reply payload already serialised; this is what [`dispatch`] calls.
    /// The default serialises what [`Backend::handle`] returns. Override it when replies come as JSON text
    /// anyway (a [`crate::Router`] passes it on to each handler's [`Handler::call_raw`]), so that a reply is
    /// never parsed into a [`Value`] only to be written out again.
    fn handle_raw(&self, request: Request) -> impl Future<Output = RawHandlerResult> + Send {
        let reply = self.handle(request);
        async move { reply.await.and_then(|value| encode_reply(&value)) }
    }
}

/// One method's handler, type-erased so that a router can hold handlers of any origin
/// (typed Rust closures, Python callables, JavaScript functions).
pub trait Handler: Send + Sync + 'static {
    /// Calls the handler with the whole request.
    fn call(&self, request: Request) -> BoxFuture<HandlerResult>;

    /// Calls the handler and returns the reply payload already serialised. The default serialises what
    /// [`Handler::call`] returns; a handler whose language hands back JSON text (Node's `JSON.stringify`)
    /// or that can serialise its typed reply directly overrides it to skip the [`Value`] in between.
    fn call_raw(&self, request: Request) -> BoxFuture<RawHandlerResult> {
        let reply = self.call(request);
        Box::pin(async move { reply.await.and_then(|value| encode_reply(&value)) })
    }
}

/// Serialises a reply value; a failure (a map with non-string keys, say) is the handler's error.
pub fn encode_reply<T: serde::Serialize + ?Sized>(reply: &T) -> RawHandlerResult {
    serde_json::to_vec(reply).map_err(|e| MethodError::handler_error(format!("the reply is not serialisable: {e}")))
}

impl<F, Fut> Handler for F
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, request: Request) -> BoxFuture<HandlerResult> {
        Box::pin(self(request))
    }
}

/// The reply to the built-in `_ping` method, served by every backend.
pub const PING_METHOD: &str = "_ping";

/// Turns one request payload into one reply payload: decode, answer `_ping`, call the backend, encode.
/// `_pipeline` reaches it only when it is not a connection's first frame, and is refused.
/// Never fails: every problem becomes an error reply.
pub async fn dispatch<B: Backend>(backend: &B, payload: &[u8]) -> Vec<u8> {
    let request = match Request::from_slice(payload) {
        Ok(request) => request,
        Err(error) => return error.to_reply(),
    };
    if request.head.method == PING_METHOD {
        return br#"{"pong":true}"#.to_vec();
    }
    if request.head.method == PIPELINE_METHOD {
        // The server answers it as a connection's first frame; anywhere else it would change the meaning
        // of replies already owed.
        return MethodError::bad_request(format!(
            "'{PIPELINE_METHOD}' is accepted only as the first frame of a connection"
        ))
        .to_reply();
    }
    // `handle` is called inside the caught future: a backend may panic before it returns its future.
    let outcome = AssertUnwindSafe(async move { backend.handle_raw(request).await })
        .catch_unwind()
        .await;
    // The method's name is read again from the payload on the way to an error reply, rather than copied
    // out of every request before the backend takes it.
    let error = match outcome {
        Ok(Ok(payload)) => return payload,
        Ok(Err(error)) => error,
        Err(panic) => {
            // `&*panic`, not `&panic`: a `&Box<dyn Any>` would coerce to a `dyn Any` holding the Box.
            let message = panic_message(&*panic);
            let method = method_of(payload).unwrap_or_default();
            tracing::error!(method = &*method, panic = message, "handler panicked");
            MethodError::handler_error(format!("handler for '{method}' panicked: {message}"))
        }
    };
    tracing::debug!(
        method = &*method_of(payload).unwrap_or_default(),
        code = %error.code,
        message = error.message,
        "error reply"
    );
    error.to_reply()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::Router;
    use serde_json::json;

    fn reply(bytes: Vec<u8>) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    /// A backend of its own design that would answer any method, `_ping` included.
    struct AnswersEverything;

    impl Backend for AnswersEverything {
        async fn handle(&self, _request: Request) -> HandlerResult {
            Ok(json!("shadowed"))
        }
    }

    #[tokio::test]
    async fn ping_is_answered_before_the_backend() {
        let payload = Request::new(PING_METHOD, Value::Null).to_vec();
        assert_eq!(dispatch(&AnswersEverything, &payload).await, br#"{"pong":true}"#);
    }

    #[tokio::test]
    async fn every_failure_is_a_reply() {
        let router = Router::new()
            .handler("boom", |_: Request| async { panic!("with a message {}", 42) })
            .handler("str_boom", |_: Request| async { std::panic::panic_any("static str") });
        let cases = [
            (&b"{"[..], "bad_request", "not valid JSON"),
            (br#"{"head":{"method":"nope"}}"#, "method_not_found", "'nope'"),
            (br#"{"head":{"method":"boom"}}"#, "handler_error", "with a message 42"),
            (br#"{"head":{"method":"str_boom"}}"#, "handler_error", "static str"),
        ];
        for (payload, code, needle) in cases {
            let reply = reply(dispatch(&router, payload).await);
            assert_eq!(reply["error"]["code"], code, "{reply}");
            assert!(reply["error"]["message"].as_str().unwrap().contains(needle), "{reply}");
        }
    }
}
