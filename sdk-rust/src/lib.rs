//! The core of Module Proxy's backends: the length-line protocol, dispatch on `head.method`,
//! a tokio server and clients.
//!
//! This crate holds the project's only implementation of the wire format; the proxy, the Python SDK
//! and the Node SDK all call it.
//!
//! A backend is a set of methods. Register typed handlers on a [`Router`] (or implement [`Backend`] on
//! your own type), bind a [`Server`] and serve; [`Client`] and [`BlockingClient`] call it back:
//!
//! ```
//! use modproxy_sdk::{Client, MethodError, Router, Server};
//! use serde::{Deserialize, Serialize};
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct Greet {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     text: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new().method("greet", |args: Greet| async move {
//!     if args.name.is_empty() {
//!         // A code of the handler's choosing; the connection lives on.
//!         return Err(MethodError::new("invalid", "name must not be empty"));
//!     }
//!     Ok(Greeting { text: format!("Hello, {}!", args.name) })
//! });
//!
//! let server = Server::bind("127.0.0.1:0").await?;
//! let addr = server.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let serving = tokio::spawn(server.serve_with_shutdown(router, async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut client = Client::connect(addr).await?;
//! let reply = client.call("greet", json!({"name": "Ada"})).await?;
//! assert_eq!(reply, json!({"text": "Hello, Ada!"}));
//!
//! let refused = client.call("greet", json!({"name": ""})).await.unwrap_err();
//! assert_eq!(refused.code(), Some("invalid"));
//! assert_eq!(client.call("shout", json!(null)).await.unwrap_err().code(), Some("method_not_found"));
//!
//! let _ = stop.send(());
//! serving.await??;
//! # Ok(())
//! # }
//! ```
//!
//! # Getting the crate
//!
//! Until it is on crates.io, a Module Proxy release ships it in its `sdk/` folder, as
//! `modproxy-sdk-VERSION.crate` and unpacked beside it; depend on the unpacked folder by path:
//!
//! ```toml
//! [dependencies]
//! modproxy-sdk = { path = "/opt/modproxy/sdk/modproxy-sdk-0.1.0" }
//! ```
//!
//! `modproxy new NAME --lang rust`, run from the release, generates a project that does this.

#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod describe;
pub mod dispatch;
pub mod envelope;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod frame;
pub mod pipeline;
#[cfg(feature = "etcd")]
pub mod registration;
pub mod router;
pub mod server;

pub use client::{BlockingClient, Client, ClientError};
pub use codec::{decode_stream, DecodedStream, LengthLineCodec, StreamDecoder};
pub use describe::{MethodDescription, DESCRIBE_METHOD};
pub use dispatch::{dispatch, Backend, BoxFuture, Handler, HandlerResult, RawHandlerResult};
pub use envelope::{Head, Request};
pub use error::MethodError;
pub use frame::FrameError;
#[cfg(feature = "etcd")]
pub use registration::{Registered, Registration};
pub use router::{RegisterError, Router};
/// The `schemars` this crate derives `_describe`'s schemas with, for `#[derive(JsonSchema)]` at the same version.
#[cfg(feature = "schemars")]
pub use schemars;
pub use server::{serve, Server};
