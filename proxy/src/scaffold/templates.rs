//! The files of a generated project, embedded at build time from `proxy/templates/<lang>/`.
//!
//! Every template file ends in `.tmpl`, which is dropped on output, so that no tool takes a template for
//! a live file: a `Cargo.toml` would make Cargo leave the directory out of the proxy's package, pytest
//! would collect `test_app.py`, npm and ruff would find a `package.json` or `pyproject.toml`. The lists
//! below are checked against the directories by a test, so a new template file cannot be forgotten.

/// One file of a generated project.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// The path inside the project, `/`-separated.
    pub path: &'static str,
    /// The contents, with `{{placeholder}}`s.
    pub text: &'static str,
}

macro_rules! templates {
    ($lang:literal: $($path:literal),+ $(,)?) => {
        &[$(Template {
            path: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $lang, "/", $path, ".tmpl")),
        }),+]
    };
}

/// A Cargo project with its own `[workspace]`, two methods and a test over TCP.
pub const RUST: &[Template] =
    templates!("rust": "Cargo.toml", "README.md", ".gitignore", "src/main.rs", "tests/over_tcp.rs");
/// `app.py` with `@method` handlers, `pyproject.toml`, and a pytest test.
pub const PYTHON: &[Template] =
    templates!("python": "pyproject.toml", "README.md", ".gitignore", "app.py", "test_app.py");
/// `package.json`, `index.js` with two handlers, and a `node:test` test.
pub const NODE: &[Template] =
    templates!("node": "package.json", "README.md", ".gitignore", "index.js", "test/app.test.js");

/// Replaces each `{{key}}` whose key is in `values`; any other braces (a Rust `format!` escape, a JS
/// object) are left alone.
pub fn render(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let value = from[2..].find("}}").and_then(|end| {
            values
                .iter()
                .find(|(key, _)| *key == &from[2..2 + end])
                .map(|(key, value)| (key.len(), value))
        });
        match value {
            Some((key_len, value)) => {
                out.push_str(value);
                rest = &from[2 + key_len + 2..];
            }
            None => {
                out.push('{');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The placeholders `generate` gives a value for.
    const PLACEHOLDERS: &[&str] = &[
        "name",
        "module",
        "port",
        "listen",
        "sdk_rust",
        "sdk_python",
        "node_dependencies",
    ];

    fn all() -> [(&'static str, &'static [Template]); 3] {
        [("rust", RUST), ("python", PYTHON), ("node", NODE)]
    }

    #[test]
    fn render_fills_known_keys_only() {
        let values = [("name", "demo"), ("port", "4000")];
        assert_eq!(render("{{name}} on {{port}}", &values), "demo on 4000");
        assert_eq!(render("format!(\"{{}}\") {{name}}", &values), "format!(\"{{}}\") demo");
        assert_eq!(render("{{other}} {{name", &values), "{{other}} {{name");
        assert_eq!(render("{{{name}}}", &values), "{demo}");
        assert_eq!(render("", &values), "");
        // A value that looks like a placeholder is not expanded again.
        assert_eq!(render("{{name}}", &[("name", "{{port}}"), ("port", "1")]), "{{port}}");
    }

    #[test]
    fn every_template_file_is_embedded_and_every_embedded_file_exists() {
        for (lang, templates) in all() {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates").join(lang);
            let mut on_disk = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let relative = path.strip_prefix(&root).unwrap().to_str().unwrap().replace('\\', "/");
                        let relative = relative
                            .strip_suffix(".tmpl")
                            .unwrap_or_else(|| panic!("templates/{lang}/{relative}: template files end in .tmpl"));
                        on_disk.push(relative.to_owned());
                    }
                }
            }
            on_disk.sort();
            let mut embedded: Vec<String> = templates.iter().map(|t| t.path.to_owned()).collect();
            embedded.sort();
            assert_eq!(
                on_disk, embedded,
                "templates/{lang} and the list in templates.rs differ"
            );
        }
    }

    #[test]
    fn templates_use_only_known_placeholders_and_each_has_a_readme_with_the_conf_snippet() {
        let values: Vec<(&str, &str)> = PLACEHOLDERS.iter().map(|key| (*key, "VALUE")).collect();
        for (lang, templates) in all() {
            for template in templates {
                let rendered = render(template.text, &values);
                let mut rest = rendered.as_str();
                while let Some(start) = rest.find("{{") {
                    let word: String = rest[start + 2..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        word.is_empty() || !rest[start + 2 + word.len()..].starts_with("}}"),
                        "templates/{lang}/{}: unknown placeholder {{{{{word}}}}}",
                        template.path
                    );
                    rest = &rest[start + 2..];
                }
            }
            let readme = templates.iter().find(|t| t.path == "README.md").unwrap().text;
            for needle in ["module_socket = [", "{{module}}", "{{listen}}", "conf/default.toml"] {
                assert!(readme.contains(needle), "templates/{lang}/README.md lacks {needle}");
            }
        }
    }
}
