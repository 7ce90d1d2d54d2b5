//! A JavaScript function as a [`Handler`] of the shared core.
//!
//! The core calls handlers from tokio worker threads; the function runs on the JavaScript thread. A
//! [`ThreadsafeFunction`] carries each call across: non-blocking into an unbounded queue (a blocking call
//! with a bounded queue can deadlock while the JavaScript thread is busy), and *weak*, so that registered
//! handlers never keep Node alive — [`crate::NativeBackend`] holds the event loop open on purpose instead.

use std::sync::Arc;

use modproxy_sdk::{BoxFuture, Handler, HandlerResult, MethodError, Request};
use napi::bindgen_prelude::{FnArgs, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;
use napi_derive::napi;
use serde_json::Value;

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

/// `(data, head) => Promise<Outcome>`, called from any thread, queued without bound, never holding
/// the event loop open. `CalleeHandled = false`: the function gets `(data, head)`, not an error first.
pub type HandlerFn = ThreadsafeFunction<Args, Promise<Outcome>, Args, Status, false, true, 0>;

/// `(data, head)`, spread into two JavaScript arguments.
type Args = FnArgs<(Value, Value)>;

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
        let method = self.method.clone();
        let function = Arc::clone(&self.function);
        Box::pin(async move {
            let head = serde_json::to_value(&request.head)
                .map_err(|e| MethodError::handler_error(format!("head of '{method}' not convertible: {e}")))?;
            // `call_async_catch` turns a synchronous throw into an `Err` instead of a fatal exception.
            // The wrapper in index.js neither throws nor rejects, so an `Err` from either await means the
            // call was cut short: the environment is closing, or its JavaScript was terminated.
            let pending = function
                .call_async_catch((request.data, head).into())
                .await
                .map_err(|e| interrupted(&method, &e))?;
            let outcome = pending.await.map_err(|e| interrupted(&method, &e))?;
            outcome.into_result(&method)
        })
    }
}

impl Outcome {
    fn into_result(self, method: &str) -> HandlerResult {
        match self {
            Outcome { reply: Some(json), .. } => serde_json::from_str(&json)
                .map_err(|e| MethodError::handler_error(format!("reply of '{method}' is not JSON: {e}"))),
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
        assert_eq!(ok.into_result("add").unwrap(), serde_json::json!({"id": 1}));
        let failed = Outcome {
            reply: None,
            code: Some("not_found".into()),
            message: Some("no todo 3".into()),
        };
        assert_eq!(
            failed.into_result("done").unwrap_err(),
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
