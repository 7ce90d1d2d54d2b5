//! `NativeClient`: the core's async [`Client`] over one keep-alive connection, for `index.js`'s `Client`.
//!
//! Calls resolve to an [`Answer`] rather than reject, so that `index.js` builds the JavaScript error (a
//! `MethodError` with its `code`, or an `Error`) without parsing messages.

use std::sync::Arc;
use std::time::Duration;

use modproxy_sdk::{Client, ClientError, Request};
use napi_derive::napi;
use tokio::sync::Mutex;

/// What one call came to: exactly one of `reply` (JSON text), an error reply (`code`, `message`), or a
/// failure (`failure`: `timeout` or `connection`, with `message`).
#[napi(object)]
pub struct Answer {
    /// The reply, as JSON text.
    pub reply: Option<String>,
    /// The error reply's code.
    pub code: Option<String>,
    /// `timeout` or `connection` when no reply came.
    pub failure: Option<String>,
    /// The error reply's or the failure's message.
    pub message: Option<String>,
}

/// A client of one backend, or of one module through the proxy's raw-frame port.
#[napi]
pub struct NativeClient {
    addr: String,
    module: Option<String>,
    timeout: Duration,
    conn: Arc<Mutex<Option<Client>>>,
}

#[napi]
impl NativeClient {
    /// `timeout_ms` bounds connecting and each reply.
    #[napi(constructor)]
    pub fn new(addr: String, module: Option<String>, timeout_ms: u32) -> napi::Result<Self> {
        if timeout_ms == 0 {
            return Err(napi::Error::from_reason(
                "timeout must be a positive number of milliseconds",
            ));
        }
        Ok(NativeClient {
            addr,
            module,
            timeout: Duration::from_millis(timeout_ms.into()),
            conn: Arc::new(Mutex::new(None)),
        })
    }

    /// Calls `method` with `data` (JSON text). Concurrent calls take turns on the connection.
    #[napi]
    pub async fn call(&self, method: String, data: String) -> napi::Result<Answer> {
        let data: serde_json::Value =
            serde_json::from_str(&data).map_err(|e| napi::Error::from_reason(format!("data is not JSON: {e}")))?;
        let mut request = Request::new(method, data);
        if let Some(module) = &self.module {
            request.head = request.head.with_module(module.as_str());
        }
        let mut conn = self.conn.lock().await;
        let reply = async {
            if conn.is_none() {
                let connected = Client::connect_timeout(self.addr.as_str(), self.timeout).await?;
                *conn = Some(connected.reply_timeout(self.timeout));
            }
            conn.as_mut().expect("connected above").call_request(&request).await
        }
        .await;
        // Anything but a reply or an error reply leaves the connection unusable: the next call reconnects.
        if !matches!(reply, Ok(_) | Err(ClientError::Method(_))) {
            *conn = None;
        }
        Ok(answer(reply))
    }

    /// Closes the connection; a later call opens another.
    #[napi]
    pub async fn close(&self) {
        *self.conn.lock().await = None;
    }
}

fn answer(reply: Result<serde_json::Value, ClientError>) -> Answer {
    let mut answer = Answer {
        reply: None,
        code: None,
        failure: None,
        message: None,
    };
    match reply {
        Ok(value) => answer.reply = Some(value.to_string()),
        Err(ClientError::Method(error)) => {
            answer.code = Some(error.code.into_owned());
            answer.message = Some(error.message);
        }
        Err(error) => {
            let timed_out = matches!(error, ClientError::Timeout(_) | ClientError::ConnectTimeout { .. });
            answer.failure = Some(if timed_out { "timeout" } else { "connection" }.to_owned());
            answer.message = Some(error.to_string());
        }
    }
    answer
}
