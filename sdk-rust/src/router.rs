//! [`Router`]: a [`Backend`] that maps method names to handlers.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::dispatch::{encode_reply, Backend, BoxFuture, Handler, HandlerResult, RawHandlerResult};
use crate::envelope::{Head, Request};
use crate::error::MethodError;

/// Maps `head.method` to a handler.
///
/// ```
/// use modproxy_sdk::{MethodError, Router};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// let router = Router::new()
///     .method("add", |args: Add| async move { Ok::<_, MethodError>(args.a + args.b) });
/// assert!(router.has_method("add"));
/// ```
#[derive(Clone, Default)]
pub struct Router {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl Router {
    /// An empty router (it still answers the built-in `_ping`).
    pub fn new() -> Self {
        Router::default()
    }

    /// Registers a typed handler that takes `data`. `data` that does not deserialise into `T` gets a
    /// `bad_request` reply naming the problem.
    pub fn method<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        self.method_with_head(name, move |data: T, _head: Head| handler(data))
    }

    /// Registers a typed handler that takes `data` and the request's `head`.
    pub fn method_with_head<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T, Head) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        let name = name.into();
        let typed = Typed {
            method: name.clone(),
            handler,
            types: PhantomData,
        };
        self.handler(name, typed)
    }

    /// Registers a type-erased handler that receives the whole request. This is what the language
    /// bindings use.
    pub fn handler(mut self, name: impl Into<String>, handler: impl Handler) -> Self {
        self.insert(name, Arc::new(handler));
        self
    }

    /// Registers a handler in place; replaces any handler of the same name.
    pub fn insert(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) {
        self.handlers.insert(name.into(), handler);
    }

    /// Whether a handler is registered under `name`.
    pub fn has_method(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// The registered method names, sorted.
    pub fn methods(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl Backend for Router {
    fn handle(&self, request: Request) -> impl Future<Output = HandlerResult> + Send {
        let handler = self.handlers.get(&request.head.method).cloned();
        async move {
            match handler {
                Some(handler) => handler.call(request).await,
                None => Err(MethodError::method_not_found(&request.head.method)),
            }
        }
    }

    fn handle_raw(&self, request: Request) -> impl Future<Output = RawHandlerResult> + Send {
        // Called before the future is polled, so the handler's own future is all that stays boxed.
        let reply = match self.handlers.get(&request.head.method) {
            Some(handler) => Ok(handler.call_raw(request)),
            None => Err(MethodError::method_not_found(&request.head.method)),
        };
        async move { reply?.await }
    }
}

/// `data` as the handler's type. A handler that takes a [`serde_json::Value`] gets the parsed value as it
/// is: `from_value` would rebuild the whole tree, one allocation per node, to produce the same thing.
fn typed_data<T: DeserializeOwned + 'static>(data: serde_json::Value) -> Result<T, serde_json::Error> {
    let mut data = Some(data);
    if let Some(same) = (&mut data as &mut dyn Any).downcast_mut::<Option<T>>() {
        return Ok(same.take().expect("taken once"));
    }
    serde_json::from_value(data.take().expect("taken once"))
}

/// A typed handler: `data` deserialised into `T`, the reply serialised from `R` — straight to bytes when
/// [`dispatch`](crate::dispatch()) asks for them, without a [`serde_json::Value`] in between.
struct Typed<T, F> {
    method: String,
    handler: F,
    types: PhantomData<fn(T)>,
}

impl<T, R, F, Fut> Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(T, Head) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
{
    fn start(&self, request: Request) -> Result<Fut, MethodError> {
        let data = typed_data::<T>(request.data)
            .map_err(|e| MethodError::bad_request(format!("invalid data for '{}': {e}", self.method)))?;
        Ok((self.handler)(data, request.head))
    }
}

impl<T, R, F, Fut> Handler for Typed<T, F>
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(T, Head) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
{
    fn call(&self, request: Request) -> BoxFuture<HandlerResult> {
        let call = self.start(request);
        Box::pin(async move {
            let reply = call?.await?;
            serde_json::to_value(reply).map_err(|e| MethodError::handler_error(format!("reply not serialisable: {e}")))
        })
    }

    fn call_raw(&self, request: Request) -> BoxFuture<RawHandlerResult> {
        let call = self.start(request);
        Box::pin(async move { encode_reply(&call?.await?) })
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("methods", &self.methods()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[tokio::test]
    async fn insert_replaces_and_methods_are_sorted() {
        let mut router = Router::new()
            .method("b", |_: Value| async { Ok::<_, MethodError>(1) })
            .method("a", |_: Value| async { Ok::<_, MethodError>(2) });
        router.insert("b", Arc::new(|_: Request| async { Ok(json!("replaced")) }));
        assert_eq!(router.methods(), ["a", "b"]);
        let reply = router.handle(Request::new("b", Value::Null)).await.unwrap();
        assert_eq!(reply, json!("replaced"));
    }

    #[tokio::test]
    async fn typed_data_of_the_wrong_shape_is_bad_request() {
        let router = Router::new().method("n", |n: u32| async move { Ok::<_, MethodError>(n) });
        assert_eq!(router.handle(Request::new("n", json!(7))).await.unwrap(), json!(7));
        let error = router.handle(Request::new("n", json!("seven"))).await.unwrap_err();
        assert_eq!(error.code, "bad_request");
        assert!(error.message.contains("'n'"), "{}", error.message);
    }
}
