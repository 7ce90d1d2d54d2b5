//! The response body type every role returns, so one server loop can carry files, upstream streams
//! and socket replies alike.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Any error a body stream may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body: streamed or in memory.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
