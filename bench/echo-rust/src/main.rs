//! The Rust SDK contestant: `echo` replies with the request's `data`; `check` does the same with `data`
//! typed, so that its `_describe` schema gives a `validate = true` module something to check (row 15).
//!
//! `bench-echo-rust 127.0.0.1:PORT`. Worker threads follow tokio's defaults (`TOKIO_WORKER_THREADS`, else
//! one per CPU the process may run on), which is how the harness limits it to one.

use modproxy_sdk::{serve, MethodError, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `data` of the bench's envelope, as a backend would type it.
#[derive(Deserialize, Serialize, JsonSchema)]
struct Item {
    user: String,
    id: u64,
    tags: Vec<String>,
    ok: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21240".to_owned());
    let router = Router::new()
        .method("echo", |data: Value| async move { Ok::<_, MethodError>(data) })
        .described("check", |item: Item| async move { Ok::<_, MethodError>(item) });
    serve(addr, router).await
}
