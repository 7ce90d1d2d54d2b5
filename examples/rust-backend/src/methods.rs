//! The backend's methods: each takes its `data` as a typed struct, calls the [`TodoList`] and returns a
//! value the SDK serialises as the reply.

use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use modproxy_sdk::{Client, MethodError, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::todos::{Todo, TodoError, TodoList};

/// `data` of `add`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// The new todo's title. Missing counts as empty (an `invalid` reply, as from the Python and Node
    /// examples); present but not a string is a `bad_request`.
    #[serde(default)]
    pub title: String,
}

/// `data` of `done`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DoneArgs {
    /// The id of the todo to mark done.
    pub id: u64,
}

/// Reply of `list`: an object rather than a bare array, so fields can be added later.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TodoPage {
    /// Every todo, oldest first.
    pub todos: Vec<Todo>,
}

/// Reply of `count`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Count {
    /// How many todos there are.
    pub count: usize,
}

/// Reply of `stats`: this list's count beside a peer module's.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Stats {
    /// How many todos this backend has.
    pub count: usize,
    /// The module asked.
    pub peer: String,
    /// How many todos it has.
    pub peer_count: usize,
}

/// How long `stats` waits for its peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

impl From<TodoError> for MethodError {
    fn from(error: TodoError) -> Self {
        MethodError::new(error.code(), error.to_string())
    }
}

/// The todo backend's router, over a fresh empty list:
///
/// | method | `data` | reply | errors |
/// |---|---|---|---|
/// | `add` | `{"title": "…"}` | the new todo `{id, title, done}` | `invalid` (empty or over 200 characters) |
/// | `list` | anything | `{"todos": [...]}` | |
/// | `done` | `{"id": n}` | the todo, now done | `not_found` |
/// | `count` | anything | `{"count": n}` | |
/// | `stats` | anything | `{"count", "peer", "peer_count"}` | `unavailable` without `$MODPROXY_PROXY` |
///
/// `stats` is a backend-to-backend call: `count` of the module `$MODPROXY_PEER` (default `todo-python`)
/// through the proxy's raw-frame port `$MODPROXY_PROXY` (`host:port`, `[server] raw_frames = true`).
/// Every method is described to `_describe` by its types.
pub fn router() -> Router {
    router_over(Arc::new(Mutex::new(TodoList::new())))
}

/// The router over a list the caller holds, e.g. to seed it or look at it in a test.
pub fn router_over(list: Arc<Mutex<TodoList>>) -> Router {
    let (for_add, for_list, for_done) = (list.clone(), list.clone(), list.clone());
    let (for_count, for_stats) = (list.clone(), list);
    Router::new()
        .described("add", move |args: AddArgs| {
            let result = lock(&for_add).add(&args.title).map_err(MethodError::from);
            async move { result }
        })
        .doc("Adds a todo; `invalid` if the title is empty or over 200 characters.")
        .described("list", move |_: Value| {
            let page = TodoPage {
                todos: lock(&for_list).list().to_vec(),
            };
            async move { Ok::<_, MethodError>(page) }
        })
        .doc("Every todo, oldest first.")
        .described("done", move |args: DoneArgs| {
            let result = lock(&for_done).done(args.id).map_err(MethodError::from);
            async move { result }
        })
        .doc("Marks a todo done; `not_found` if no todo has that id.")
        .described("count", move |_: Value| {
            let count = Count {
                count: lock(&for_count).list().len(),
            };
            async move { Ok::<_, MethodError>(count) }
        })
        .doc("How many todos there are.")
        .described("stats", move |_: Value| {
            let count = lock(&for_stats).list().len();
            async move { stats(count).await }
        })
        .doc("This list's count beside a peer module's, asked through the proxy.")
}

/// Asks the peer module for its count through the proxy.
async fn stats(count: usize) -> Result<Stats, MethodError> {
    let proxy = std::env::var("MODPROXY_PROXY").unwrap_or_default();
    if proxy.trim().is_empty() {
        return Err(MethodError::new(
            "unavailable",
            "set MODPROXY_PROXY to the proxy's raw-frame host:port",
        ));
    }
    let peer = std::env::var("MODPROXY_PEER").unwrap_or_else(|_| "todo-python".to_owned());
    // The peer's (or the proxy's) error reply passes on as it is, as from the Python and Node examples.
    let unavailable = |e: modproxy_sdk::ClientError| match e {
        modproxy_sdk::ClientError::Method(refused) => refused,
        other => MethodError::new("unavailable", format!("{peer}: {other}")),
    };
    // A client per call keeps the example short; a busy backend would keep a pool.
    let mut client = Client::connect_timeout(proxy.trim(), PEER_TIMEOUT)
        .await
        .map_err(unavailable)?
        .reply_timeout(PEER_TIMEOUT);
    let reply = client
        .call_module(&peer, "count", Value::Null)
        .await
        .map_err(unavailable)?;
    let peer_count: Count = serde_json::from_value(reply)
        .map_err(|e| MethodError::new("unavailable", format!("{peer}: count replied {e}")))?;
    Ok(Stats {
        count,
        peer,
        peer_count: peer_count.count,
    })
}

/// Locks the list. The lock is held only for one synchronous list operation, never across an `.await`;
/// a poisoned lock (a panic mid-operation) still holds a consistent list, because every operation
/// validates before it mutates.
fn lock(list: &Mutex<TodoList>) -> MutexGuard<'_, TodoList> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_describes_its_types() {
        let document = router().describe();
        assert_eq!(modproxy_sdk::describe::check_document(&document), Ok(()));
        let methods = document["methods"].as_array().unwrap();
        let names: Vec<&str> = methods.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["add", "count", "done", "list", "stats"]);
        assert_eq!(methods[0]["data"]["properties"]["title"]["type"], "string");
        assert_eq!(methods[0]["result"]["title"], "Todo");
        assert_eq!(methods[2]["data"]["required"], serde_json::json!(["id"]));
        assert!(methods.iter().all(|m| m["doc"].is_string()), "{document}");
    }
}
