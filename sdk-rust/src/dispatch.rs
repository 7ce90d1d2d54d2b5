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

use crate::envelope::{RawRequest, Request};
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

    /// Whether [`dispatch`] calls [`Backend::handle_json`] rather than [`Backend::handle_raw`]: `true` for
    /// a backend whose handlers read `data` as JSON text, so that it never becomes a [`Value`] on the way.
    /// A [`crate::Router`] says `true` when one of its handlers does ([`Handler::takes_json`]).
    fn takes_json(&self) -> bool {
        false
    }

    /// Answers one request whose `data` is still JSON text, when [`Backend::takes_json`]. The default
    /// decodes `data` into a [`Value`] and calls [`Backend::handle_raw`]. A [`crate::Router`] passes the
    /// request on to each handler's [`Handler::call_json`], so a handler that wants JSON text gets it as it
    /// arrived. An override must answer a request whose `data` does not pass [`RawRequest::data_json`] or
    /// [`RawRequest::data_value`] with that error.
    fn handle_json(&self, request: RawRequest<'_>) -> impl Future<Output = RawHandlerResult> + Send {
        let request = request.into_request();
        async move { self.handle_raw(request?).await }
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

    /// Whether the handler reads `data` as JSON text: whether it overrides [`Handler::call_json`].
    fn takes_json(&self) -> bool {
        false
    }

    /// Calls the handler with `data` still JSON text. The default decodes it into a [`Value`] and calls
    /// [`Handler::call_raw`]; a handler whose language parses JSON text itself (Node's `JSON.parse`)
    /// overrides it to take [`RawRequest::data_json`], which must be how it reads `data`, so that a request
    /// with bad `data` still gets its `bad_request` reply.
    fn call_json(&self, request: RawRequest<'_>) -> BoxFuture<RawHandlerResult> {
        match request.into_request() {
            Ok(request) => self.call_raw(request),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
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
    if backend.takes_json() {
        let request = match RawRequest::from_slice(payload) {
            Ok(request) => request,
            Err(error) => return error.to_reply(),
        };
        if let Some(reply) = reserved_reply(&request.head.method, || request.data_json().map(drop)) {
            return reply;
        }
        let method = request.head.method.clone();
        answer(method, async move { backend.handle_json(request).await }).await
    } else {
        let request = match Request::from_slice(payload) {
            Ok(request) => request,
            Err(error) => return error.to_reply(),
        };
        if let Some(reply) = reserved_reply(&request.head.method, || Ok(())) {
            return reply;
        }
        let method = request.head.method.clone();
        answer(method, async move { backend.handle_raw(request).await }).await
    }
}

/// The reply to a method [`dispatch`] answers itself, if `method` is one; `data_ok` checks `data` first,
/// since bad `data` is a bad request whatever the method.
fn reserved_reply(method: &str, data_ok: impl FnOnce() -> Result<(), MethodError>) -> Option<Vec<u8>> {
    if method != PING_METHOD && method != PIPELINE_METHOD {
        return None;
    }
    if let Err(error) = data_ok() {
        return Some(error.to_reply());
    }
    Some(if method == PING_METHOD {
        br#"{"pong":true}"#.to_vec()
    } else {
        // The server answers it as a connection's first frame; anywhere else it would change the meaning
        // of replies already owed.
        MethodError::bad_request(format!(
            "'{PIPELINE_METHOD}' is accepted only as the first frame of a connection"
        ))
        .to_reply()
    })
}

/// Awaits the backend's reply to a call of `method`; a panic or an error becomes an error reply.
async fn answer(method: String, reply: impl Future<Output = RawHandlerResult>) -> Vec<u8> {
    // The backend is called inside the caught future: it may panic before it returns its own future.
    let outcome = AssertUnwindSafe(reply).catch_unwind().await;
    let result = match outcome {
        Ok(result) => result,
        Err(panic) => {
            // `&*panic`, not `&panic`: a `&Box<dyn Any>` would coerce to a `dyn Any` holding the Box.
            let message = panic_message(&*panic);
            tracing::error!(method, panic = message, "handler panicked");
            Err(MethodError::handler_error(format!(
                "handler for '{method}' panicked: {message}"
            )))
        }
    };
    match result {
        Ok(payload) => payload,
        Err(error) => {
            tracing::debug!(method, code = %error.code, message = error.message, "error reply");
            error.to_reply()
        }
    }
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

    /// A handler that replies with `data` as it arrived, as a JSON-text binding would.
    struct EchoesText;

    impl Handler for EchoesText {
        fn call(&self, request: Request) -> BoxFuture<HandlerResult> {
            Box::pin(std::future::ready(Ok(request.data)))
        }

        fn takes_json(&self) -> bool {
            true
        }

        fn call_json(&self, request: RawRequest<'_>) -> BoxFuture<RawHandlerResult> {
            let reply = request.data_json().map(|data| data.as_bytes().to_vec());
            Box::pin(std::future::ready(reply))
        }
    }

    #[tokio::test]
    async fn json_text_handlers_get_data_as_sent_and_bad_data_is_refused_first() {
        let router = Router::new().handler("echo", EchoesText);
        assert!(router.takes_json());
        let payload = br#"{"head":{"method":"echo"},"data":{"b": [1, 2.50, "\u00e9"], "a":null}}"#;
        assert_eq!(
            dispatch(&router, payload).await,
            br#"{"b": [1, 2.50, "\u00e9"], "a":null}"#
        );
        assert_eq!(dispatch(&router, br#"{"head":{"method":"echo"}}"#).await, b"null");
        for method in ["echo", "_ping", "_pipeline", "_describe", "nope"] {
            for data in ["1e400", r#""\ud800""#, "[1,]"] {
                let payload = format!(r#"{{"head":{{"method":"{method}"}},"data":{data}}}"#);
                let reply = reply(dispatch(&router, payload.as_bytes()).await);
                assert_eq!(reply["error"]["code"], "bad_request", "{payload}: {reply}");
            }
        }
        let described = reply(dispatch(&router, br#"{"head":{"method":"_describe"},"data":{}}"#).await);
        assert_eq!(described["methods"][0]["name"], "echo");
        let missing = reply(dispatch(&router, br#"{"head":{"method":"nope"},"data":[]}"#).await);
        assert_eq!(missing["error"]["code"], "method_not_found");
        assert_eq!(
            dispatch(&router, br#"{"head":{"method":"_ping"},"data":[]}"#).await,
            br#"{"pong":true}"#
        );
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
