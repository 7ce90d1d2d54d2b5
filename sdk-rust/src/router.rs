//! [`Router`]: a [`Backend`] that maps method names to handlers.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::describe::{self, MethodDescription, DESCRIBE_METHOD};
use crate::dispatch::{encode_reply, Backend, BoxFuture, Handler, HandlerResult, RawHandlerResult};
use crate::envelope::{Head, Request, RESERVED_PREFIX};
use crate::error::MethodError;

/// Maps `head.method` to a handler.
///
/// Each name takes one handler; names that are empty or begin with `_` (reserved for the protocol:
/// `_ping`, `_pipeline`, ...) are refused. The builder methods panic on such a name, as a bad route is a
/// programming error; the `try_` forms return a [`RegisterError`] instead.
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
///
/// let refused = Router::new().try_handler("_ping", |_: modproxy_sdk::Request| async { Ok(().into()) });
/// assert!(matches!(refused, Err(modproxy_sdk::RegisterError::Reserved(_))));
/// ```
///
/// It also answers `_describe` (PROTOCOL.md section 5) with every registered method: handlers registered
/// with [`Router::described`] give the JSON Schemas of their types, [`Router::doc`] a doc string, and the
/// rest are described as taking and giving any JSON.
#[derive(Clone, Default)]
pub struct Router {
    handlers: HashMap<String, Arc<dyn Handler>, BuildHasherDefault<Fnv>>,
    /// Only the methods described beyond the default.
    descriptions: HashMap<String, MethodDescription>,
    /// The method [`Router::doc`] documents.
    last: Option<String>,
}

impl Router {
    /// An empty router (it still answers the built-in `_ping`).
    pub fn new() -> Self {
        Router::default()
    }

    /// Registers a typed handler that takes `data`. `data` that does not deserialise into `T` gets a
    /// `bad_request` reply naming the problem.
    ///
    /// # Panics
    ///
    /// If `name` may not be registered (see [`Router::try_method`]).
    pub fn method<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        self.method_with_head(name, without_head(handler))
    }

    /// Registers a typed handler that takes `data`, or says why `name` may not be registered.
    pub fn try_method<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Result<Self, RegisterError>
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        self.try_method_with_head(name, without_head(handler))
    }

    /// Registers a typed handler that takes `data` and the request's `head`.
    ///
    /// # Panics
    ///
    /// If `name` may not be registered (see [`Router::try_method`]).
    pub fn method_with_head<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(T, Head) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        registered(self.try_method_with_head(name, handler))
    }

    /// Registers a typed handler that takes `data` and the request's `head`, or says why `name` may not be
    /// registered.
    pub fn try_method_with_head<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Result<Self, RegisterError>
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
        self.try_handler(name, typed)
    }

    /// Registers a typed handler like [`Router::method`], whose `data` and reply types also describe it in
    /// the `_describe` reply, as JSON Schemas derived with `#[derive(JsonSchema)]` (the `schemars`
    /// feature, on by default).
    ///
    /// ```
    /// use modproxy_sdk::{MethodError, Router};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// #[derive(Serialize, JsonSchema)]
    /// struct Sum { sum: i64 }
    ///
    /// let router = Router::new()
    ///     .described("add", |args: Add| async move { Ok::<_, MethodError>(Sum { sum: args.a + args.b }) })
    ///     .doc("Adds two integers.");
    /// let add = &router.describe()["methods"][0];
    /// assert_eq!(add["doc"], "Adds two integers.");
    /// assert_eq!(add["data"]["required"], serde_json::json!(["a", "b"]));
    /// ```
    ///
    /// # Panics
    ///
    /// If `name` may not be registered (see [`Router::try_method`]).
    #[cfg(feature = "schemars")]
    pub fn described<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + schemars::JsonSchema + Send + 'static,
        R: Serialize + schemars::JsonSchema + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        self.described_with_head(name, without_head(handler))
    }

    /// Registers a typed handler that takes `data` and the request's `head`, described by its types like
    /// [`Router::described`].
    ///
    /// # Panics
    ///
    /// If `name` may not be registered (see [`Router::try_method`]).
    #[cfg(feature = "schemars")]
    pub fn described_with_head<T, R, F, Fut>(self, name: impl Into<String>, handler: F) -> Self
    where
        T: DeserializeOwned + schemars::JsonSchema + Send + 'static,
        R: Serialize + schemars::JsonSchema + Send + 'static,
        F: Fn(T, Head) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, MethodError>> + Send + 'static,
    {
        let name = name.into();
        let mut router = self.method_with_head(name.clone(), handler);
        let description = router.descriptions.entry(name).or_default();
        description.data = describe::schema_of::<T>();
        description.result = describe::schema_of::<R>();
        router
    }

    /// Sets the doc string `_describe` gives for the method registered last.
    ///
    /// # Panics
    ///
    /// If no method has been registered yet.
    #[track_caller]
    pub fn doc(mut self, doc: impl Into<String>) -> Self {
        let name = self
            .last
            .clone()
            .expect("Router::doc documents the method registered before it; register one first");
        self.descriptions.entry(name).or_default().doc = Some(doc.into());
        self
    }

    /// Sets what `_describe` says about the registered method `name`. This is what the language bindings
    /// use, with schemas their own language derived. Returns `false` (and keeps nothing) if no method is
    /// registered under `name`.
    pub fn set_description(&mut self, name: &str, description: MethodDescription) -> bool {
        if !self.handlers.contains_key(name) {
            return false;
        }
        self.descriptions.insert(name.to_owned(), description);
        true
    }

    /// The `_describe` reply: every registered method, in name order.
    pub fn describe(&self) -> serde_json::Value {
        let untyped = MethodDescription::default();
        describe::document(
            self.handlers
                .keys()
                .map(|name| (name.as_str(), self.descriptions.get(name).unwrap_or(&untyped))),
        )
    }

    /// Registers a type-erased handler that receives the whole request.
    ///
    /// # Panics
    ///
    /// If `name` may not be registered (see [`Router::try_method`]).
    pub fn handler(self, name: impl Into<String>, handler: impl Handler) -> Self {
        registered(self.try_handler(name, handler))
    }

    /// Registers a type-erased handler, or says why `name` may not be registered.
    pub fn try_handler(mut self, name: impl Into<String>, handler: impl Handler) -> Result<Self, RegisterError> {
        self.try_insert(name, Arc::new(handler))?;
        Ok(self)
    }

    /// Registers a handler in place, or says why `name` may not be registered. This is what the language
    /// bindings use; they hand the error on as their own (`ValueError`, a thrown `Error`).
    pub fn try_insert(&mut self, name: impl Into<String>, handler: Arc<dyn Handler>) -> Result<(), RegisterError> {
        let name = name.into();
        check_method_name(&name, self.handlers.contains_key(&name))?;
        self.handlers.insert(name.clone(), handler);
        self.last = Some(name);
        Ok(())
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
        let described = (handler.is_none() && request.head.method == DESCRIBE_METHOD).then(|| self.describe());
        async move {
            match (handler, described) {
                (Some(handler), _) => handler.call(request).await,
                (None, Some(document)) => Ok(document),
                (None, None) => Err(MethodError::method_not_found(&request.head.method)),
            }
        }
    }

    fn handle_raw(&self, request: Request) -> impl Future<Output = RawHandlerResult> + Send {
        // Called before the future is polled, so the handler's own future is all that stays boxed.
        let reply = match self.handlers.get(&request.head.method) {
            Some(handler) => Ok(handler.call_raw(request)),
            // Looked up only after the handlers miss, so the hot path pays nothing for it.
            None if request.head.method == DESCRIBE_METHOD => {
                let document = encode_reply(&self.describe());
                Ok(Box::pin(std::future::ready(document)) as BoxFuture<RawHandlerResult>)
            }
            None => Err(MethodError::method_not_found(&request.head.method)),
        };
        async move { reply?.await }
    }
}

/// FNV-1a, the handlers' hasher. Every request looks its method up, and only the program puts names in the
/// table, so SipHash's defence against keys chosen to collide buys nothing there; FNV-1a costs a fraction
/// of it on short names.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Why a method name may not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The name is the empty string.
    #[error("a method name must not be empty")]
    Empty,
    /// The name begins with `_`, which the protocol keeps for itself.
    #[error(
        "method name '{0}' begins with '_', which is reserved for the protocol (_ping, _pipeline, ...); \
         choose a name without the leading underscore"
    )]
    Reserved(String),
    /// A handler is already registered under the name.
    #[error("a method named '{0}' is already registered; register each name once")]
    Duplicate(String),
}

/// Whether `name` may be registered, given whether a handler is `already_registered` under it. The one
/// place the naming rules live: [`Router`] asks it, and so does a binding that keeps its own registry
/// until it serves.
pub fn check_method_name(name: &str, already_registered: bool) -> Result<(), RegisterError> {
    if name.is_empty() {
        Err(RegisterError::Empty)
    } else if name.starts_with(RESERVED_PREFIX) {
        Err(RegisterError::Reserved(name.to_owned()))
    } else if already_registered {
        Err(RegisterError::Duplicate(name.to_owned()))
    } else {
        Ok(())
    }
}

/// The router a builder method returns, or the registration error as a panic.
#[track_caller]
fn registered(router: Result<Router, RegisterError>) -> Router {
    router.unwrap_or_else(|error| panic!("{error}"))
}

/// A handler of `data` alone as one that is also given the request's head, and ignores it: what each
/// builder method without a head registers through its `_with_head` form.
fn without_head<T, Fut>(
    handler: impl Fn(T) -> Fut + Send + Sync + 'static,
) -> impl Fn(T, Head) -> Fut + Send + Sync + 'static {
    move |data, _head| handler(data)
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
    async fn methods_are_sorted() {
        let router = Router::new()
            .method("b", |_: Value| async { Ok::<_, MethodError>(1) })
            .method("a", |_: Value| async { Ok::<_, MethodError>(2) });
        assert_eq!(router.methods(), ["a", "b"]);
        assert_eq!(router.handle(Request::new("b", Value::Null)).await.unwrap(), json!(1));
    }

    #[test]
    fn empty_reserved_and_duplicate_names_are_refused() {
        let echo = || |request: Request| async move { Ok(request.data) };
        let router = Router::new().handler("echo", echo());
        let cases = [
            ("", RegisterError::Empty),
            ("_ping", RegisterError::Reserved("_ping".into())),
            ("_pipeline", RegisterError::Reserved("_pipeline".into())),
            ("_anything", RegisterError::Reserved("_anything".into())),
            ("echo", RegisterError::Duplicate("echo".into())),
        ];
        for (name, expected) in cases {
            let refused = router.clone().try_handler(name, echo()).unwrap_err();
            assert_eq!(refused, expected, "{name:?}");
        }
        let mut in_place = router.clone();
        assert!(in_place.try_insert("echo", Arc::new(echo())).is_err());
        assert!(in_place.try_insert("not_reserved_", Arc::new(echo())).is_ok());
        assert_eq!(in_place.methods(), ["echo", "not_reserved_"]);
    }

    #[test]
    fn refusals_say_what_to_do() {
        let message = check_method_name("_ping", false).unwrap_err().to_string();
        assert!(message.contains("'_ping'") && message.contains("reserved"), "{message}");
        let message = check_method_name("add", true).unwrap_err().to_string();
        assert!(
            message.contains("'add'") && message.contains("already registered"),
            "{message}"
        );
    }

    #[test]
    #[should_panic(expected = "already registered")]
    fn the_builder_panics_on_a_duplicate() {
        let _ = Router::new()
            .method("a", |_: Value| async { Ok::<_, MethodError>(1) })
            .method("a", |_: Value| async { Ok::<_, MethodError>(2) });
    }

    #[tokio::test]
    async fn typed_data_of_the_wrong_shape_is_bad_request() {
        let router = Router::new().method("n", |n: u32| async move { Ok::<_, MethodError>(n) });
        assert_eq!(router.handle(Request::new("n", json!(7))).await.unwrap(), json!(7));
        let error = router.handle(Request::new("n", json!("seven"))).await.unwrap_err();
        assert_eq!(error.code, "bad_request");
        assert!(error.message.contains("'n'"), "{}", error.message);
    }

    #[tokio::test]
    async fn describe_answers_for_typed_and_untyped_methods() {
        #[derive(serde::Deserialize, schemars::JsonSchema)]
        struct AddTodo {
            title: String,
        }
        let router = Router::new()
            .method("plain", |v: Value| async move { Ok::<_, MethodError>(v) })
            .described("add", |t: AddTodo| async move { Ok::<_, MethodError>(t.title) })
            .doc("Adds a todo.");
        let payload = Request::new(DESCRIBE_METHOD, Value::Null).to_vec();
        let reply: Value = serde_json::from_slice(&crate::dispatch(&router, &payload).await).unwrap();
        assert_eq!(
            reply,
            router.handle(Request::new(DESCRIBE_METHOD, Value::Null)).await.unwrap()
        );
        let methods = reply["methods"].as_array().unwrap();
        assert_eq!(methods[0]["name"], "add");
        assert_eq!(methods[0]["doc"], "Adds a todo.");
        assert_eq!(methods[0]["data"]["properties"]["title"]["type"], "string");
        assert_eq!(methods[0]["result"]["type"], "string");
        assert_eq!(
            methods[1],
            json!({"name": "plain", "doc": null, "data": {}, "result": {}})
        );
        assert_eq!(describe::check_document(&reply), Ok(()));
    }

    #[test]
    fn a_description_needs_a_registered_method() {
        let mut router = Router::new().method("a", |v: Value| async move { Ok::<_, MethodError>(v) });
        assert!(!router.set_description("b", MethodDescription::default()));
        let doc = MethodDescription {
            doc: Some("A.".into()),
            ..MethodDescription::default()
        };
        assert!(router.set_description("a", doc));
        assert_eq!(router.describe()["methods"][0]["doc"], "A.");
    }
}
