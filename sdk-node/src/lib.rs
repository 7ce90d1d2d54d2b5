//! Node.js binding of the Module Proxy backend SDK: the native half of the npm package `modproxy-sdk`.
//!
//! Everything that matters — framing, dispatch, the server, shutdown — lives in `modproxy-sdk`. This crate
//! only hands JavaScript handlers to its [`modproxy_sdk::Router`] and converts values at the border; the
//! package's `index.js` turns every user handler into one that always resolves to an [`Outcome`].

/// glibc's malloc and free were 8 % of the addon's samples per echoed message (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backend;
mod client;
mod frames;
mod handler;
mod registration;

pub use backend::{BoundAddress, NativeBackend};
pub use client::{Answer, NativeClient};
pub use frames::{decode_frames, DecodedFrames, FrameFailure};
pub use handler::{HandlerFn, Outcome};
pub use registration::RegisterOptions;
