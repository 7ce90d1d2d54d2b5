//! The Rust SDK contestant: `echo` replies with the request's `data`.
//!
//! `bench-echo-rust 127.0.0.1:PORT`. Worker threads follow tokio's defaults (`TOKIO_WORKER_THREADS`, else
//! one per CPU the process may run on), which is how the harness limits it to one.

use modproxy_sdk::{serve, MethodError, Router};
use serde_json::Value;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21240".to_owned());
    let router = Router::new().method("echo", |data: Value| async move { Ok::<_, MethodError>(data) });
    serve(addr, router).await
}
