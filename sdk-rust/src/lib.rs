//! The core of Module Proxy's backends: the length-line protocol, dispatch on `head.method`,
//! a tokio server and clients.
//!
//! This crate holds the project's only implementation of the wire format; the proxy, the Python SDK
//! and the Node SDK all call it.

#![warn(missing_docs)]

pub mod codec;
pub mod dispatch;
pub mod envelope;
pub mod error;
pub mod frame;
pub mod router;
pub mod server;

pub use codec::LengthLineCodec;
pub use dispatch::{dispatch, Backend, BoxFuture, Handler, HandlerResult};
pub use envelope::{Head, Request};
pub use error::MethodError;
pub use frame::FrameError;
pub use router::Router;
pub use server::{serve, Server};
