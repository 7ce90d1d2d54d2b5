//! A JavaScript function as a [`Handler`] of the shared core.
//!
//! The core calls handlers from tokio worker threads; the function runs on the JavaScript thread. A
//! [`ThreadsafeFunction`] carries each call across: non-blocking into an unbounded queue (a blocking call
//! with a bounded queue can deadlock while the JavaScript thread is busy), and *weak*, so that registered
//! handlers never keep Node alive — [`crate::NativeBackend`] holds the event loop open on purpose instead.
//!
//! Values cross as JSON text both ways: `data` and `head` go over as strings that `index.js` hands to
//! `JSON.parse`, and the reply comes back as `JSON.stringify`'s string, which becomes the reply payload
//! as it is ([`Handler::call_raw`]). V8's JSON codec is far cheaper than building and reading objects
//! one Node-API call per field, and the reply is never parsed only to be serialised again.

use std::sync::Arc;

use modproxy_sdk::{BoxFuture, Handler, HandlerResult, MethodError, RawHandlerResult, Request};
use napi::bindgen_prelude::{Either3, FnArgs, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;
use napi_derive::napi;

/// What the package's wrapper around a user handler resolves to: either `reply`, the JSON text of the
/// handler's return value, or an error `code` and `message`.
///
/// The wrapper never rejects — JavaScript may throw anything, and a `Promise` that rejects with a
/// non-`Error` value loses it on the way into Rust — so errors travel as plain data.
#[napi(object)]
pub struct Outcome {
    /// The reply, as JSON text.
    pub reply: Option<String>,
    /// The error code, when the handler failed.
    pub code: Option<String>,
    /// The error message, when the handler failed.
    pub message: Option<String>,
}

/// `(dataJson, headJson) => string | Outcome | Promise<Outcome>`, called from any thread, queued without
/// bound, never holding the event loop open. `CalleeHandled = false`: the function gets its two
/// arguments, not an error first.
pub type HandlerFn = ThreadsafeFunction<Args, Returned, Args, Status, false, true, 0>;

/// What the wrapper returns: a synchronous handler's reply as JSON text (no promise to settle), its
/// error as an [`Outcome`], or a promise of an [`Outcome`] for an `async` handler. A promise is tried
/// before a plain object, since a promise is an object too.
type Returned = Either3<String, Promise<Outcome>, Outcome>;

/// `(data, head)` as JSON text, spread into two JavaScript arguments.
type Args = FnArgs<(String, String)>;

/// One registered JavaScript method.
pub(crate) struct JsHandler {
    method: String,
    function: Arc<HandlerFn>,
}

impl JsHandler {
    pub(crate) fn new(method: String, function: HandlerFn) -> Self {
        JsHandler {
            method,
            function: Arc::new(function),
        }
    }
}

impl Handler for JsHandler {
    fn call(&self, request: Request) -> BoxFuture<HandlerResult> {
        let reply = self.call_raw(request);
        Box::pin(async move {
            let payload = reply.await?;
            serde_json::from_slice(&payload)
                .map_err(|e| MethodError::handler_error(format!("the reply is not JSON: {e}")))
        })
    }

    fn call_raw(&self, request: Request) -> BoxFuture<RawHandlerResult> {
        let method = self.method.clone();
        let function = Arc::clone(&self.function);
        Box::pin(async move {
            let data = serde_json::to_string(&request.data).expect("a Value always serialises");
            let head = serde_json::to_string(&request.head).expect("a Head always serialises");
            // `call_async_catch` turns a synchronous throw into an `Err` instead of a fatal exception.
            // The wrapper in index.js neither throws nor rejects, so an `Err` from either await means the
            // call was cut short: the environment is closing, or its JavaScript was terminated.
            let returned = function
                .call_async_catch((data, head).into())
                .await
                .map_err(|e| interrupted(&method, &e))?;
            let outcome = match returned {
                Either3::A(reply) => return Ok(reply.into_bytes()),
                Either3::B(pending) => pending.await.map_err(|e| interrupted(&method, &e))?,
                Either3::C(outcome) => outcome,
            };
            outcome.into_raw()
        })
    }
}

impl Outcome {
    fn into_raw(self) -> RawHandlerResult {
        match self {
            Outcome { reply: Some(json), .. } => Ok(json.into_bytes()),
            Outcome { code, message, .. } => Err(MethodError::new(
                code.unwrap_or_else(|| "handler_error".to_owned()),
                message.unwrap_or_default(),
            )),
        }
    }
}

/// The error reply for a call that the JavaScript side could not take or finish.
fn interrupted(method: &str, error: &napi::Error) -> MethodError {
    if error.status == Status::Closing {
        return MethodError::handler_error(format!(
            "'{method}' was not called: the Node.js environment is shutting down"
        ));
    }
    let detail = if error.reason.is_empty() {
        format!("{:?}", error.status)
    } else {
        format!("{:?}: {}", error.status, error.reason)
    };
    MethodError::handler_error(format!(
        "'{method}' was interrupted: the Node.js environment is shutting down ({detail})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_maps_to_reply_or_error() {
        let ok = Outcome {
            reply: Some(r#"{"id":1}"#.into()),
            code: None,
            message: None,
        };
        assert_eq!(ok.into_raw().unwrap(), br#"{"id":1}"#);
        let failed = Outcome {
            reply: None,
            code: Some("not_found".into()),
            message: Some("no todo 3".into()),
        };
        assert_eq!(
            failed.into_raw().unwrap_err(),
            MethodError::new("not_found", "no todo 3")
        );
    }

    #[test]
    fn a_cut_short_call_says_so() {
        let closing = interrupted("add", &napi::Error::new(Status::Closing, String::new()));
        assert_eq!(closing.code, "handler_error");
        assert_eq!(
            closing.message,
            "'add' was not called: the Node.js environment is shutting down"
        );
        let terminated = interrupted("add", &napi::Error::new(Status::PendingException, String::new()));
        assert!(
            terminated.message.starts_with("'add' was interrupted"),
            "{}",
            terminated.message
        );
    }
}
