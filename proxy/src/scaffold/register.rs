//! `modproxy new --register CONF`: adds a `module_socket` entry to a config file's text. The edit goes
//! through toml_edit, so the file's comments, key order, alignment and array style survive; only the
//! new entry is new. Pure: text in, text out.

use toml_edit::{Array, ArrayOfTables, Decor, DocumentMut, InlineTable, Item, Table, TableLike, Value};

/// Why the entry could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The file is not TOML at all.
    #[error("not valid TOML: {0}")]
    Toml(#[from] toml_edit::TomlError),
    /// The module name is taken.
    #[error("module {module:?} is already configured in [module] {list}; choose another --module, or remove that entry first")]
    Duplicate {
        /// The module name.
        module: String,
        /// The list that holds it.
        list: String,
    },
    /// `module` or `module_socket` has a shape this edit does not know how to extend.
    #[error("{0}")]
    Shape(&'static str),
}

/// What a generated backend's entry sets `pipeline` to: every SDK answers pipelined requests in order.
pub const SDK_PIPELINE: i64 = 16;

/// Returns `text` with `{ module = MODULE, forward_pass = FORWARD_PASS, pipeline = 16 }` added to `[module]
/// module_socket`, creating the array (and `[module]`, right after `[server]`) when absent. Refuses a
/// module name that any list of `[module]` already holds.
pub fn register(text: &str, module: &str, forward_pass: &str) -> Result<String, RegisterError> {
    let mut doc: DocumentMut = text.parse()?;
    if let Some(existing) = doc.get("module") {
        let modules = existing.as_table_like().ok_or(RegisterError::Shape(
            "`module` is not a table; expected a [module] section",
        ))?;
        if let Some(list) = list_holding(modules, module) {
            return Err(RegisterError::Duplicate {
                module: module.to_owned(),
                list,
            });
        }
    }

    let entry = InlineTable::from_iter([
        ("module", Value::from(module)),
        ("forward_pass", Value::from(forward_pass)),
        ("pipeline", Value::from(SDK_PIPELINE)),
    ]);
    if !doc.contains_key("module") {
        let mut table = Table::new();
        // Where the documented layout has it: after [server], before [upstream] and [log].
        if let Some(server) = doc.get("server").and_then(Item::as_table).and_then(Table::position) {
            table.set_position(server);
        }
        doc.insert("module", Item::Table(table));
    }
    if let Some(modules) = doc["module"].as_inline_table_mut() {
        if !modules.contains_key("module_socket") {
            insert_inline(modules, entry);
            return Ok(doc.to_string());
        }
    }
    let modules = doc["module"].as_table_like_mut().ok_or(RegisterError::Shape(
        "`module` is not a table; expected a [module] section",
    ))?;
    match modules.get_mut("module_socket") {
        None => {
            modules.insert("module_socket", Item::Value(Value::Array(multi_line_array(entry))));
        }
        Some(Item::Value(Value::Array(array))) => append(array, entry),
        Some(Item::ArrayOfTables(tables)) => append_table(tables, entry),
        Some(_) => {
            return Err(RegisterError::Shape(
                "[module] module_socket is not an array; expected module_socket = [ { module = \"…\", forward_pass = \"…\" } ]",
            ))
        }
    }
    Ok(doc.to_string())
}

/// The name of the `[module]` list that already configures `module`, if any.
fn list_holding(modules: &dyn TableLike, module: &str) -> Option<String> {
    let names = |item: &Item| -> Vec<Option<String>> {
        match item {
            Item::Value(Value::Array(array)) => array
                .iter()
                .map(|entry| entry.as_inline_table()?.get("module")?.as_str().map(str::to_owned))
                .collect(),
            Item::ArrayOfTables(tables) => tables
                .iter()
                .map(|entry| entry.get("module")?.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    modules
        .iter()
        .find(|(_, item)| names(item).iter().flatten().any(|name| name == module))
        .map(|(list, _)| list.to_owned())
}

/// `[\n  { … },\n]`, the style of the shipped conf/default.toml, easy to extend by hand.
fn multi_line_array(entry: InlineTable) -> Array {
    let mut array = Array::new();
    array.push_formatted(Value::InlineTable(entry).decorated("\n  ", ""));
    array.set_trailing_comma(true);
    array.set_trailing("\n");
    array
}

/// `module = { … }`: the new key goes last, taking over the space before the `}`.
fn insert_inline(modules: &mut InlineTable, entry: InlineTable) {
    let closing = modules.iter_mut().last().map(|(_, value)| {
        let suffix = raw(value.decor().suffix()).to_owned();
        value.decor_mut().set_suffix("");
        suffix
    });
    let mut array = Value::Array(one_line_array(entry));
    *array.decor_mut() = Decor::new(" ", closing.unwrap_or_else(|| " ".to_owned()));
    modules.insert("module_socket", array);
}

/// `[ { … } ]`.
fn one_line_array(entry: InlineTable) -> Array {
    let mut array = Array::new();
    array.push_formatted(Value::InlineTable(entry).decorated(" ", " "));
    array
}

/// Appends `entry` in the style the array already has: on a line of its own with the same indent in a
/// multi-line array (after any comment on the previous entry's line), after a space in a one-line array.
/// toml_edit keeps what follows the last entry in that entry's suffix, or after a trailing comma in the
/// array's trailing text; both move behind the new entry.
fn append(array: &mut Array, entry: InlineTable) {
    let mut entry = Value::InlineTable(entry);
    let trailing = raw(Some(array.trailing())).to_owned();
    let Some(last) = array.iter_mut().last() else {
        match trailing.rfind('\n') {
            // `[\n  # none yet\n]`: keep the comment above the entry.
            Some(newline) => {
                entry.decor_mut().set_prefix(format!("{}  ", &trailing[..=newline]));
                array.set_trailing("\n");
                array.set_trailing_comma(true);
            }
            None => {
                *entry.decor_mut() = Decor::new(" ", " ");
                array.set_trailing("");
            }
        }
        array.push_formatted(entry);
        return;
    };
    let prefix = raw(last.decor().prefix()).to_owned();
    let after = format!("{}{trailing}", raw(last.decor().suffix()));
    last.decor_mut().set_suffix("");
    if prefix.contains('\n') || after.contains('\n') {
        let indent = match prefix.rfind('\n') {
            Some(newline) => prefix[newline + 1..].to_owned(),
            None => "  ".to_owned(),
        };
        let (comment, closing) = match after.rfind('\n') {
            Some(newline) => after.split_at(newline),
            None => (after.as_str(), ""),
        };
        *entry.decor_mut() = Decor::new(format!("{}\n{indent}", comment.trim_end()), "");
        array.push_formatted(entry);
        array.set_trailing(closing);
    } else {
        *entry.decor_mut() = Decor::new(" ", "");
        array.push_formatted(entry);
        array.set_trailing(after);
    }
}

/// `[[module.module_socket]]` form: one more table of the same shape.
fn append_table(tables: &mut ArrayOfTables, entry: InlineTable) {
    let mut table = Table::new();
    for (key, value) in entry.iter() {
        table.insert(key, Item::Value(value.clone()));
    }
    tables.push(table);
}

fn raw(text: Option<&toml_edit::RawString>) -> &str {
    text.and_then(toml_edit::RawString::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: &str = r#"{ module = "new", forward_pass = "127.0.0.1:4000", pipeline = 16 }"#;

    fn add(text: &str) -> String {
        register(text, "new", "127.0.0.1:4000").unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Every edit must give a config the proxy itself accepts, with the new module in it.
    fn loads(text: &str) {
        let config = crate::config::Config::parse(text, "t.toml".as_ref(), "/".as_ref())
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.modules.contains_key("new"), "{text}");
    }

    #[test]
    fn the_shipped_config_keeps_every_comment_and_its_alignment() {
        let shipped = include_str!("../../../conf/default.toml");
        let edited = add(shipped);
        loads(&edited);
        let expected = shipped.replace(
            "  { module = \"todo-go\",     forward_pass = \"127.0.0.1:21233\" },\n]",
            &format!("  {{ module = \"todo-go\",     forward_pass = \"127.0.0.1:21233\" }},\n  {ENTRY},\n]"),
        );
        assert_ne!(expected, shipped, "the shipped config changed; update this test");
        assert_eq!(edited, expected);
    }

    #[test]
    fn multi_line_arrays_with_comments_after_the_last_entry() {
        let text = "[module]\nmodule_socket = [\n    { module = \"a\", forward_pass = \"127.0.0.1:1\" },  # the first\n]  # after\n";
        assert_eq!(
            add(text),
            format!("[module]\nmodule_socket = [\n    {{ module = \"a\", forward_pass = \"127.0.0.1:1\" }},  # the first\n    {ENTRY},\n]  # after\n")
        );
        let no_comma = "[module]\nmodule_socket = [\n  { module = \"a\", forward_pass = \"127.0.0.1:1\" }  # a\n]\n";
        let edited = add(no_comma);
        assert_eq!(
            edited,
            format!("[module]\nmodule_socket = [\n  {{ module = \"a\", forward_pass = \"127.0.0.1:1\" }},  # a\n  {ENTRY}\n]\n")
        );
        loads(&edited);
    }

    #[test]
    fn one_line_arrays_stay_on_one_line() {
        for (text, expected) in [
            (
                "[module]\nmodule_socket = [ { module = \"a\", forward_pass = \"127.0.0.1:1\" } ]\n",
                format!(
                    "[module]\nmodule_socket = [ {{ module = \"a\", forward_pass = \"127.0.0.1:1\" }}, {ENTRY} ]\n"
                ),
            ),
            (
                "[module]\nmodule_socket = [{ module = \"a\", forward_pass = \"127.0.0.1:1\" },]\n",
                format!("[module]\nmodule_socket = [{{ module = \"a\", forward_pass = \"127.0.0.1:1\" }}, {ENTRY},]\n"),
            ),
        ] {
            let edited = add(text);
            assert_eq!(edited, expected);
            loads(&edited);
        }
    }

    #[test]
    fn empty_arrays() {
        let edited = add("[module]\nmodule_socket = []  # none yet\n");
        assert_eq!(edited, format!("[module]\nmodule_socket = [ {ENTRY} ]  # none yet\n"));
        loads(&edited);
        assert_eq!(
            add("[module]\nmodule_socket = [\n  # backends go here\n]\n"),
            format!("[module]\nmodule_socket = [\n  # backends go here\n  {ENTRY},\n]\n")
        );
    }

    #[test]
    fn an_absent_array_or_section_is_created() {
        let text = "# proxy\n[server]\nport = 8080  # http\n\n[module]\n# static only\nmodule_html = [ { module = \"site\", path = \"x\" } ]\n\n# logs\n[log]\nlevel = \"info\"\n";
        let edited = add(text);
        assert_eq!(
            edited,
            format!("# proxy\n[server]\nport = 8080  # http\n\n[module]\n# static only\nmodule_html = [ {{ module = \"site\", path = \"x\" }} ]\nmodule_socket = [\n  {ENTRY},\n]\n\n# logs\n[log]\nlevel = \"info\"\n")
        );
        loads(&edited);

        let no_section = "# proxy\n[server]\nport = 8080\n\n# logs\n[log]\nlevel = \"info\"\n";
        let edited = add(no_section);
        assert_eq!(
            edited,
            format!("# proxy\n[server]\nport = 8080\n\n[module]\nmodule_socket = [\n  {ENTRY},\n]\n\n# logs\n[log]\nlevel = \"info\"\n")
        );
        loads(&edited);

        let edited = add("");
        assert_eq!(edited, format!("[module]\nmodule_socket = [\n  {ENTRY},\n]\n"));
        loads(&edited);
    }

    #[test]
    fn other_shapes_of_the_same_list() {
        let tables =
            "[[module.module_socket]]\nmodule = \"a\"\nforward_pass = \"127.0.0.1:1\"\n\n[log]\nlevel = \"info\"\n";
        let edited = add(tables);
        loads(&edited);
        assert!(edited.starts_with(tables.split("\n[log]").next().unwrap()), "{edited}");
        assert!(edited.contains("[[module.module_socket]]\nmodule = \"new\"\nforward_pass = \"127.0.0.1:4000\"\n"));

        let inline = "module = { module_socket = [] }\n";
        let edited = add(inline);
        assert_eq!(edited, format!("module = {{ module_socket = [ {ENTRY} ] }}\n"));
        loads(&edited);

        let edited = add("module = {}\n");
        assert_eq!(edited, format!("module = {{ module_socket = [ {ENTRY} ] }}\n"));
        loads(&edited);

        let inline = "module = { module_html = [] }\n";
        let edited = add(inline);
        assert_eq!(
            edited,
            format!("module = {{ module_html = [], module_socket = [ {ENTRY} ] }}\n")
        );
        loads(&edited);
    }

    #[test]
    fn a_taken_name_is_refused_whichever_list_holds_it() {
        for (list, text) in [
            (
                "module_socket",
                "[module]\nmodule_socket = [ { module = \"new\", forward_pass = \"127.0.0.1:1\" } ]\n",
            ),
            (
                "module_html",
                "[module]\nmodule_html = [ { module = \"new\", path = \"x\" } ]\n",
            ),
            (
                "module_http",
                "[module]\nmodule_http = [\n  { module = \"new\", proxy_pass = \"http://a\" },\n]\n",
            ),
            (
                "module_socket",
                "[[module.module_socket]]\nmodule = \"new\"\nforward_pass = \"127.0.0.1:1\"\n",
            ),
        ] {
            let error = register(text, "new", "127.0.0.1:4000").unwrap_err();
            assert!(
                matches!(&error, RegisterError::Duplicate { list: l, .. } if l == list),
                "{error}"
            );
            assert!(
                error.to_string().contains("\"new\" is already configured in [module] "),
                "{error}"
            );
        }
        // Names differ by case are different URL segments.
        add("[module]\nmodule_socket = [ { module = \"New\", forward_pass = \"127.0.0.1:1\" } ]\n");
    }

    #[test]
    fn shapes_it_cannot_extend_are_errors_not_guesses() {
        for text in ["module = 3\n", "[module]\nmodule_socket = \"s3\"\n", "[module\n"] {
            assert!(register(text, "new", "127.0.0.1:4000").is_err(), "{text}");
        }
        let error = register("[module\n", "new", "x").unwrap_err().to_string();
        assert!(error.contains("line 1"), "{error}");
    }
}
