//! The paths a generated project holds: where it will live, the SDK relative to it, and the SDK as a
//! `file:` URL (PEP 508 dependencies take URLs, not relative paths).

use std::io;
use std::path::{Component, Path, PathBuf};

/// The canonical form of a directory that may not exist yet: `.` and `..` resolved lexically, then the
/// deepest existing ancestor canonicalised (symlinks resolved) and the rest appended.
pub fn resolve_new(path: &Path) -> io::Result<PathBuf> {
    let mut lexical = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.as_path();
    let mut missing = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(mut resolved) => {
                resolved.extend(missing.iter().rev());
                return Ok(resolved);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(name), Some(parent)) = (existing.file_name(), existing.parent()) else {
                    return Err(e);
                };
                missing.push(name);
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `to` as reached from `from`; both absolute and canonical.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = std::iter::repeat_n(Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// The path as text that can go between double quotes in TOML and JSON unescaped and means the same to
/// Cargo and npm: UTF-8, `/`-separated, no quote, backslash or control character.
pub fn manifest_safe(path: &Path) -> Option<&str> {
    let text = path.to_str()?;
    (!text.chars().any(|c| c == '"' || c == '\\' || c.is_control())).then_some(text)
}

/// `file:///…` for an absolute path, percent-encoding everything but unreserved characters and `/`.
pub fn file_url(path: &Path) -> Option<String> {
    let text = path.to_str()?;
    if !text.starts_with('/') {
        return None;
    }
    let mut url = String::from("file://");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            url.push(byte as char);
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(url)
}

/// Whether the Node SDK's native addon has been built (`npm run build` leaves a `.node` file).
pub fn has_node_addon(sdk_node: &Path) -> bool {
    std::fs::read_dir(sdk_node)
        .map(|entries| {
            entries
                .flatten()
                .any(|entry| entry.path().extension().is_some_and(|ext| ext == "node"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_between_absolute_directories() {
        for (from, to, expected) in [
            ("/work/main/backends/hello", "/work/main", "../.."),
            ("/tmp/x/hello", "/work/main", "../../../work/main"),
            ("/work/main", "/work/main", "."),
            ("/work/main", "/work/main/sdk", "sdk"),
            ("/work/mainx/a", "/work/main", "../../main"),
            ("/", "/work/main", "work/main"),
        ] {
            assert_eq!(
                relative(Path::new(from), Path::new(to)),
                PathBuf::from(expected),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn a_new_directory_resolves_through_its_existing_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(base.join("real")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(base.join("real"), base.join("link")).unwrap();
        assert_eq!(
            resolve_new(&base.join("./real/../new/./deeper/x")).unwrap(),
            base.join("new/deeper/x")
        );
        #[cfg(unix)]
        assert_eq!(resolve_new(&base.join("link/app")).unwrap(), base.join("real/app"));
        assert_eq!(resolve_new(&base.join("real")).unwrap(), base.join("real"));
    }

    #[test]
    fn paths_that_cannot_go_in_a_manifest() {
        assert_eq!(manifest_safe(Path::new("../../main")), Some("../../main"));
        assert_eq!(manifest_safe(Path::new("../caf\u{e9} x")), Some("../caf\u{e9} x"));
        for bad in ["a\"b", "a\\b", "a\nb", "a\u{7f}"] {
            assert_eq!(manifest_safe(Path::new(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn file_urls_percent_encode() {
        assert_eq!(
            file_url(Path::new("/work/main/sdk-python")).unwrap(),
            "file:///work/main/sdk-python"
        );
        assert_eq!(
            file_url(Path::new("/my dir/caf\u{e9}#1")).unwrap(),
            "file:///my%20dir/caf%C3%A9%231"
        );
        assert_eq!(file_url(Path::new("relative")), None);
    }
}
