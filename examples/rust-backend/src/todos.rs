//! The todo list itself: plain data and rules, no I/O, so it is tested without a socket.

use serde::Serialize;

/// Longest title accepted, in characters: enough for a sentence, short enough for one line of a page.
pub const MAX_TITLE_CHARS: usize = 200;

/// One todo, as it is sent to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Todo {
    /// Assigned by the list, starting at 1, never reused.
    pub id: u64,
    /// What to do, trimmed of surrounding whitespace.
    pub title: String,
    /// Whether it has been done.
    pub done: bool,
}

/// Why the list refused a change. Each variant maps to an error reply code through [`TodoError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TodoError {
    /// The title is empty or only whitespace.
    #[error("the title is empty; give the todo a title")]
    EmptyTitle,
    /// The title is longer than [`MAX_TITLE_CHARS`].
    #[error("the title has {chars} characters; the most is {max}")]
    TitleTooLong {
        /// The title's length in characters.
        chars: usize,
        /// [`MAX_TITLE_CHARS`].
        max: usize,
    },
    /// No todo has this id.
    #[error("no todo has id {0}")]
    NotFound(u64),
}

impl TodoError {
    /// The error reply code: `invalid` for a request the caller should correct, `not_found` for an id
    /// that does not exist.
    pub fn code(&self) -> &'static str {
        match self {
            TodoError::EmptyTitle | TodoError::TitleTooLong { .. } => "invalid",
            TodoError::NotFound(_) => "not_found",
        }
    }
}

/// An in-memory todo list, in the order the todos were added.
#[derive(Debug, Default)]
pub struct TodoList {
    todos: Vec<Todo>,
    last_id: u64,
}

impl TodoList {
    /// An empty list.
    pub fn new() -> Self {
        TodoList::default()
    }

    /// Adds a todo that is not done yet and returns it.
    pub fn add(&mut self, title: &str) -> Result<Todo, TodoError> {
        let title = title.trim();
        if title.is_empty() {
            return Err(TodoError::EmptyTitle);
        }
        let chars = title.chars().count();
        if chars > MAX_TITLE_CHARS {
            return Err(TodoError::TitleTooLong {
                chars,
                max: MAX_TITLE_CHARS,
            });
        }
        self.last_id += 1;
        let todo = Todo {
            id: self.last_id,
            title: title.to_owned(),
            done: false,
        };
        self.todos.push(todo.clone());
        Ok(todo)
    }

    /// Every todo, oldest first.
    pub fn list(&self) -> &[Todo] {
        &self.todos
    }

    /// Marks a todo done and returns it. Marking it again is not an error: the caller wants it done, and
    /// it is.
    pub fn done(&mut self, id: u64) -> Result<Todo, TodoError> {
        let todo = self
            .todos
            .iter_mut()
            .find(|todo| todo.id == id)
            .ok_or(TodoError::NotFound(id))?;
        todo.done = true;
        Ok(todo.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_in_order_with_fresh_ids() {
        let mut list = TodoList::new();
        let a = list.add("buy milk").unwrap();
        let b = list.add("  walk the dog \n").unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(b.title, "walk the dog");
        assert!(!b.done);
        assert_eq!(list.list(), &[a, b]);
    }

    #[test]
    fn refuses_empty_and_overlong_titles() {
        let mut list = TodoList::new();
        assert_eq!(list.add(""), Err(TodoError::EmptyTitle));
        assert_eq!(list.add(" \t\n"), Err(TodoError::EmptyTitle));
        let long = "é".repeat(MAX_TITLE_CHARS + 1);
        assert_eq!(
            list.add(&long),
            Err(TodoError::TitleTooLong {
                chars: MAX_TITLE_CHARS + 1,
                max: MAX_TITLE_CHARS
            })
        );
        // Characters, not bytes: 200 two-byte characters fit.
        assert!(list.add(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        assert!(list.list().len() == 1, "refused titles leave no trace");
    }

    #[test]
    fn done_marks_one_todo_and_is_idempotent() {
        let mut list = TodoList::new();
        list.add("one").unwrap();
        list.add("two").unwrap();
        assert!(list.done(2).unwrap().done);
        assert!(list.done(2).unwrap().done);
        assert!(!list.list()[0].done);
        assert_eq!(list.done(3), Err(TodoError::NotFound(3)));
    }

    #[test]
    fn ids_are_never_reused_after_a_refusal() {
        let mut list = TodoList::new();
        list.add("one").unwrap();
        let _ = list.add("");
        assert_eq!(list.add("two").unwrap().id, 2);
    }

    #[test]
    fn codes_are_the_documented_ones() {
        assert_eq!(TodoError::EmptyTitle.code(), "invalid");
        assert_eq!(TodoError::TitleTooLong { chars: 201, max: 200 }.code(), "invalid");
        assert_eq!(TodoError::NotFound(1).code(), "not_found");
    }
}
