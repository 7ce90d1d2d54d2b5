//! A JavaScript function as a [`Handler`] of the shared core.
//!
//! The core calls handlers from tokio worker threads; the function runs on the JavaScript thread. A
//! [`ThreadsafeFunction`] carries calls across: non-blocking into an unbounded queue (a blocking call
//! with a bounded queue can deadlock while the JavaScript thread is busy), and *weak*, so that registered
//! handlers never keep Node alive — [`crate::NativeBackend`] holds the event loop open on purpose instead.
//!
//! Calls cross in batches. Waking the JavaScript thread lets it preempt the tokio thread at once (both
//! often share a CPU), so one crossing per call meant a context switch per call. Each method has a pump
//! task that yields once, so that every connection ready in the same turn queues its call, and then hands
//! all the queued calls over in one crossing; the JavaScript side answers them together.
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
use tokio::sync::{mpsc, oneshot};

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

/// `(dataJsons, headJsons) => Array<string | Outcome | Promise<Outcome>>`: a batch of calls, one result per
/// call in the same order. Called from any thread, queued without bound, never holding the event loop
/// open. `CalleeHandled = false`: the function gets its two arguments, not an error first.
pub type HandlerFn = ThreadsafeFunction<Batch, Vec<Returned>, Batch, Status, false, true, 0>;

/// What the wrapper returns for one call: a synchronous handler's reply as JSON text (no promise to
/// settle), its error as an [`Outcome`], or a promise of an [`Outcome`] for an `async` handler. A promise
/// is tried before a plain object, since a promise is an object too.
pub type Returned = Either3<String, Promise<Outcome>, Outcome>;

/// The `data` and `head` of each call in a batch, as JSON text, spread into two JavaScript arrays.
type Batch = FnArgs<(Vec<String>, Vec<String>)>;

/// One call waiting to cross.
struct Call {
    data: String,
    head: String,
    returned: oneshot::Sender<Result<Returned, napi::Error>>,
}

/// One registered JavaScript method.
pub(crate) struct JsHandler {
    method: Arc<str>,
    calls: mpsc::UnboundedSender<Call>,
}

impl JsHandler {
    /// Wraps `function` and starts its pump, which lives as long as the handler.
    pub(crate) fn new(method: String, function: HandlerFn) -> Self {
        let (calls, queue) = mpsc::unbounded_channel();
        napi::bindgen_prelude::spawn(pump(queue, function));
        JsHandler {
            method: method.into(),
            calls,
        }
    }
}

/// Hands queued calls to JavaScript, all that are queued at once, until the handler is dropped.
async fn pump(mut queue: mpsc::UnboundedReceiver<Call>, function: HandlerFn) {
    while let Some(first) = queue.recv().await {
        tokio::task::yield_now().await;
        let mut calls = vec![first];
        while let Ok(call) = queue.try_recv() {
            calls.push(call);
        }
        let (datas, heads) = calls
            .iter_mut()
            .map(|call| (std::mem::take(&mut call.data), std::mem::take(&mut call.head)))
            .unzip();
        // `call_async_catch` turns a synchronous throw into an `Err` instead of a fatal exception. The
        // wrapper in index.js neither throws nor rejects, so an `Err` means the batch was cut short: the
        // environment is closing, or its JavaScript was terminated.
        match function.call_async_catch((datas, heads).into()).await {
            Ok(returned) if returned.len() == calls.len() => {
                for (call, returned) in calls.into_iter().zip(returned) {
                    let _ = call.returned.send(Ok(returned));
                }
            }
            Ok(returned) => {
                let reason = format!("{} results for {} calls", returned.len(), calls.len());
                for call in calls {
                    let _ = call
                        .returned
                        .send(Err(napi::Error::new(Status::GenericFailure, reason.clone())));
                }
            }
            Err(error) => {
                for call in calls {
                    let _ = call
                        .returned
                        .send(Err(napi::Error::new(error.status, error.reason.clone())));
                }
            }
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
        let method = Arc::clone(&self.method);
        let calls = self.calls.clone();
        Box::pin(async move {
            let (returned, answer) = oneshot::channel();
            let call = Call {
                data: serde_json::to_string(&request.data).expect("a Value always serialises"),
                head: serde_json::to_string(&request.head).expect("a Head always serialises"),
                returned,
            };
            let closing = || napi::Error::new(Status::Closing, String::new());
            calls.send(call).map_err(|_| interrupted(&method, &closing()))?;
            let returned = answer
                .await
                .unwrap_or_else(|_| Err(closing()))
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
