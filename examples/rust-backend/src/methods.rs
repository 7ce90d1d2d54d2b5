//! The backend's methods: each takes its `data` as a typed struct, calls the [`TodoList`] and returns a
//! value the SDK serialises as the reply.

use std::sync::{Arc, Mutex, MutexGuard};

use modproxy_sdk::{MethodError, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::todos::{Todo, TodoError, TodoList};

/// `data` of `add`.
#[derive(Debug, Deserialize)]
pub struct AddArgs {
    /// The new todo's title. Missing counts as empty (an `invalid` reply, as from the Python and Node
    /// examples); present but not a string is a `bad_request`.
    #[serde(default)]
    pub title: String,
}

/// `data` of `done`.
#[derive(Debug, Deserialize)]
pub struct DoneArgs {
    /// The id of the todo to mark done.
    pub id: u64,
}

/// Reply of `list`: an object rather than a bare array, so fields can be added later.
#[derive(Debug, Serialize)]
pub struct TodoPage {
    /// Every todo, oldest first.
    pub todos: Vec<Todo>,
}

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
pub fn router() -> Router {
    router_over(Arc::new(Mutex::new(TodoList::new())))
}

/// The router over a list the caller holds, e.g. to seed it or look at it in a test.
pub fn router_over(list: Arc<Mutex<TodoList>>) -> Router {
    let (for_add, for_list, for_done) = (list.clone(), list.clone(), list);
    Router::new()
        .method("add", move |args: AddArgs| {
            let result = lock(&for_add).add(&args.title).map_err(MethodError::from);
            async move { result }
        })
        .method("list", move |_: Value| {
            let page = TodoPage {
                todos: lock(&for_list).list().to_vec(),
            };
            async move { Ok::<_, MethodError>(page) }
        })
        .method("done", move |args: DoneArgs| {
            let result = lock(&for_done).done(args.id).map_err(MethodError::from);
            async move { result }
        })
}

/// Locks the list. The lock is held only for one synchronous list operation, never across an `.await`;
/// a poisoned lock (a panic mid-operation) still holds a consistent list, because every operation
/// validates before it mutates.
fn lock(list: &Mutex<TodoList>) -> MutexGuard<'_, TodoList> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
