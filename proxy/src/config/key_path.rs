//! Where a key sits in the config text, both ways: the key at a byte offset (serde's errors carry only a
//! span), and the byte offset of a key (resolve's errors know only the key). Read with toml_edit, which
//! keeps every key's and value's span.

use std::fmt;

use toml_edit::{Document, Item, TableLike, Value};

/// A key's place in the file: `server.port`, `module.module_socket[2].timeout`, `stream[0].listen`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct KeyPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl KeyPath {
    /// A path from its keys.
    pub(super) fn of(keys: &[&str]) -> KeyPath {
        KeyPath(keys.iter().map(|key| Step::Key((*key).to_owned())).collect())
    }

    /// This path, then `key`.
    pub(super) fn key(mut self, key: &str) -> KeyPath {
        self.0.push(Step::Key(key.to_owned()));
        self
    }

    /// This path, then element `index` of the array it names.
    pub(super) fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Step::Index(index));
        self
    }

    /// The keys, without array indexes, outermost first.
    pub(super) fn keys(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.iter().filter_map(|step| match step {
            Step::Key(key) => Some(key.as_str()),
            Step::Index(_) => None,
        })
    }

    /// The key as a person names it inside its section or entry: `port` in `[server]`, `rate_limit.rate`
    /// in a module entry, `head.token`.
    pub(super) fn short_name(&self) -> String {
        // An element of a list of values (`metrics_allow = [1]`) is named by its list.
        let end = self
            .0
            .iter()
            .rposition(|step| matches!(step, Step::Key(_)))
            .map_or(0, |last| last + 1);
        let steps = &self.0[..end];
        let inner = match steps.iter().rposition(|step| matches!(step, Step::Index(_))) {
            Some(last_index) => &steps[last_index + 1..],
            None if steps.len() > 1 => &steps[1..],
            None => steps,
        };
        let keys: Vec<&str> = inner
            .iter()
            .filter_map(|step| match step {
                Step::Key(key) => Some(key.as_str()),
                Step::Index(_) => None,
            })
            .collect();
        keys.join(".")
    }

    /// The innermost key whose name or value holds byte `at` of `text`.
    pub(super) fn at(text: &str, at: usize) -> Option<KeyPath> {
        let document = Document::parse(text).ok()?;
        let mut path = KeyPath::default();
        let root = document.as_item().as_table_like()?;
        find_in_table(root, at, &mut path).then_some(path)
    }

    /// The byte offset where this key is written in `text`.
    pub(super) fn offset_in(&self, text: &str) -> Option<usize> {
        let document = Document::parse(text).ok()?;
        let mut node = Node::of_item(document.as_item());
        let mut start = None;
        for step in &self.0 {
            let (span, next) = match (step, node) {
                (Step::Key(key), Node::Table(table)) => {
                    let (name, item) = table.get_key_value(key)?;
                    (name.span(), Node::of_item(item))
                }
                (Step::Index(index), Node::Tables(tables)) => {
                    let table = tables.get(*index)?;
                    (table.span(), Node::Table(table))
                }
                (Step::Index(index), Node::Array(array)) => {
                    let element = array.get(*index)?;
                    (element.span(), Node::of_value(element))
                }
                _ => return None,
            };
            start = span.map(|span| span.start).or(start);
            node = next;
        }
        start
    }
}

/// What a step of a path can step into.
#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a dyn TableLike),
    Tables(&'a toml_edit::ArrayOfTables),
    Array(&'a toml_edit::Array),
    Scalar,
}

impl<'a> Node<'a> {
    fn of_item(item: &'a Item) -> Node<'a> {
        match item {
            Item::Table(table) => Node::Table(table),
            Item::ArrayOfTables(tables) => Node::Tables(tables),
            Item::Value(value) => Node::of_value(value),
            Item::None => Node::Scalar,
        }
    }

    fn of_value(value: &'a Value) -> Node<'a> {
        match value {
            Value::InlineTable(table) => Node::Table(table),
            Value::Array(array) => Node::Array(array),
            _ => Node::Scalar,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if n == 0 => write!(f, "{key}")?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

fn holds(span: Option<std::ops::Range<usize>>, at: usize) -> bool {
    span.is_some_and(|span| span.contains(&at))
}

fn find_in_table(table: &dyn TableLike, at: usize, path: &mut KeyPath) -> bool {
    for (name, _) in table.iter() {
        let Some((key, item)) = table.get_key_value(name) else {
            continue;
        };
        path.0.push(Step::Key(name.to_owned()));
        let found = holds(key.span(), at)
            || match item {
                Item::Value(value) => {
                    holds(value.span(), at) && {
                        find_in_value(value, at, path);
                        true
                    }
                }
                Item::Table(table) => find_in_table(table, at, path),
                Item::ArrayOfTables(tables) => tables.iter().enumerate().any(|(index, table)| {
                    path.0.push(Step::Index(index));
                    let found = find_in_table(table, at, path);
                    if !found {
                        path.0.pop();
                    }
                    found
                }),
                Item::None => false,
            };
        if found {
            return true;
        }
        path.0.pop();
    }
    false
}

/// Goes as deep as `at` goes inside a value known to hold it.
fn find_in_value(value: &Value, at: usize, path: &mut KeyPath) {
    match value {
        Value::Array(array) => {
            if let Some((index, element)) = array.iter().enumerate().find(|(_, e)| holds(e.span(), at)) {
                path.0.push(Step::Index(index));
                find_in_value(element, at, path);
            }
        }
        Value::InlineTable(table) => {
            find_in_table(table, at, path);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nport = 1\n[module]\nmodule_socket = [\n  { module = \"a\" },\n  { module = \"b\", rate_limit = { rate = 2 } },\n]\n[[stream]]\nlisten = \"x\"\n[[stream]]\nlisten = \"y\"\n";

    #[test]
    fn finds_the_key_at_an_offset_and_back() {
        for (needle, path) in [
            ("1\n", "server.port"),
            ("\"b\"", "module.module_socket[1].module"),
            ("2 }", "module.module_socket[1].rate_limit.rate"),
            ("\"y\"", "stream[1].listen"),
        ] {
            let at = TEXT.find(needle).unwrap();
            let found = KeyPath::at(TEXT, at).unwrap();
            assert_eq!(found.to_string(), path);
            let key_start = found.offset_in(TEXT).unwrap();
            let line = |at: usize| TEXT[..at].matches('\n').count();
            assert_eq!(line(key_start), line(at), "{path}");
        }
        let rate = KeyPath::at(TEXT, TEXT.find("2 }").unwrap()).unwrap();
        assert_eq!(rate.short_name(), "rate_limit.rate");
        assert_eq!(KeyPath::of(&["server", "port"]).short_name(), "port");
        assert_eq!(
            KeyPath::of(&["server", "metrics_allow"]).index(0).short_name(),
            "metrics_allow"
        );
        assert_eq!(KeyPath::of(&["stream"]).index(0).key("listen").short_name(), "listen");
    }
}
