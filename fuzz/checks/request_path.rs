//! A request path through routing and static path safety, as the proxy does it.
//!
//! Checked for every UTF-8 input: no panic; the module segment is a non-empty, slash-free piece of the
//! path; `prefix + rest` is the path; and whatever `SitePath::parse` accepts is a list of plain file
//! names that, joined to a root, stays below it.
//!
//! Shared by the fuzz target and by the replay tests of the normal suite (`#[path]` includes), so
//! both check exactly the same things.

use std::collections::HashMap;
use std::path::{Component, Path};

use modproxy::routing::{module_segment, route, Route};
use modproxy::static_site::site_path::SitePath;

/// Panics unless whatever `SitePath::parse` accepts from `raw` is plain file names that, joined to a
/// root, stay below it.
pub fn check_site_path(raw: &str) {
    let Ok(path) = SitePath::parse(raw) else {
        return;
    };
    for name in &path.segments {
        assert!(!name.is_empty() && name != "." && name != "..", "{raw:?} -> {name:?}");
        assert!(!name.contains(['/', '\\', '\0']), "{raw:?} -> {name:?}");
    }
    let root = Path::new("/srv/site");
    let full = root.join(path.relative());
    assert!(full.starts_with(root), "{raw:?} -> {}", full.display());
    assert!(
        full.components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
        "{raw:?} -> {}",
        full.display()
    );
}

/// Runs one input; panics (which the fuzzer reports as a crash) when an invariant above fails.
pub fn check(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((segment, end)) = module_segment(path) {
        assert!(!segment.is_empty() && !segment.contains('/'), "{path:?} -> {segment:?}");
        assert!(path[..end].ends_with(segment), "{path:?} -> {segment:?} at {end}");
        assert!(path[..end - segment.len()].bytes().all(|b| b == b'/'), "{path:?}");
    }

    // The segment itself as a configured module, and one name that is not.
    let mut modules = HashMap::new();
    if let Some((segment, _)) = module_segment(path) {
        modules.insert(segment.to_owned(), ());
    }
    modules.insert("s3".to_owned(), ());
    match route(&modules, path) {
        Route::Module { name, prefix, rest, .. } => {
            assert_eq!(format!("{prefix}{rest}"), path);
            assert_eq!(module_segment(prefix).map(|(s, _)| s), Some(name));
            assert!(rest.is_empty() || rest.starts_with('/'), "{path:?} -> rest {rest:?}");
            check_site_path(rest);
        }
        Route::Inner { prefix, rest } => {
            assert_eq!(format!("{prefix}{rest}"), path);
            check_site_path(rest);
        }
        Route::Root => assert!(
            module_segment(path).is_none(),
            "{path:?} has a module but went to the root"
        ),
    }
    check_site_path(path);
}
