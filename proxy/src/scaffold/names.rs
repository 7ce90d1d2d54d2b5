//! What `modproxy new` accepts as a project NAME and a module MOD. Both end up in places with rules of
//! their own (a Cargo package, an npm package, a Python distribution, a URL path segment), so they are
//! checked here, once, before anything is written.

use crate::config::INNER_MODULE;

/// The longest NAME or MOD accepted.
pub const MAX_LEN: usize = 64;

/// What NAME may be, for help texts and error messages.
pub const NAME_RULE: &str = "a lowercase ASCII letter, then lowercase letters, digits, '-' or '_', \
     ending in a letter or digit, at most 64 characters (valid as a Cargo, npm and Python package name)";

/// What MOD may be, for help texts and error messages.
pub const MODULE_RULE: &str = "ASCII letters, digits, '-' and '_', at most 64 characters (it is a URL path segment)";

/// Names the toolchains refuse or that would shadow something the project needs: Rust keywords and the
/// built-in crates (the package name is also the crate name), the SDK's own package name, npm's
/// directory, and file names Windows reserves.
#[rustfmt::skip]
const RESERVED: &[&str] = &[
    // Rust keywords, current and reserved.
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop",
    "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static",
    "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual",
    "where", "while", "yield",
    // Crates every Rust program already has.
    "alloc", "core", "proc_macro", "std", "test",
    // The dependency itself, and npm's own directory.
    "modproxy_sdk", "node_modules",
    // Device names Windows refuses as file names.
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9",
    "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Why a NAME or MOD was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// NAME breaks [`NAME_RULE`].
    #[error("project name {name:?} {why}; use {NAME_RULE}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// NAME is a word the toolchains reserve.
    #[error("project name {0:?} is reserved (a Rust keyword or built-in crate, the SDK's own name, or a device name); choose another")]
    ReservedName(String),
    /// MOD breaks [`MODULE_RULE`].
    #[error("module {name:?} {why}; use {MODULE_RULE}")]
    BadModule {
        /// The module as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Checks a project NAME against [`NAME_RULE`] and the reserved words.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let bad = |why| NameError::BadName {
        name: name.to_owned(),
        why,
    };
    let first = name.chars().next().ok_or_else(|| bad("is empty"))?;
    if name.len() > MAX_LEN {
        return Err(bad("is too long"));
    }
    if !first.is_ascii_lowercase() {
        return Err(bad("must start with a lowercase letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(bad("holds a character other than a-z, 0-9, '-' and '_'"));
    }
    if name.ends_with(['-', '_']) {
        return Err(bad("must end in a letter or digit"));
    }
    // Cargo reads '-' as '_' in crate names, so both spellings of a reserved word are refused.
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(NameError::ReservedName(name.to_owned()));
    }
    Ok(())
}

/// Checks a module name against [`MODULE_RULE`]; the built-in module's name is refused too.
pub fn validate_module(module: &str) -> Result<(), NameError> {
    let bad = |why| NameError::BadModule {
        name: module.to_owned(),
        why,
    };
    if module.is_empty() {
        return Err(bad("is empty"));
    }
    if module.len() > MAX_LEN {
        return Err(bad("is too long"));
    }
    if !module
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad("holds a character other than letters, digits, '-' and '_'"));
    }
    if module == INNER_MODULE {
        return Err(bad("is reserved for the proxy's built-in pages"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_valid_everywhere() {
        for name in ["a", "hello", "hello-py", "my_backend2", "x1-y_z", &"a".repeat(MAX_LEN)] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_a_toolchain_would_refuse() {
        for (name, why) in [
            ("", "is empty"),
            ("Hello", "must start with a lowercase letter"),
            ("1st", "must start with a lowercase letter"),
            ("-x", "must start with a lowercase letter"),
            ("_x", "must start with a lowercase letter"),
            ("helloWorld", "holds a character"),
            ("hello world", "holds a character"),
            ("hello.py", "holds a character"),
            ("../evil", "must start with a lowercase letter"),
            ("a/b", "holds a character"),
            ("a\\b", "holds a character"),
            ("caf\u{e9}", "holds a character"),
            ("x\u{0}", "holds a character"),
            ("trailing-", "must end in a letter or digit"),
            ("trailing_", "must end in a letter or digit"),
        ] {
            match validate_name(name) {
                Err(NameError::BadName { why: got, .. }) => assert!(got.contains(why), "{name:?}: {got}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(validate_name(&"a".repeat(MAX_LEN + 1)).is_err());
    }

    #[test]
    fn reserved_names_in_either_spelling() {
        for name in [
            "fn",
            "test",
            "std",
            "modproxy-sdk",
            "modproxy_sdk",
            "node_modules",
            "proc-macro",
            "nul",
        ] {
            assert_eq!(validate_name(name), Err(NameError::ReservedName(name.into())), "{name}");
        }
        let message = validate_name("Bad").unwrap_err().to_string();
        assert!(message.contains("lowercase ASCII letter"), "{message}");
    }

    #[test]
    fn modules_are_url_segments() {
        for module in ["s3", "Todo-API", "a_b", "9", &"m".repeat(MAX_LEN)] {
            assert_eq!(validate_module(module), Ok(()), "{module}");
        }
        for module in [
            "",
            "a.b",
            "a/b",
            "..",
            "a b",
            "a%2Fb",
            "a?b",
            "a#b",
            "caf\u{e9}",
            "x\r\n",
            INNER_MODULE,
            &"m".repeat(MAX_LEN + 1),
        ] {
            assert!(validate_module(module).is_err(), "{module:?}");
        }
        let message = validate_module("a.b").unwrap_err().to_string();
        assert!(message.contains("letters, digits, '-' and '_'"), "{message}");
    }
}
