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
            let pending = function
                .call_async_catch((request.data, head).into())
                .await
                .map_err(|e| call_failed(&method, &e))?;
            let outcome = pending.await.map_err(|e| call_failed(&method, &e))?;
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

/// The call never reached the handler, or its promise could not be read.
fn call_failed(method: &str, error: &napi::Error) -> MethodError {
    if error.status == Status::Closing {
        // Node is tearing down the environment: the function can no longer run.
        MethodError::handler_error(format!(
            "'{method}' was not called: the Node.js process is shutting down"
        ))
    } else {
        MethodError::handler_error(format!("'{method}' failed: {}", error.reason))
    }
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
}
