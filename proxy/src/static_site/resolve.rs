//! The filesystem side of finding a file: symlinks resolved and checked against the site's directory,
//! directories turned into an index file or a redirect, precompressed siblings looked up.
//!
//! Paths are canonicalised (every symlink followed) and must still start with the canonical site
//! directory, so a symlink inside the site that points outside it is treated as missing. Only regular
//! files are served: a FIFO or a device in the site would hang or leak.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::site_path::SitePath;

/// What a request path names on disk.
#[derive(Debug)]
pub enum Resolved {
    /// A regular file inside the site, and its precompressed sibling if there is one.
    File(Box<Located>),
    /// A directory asked for without its trailing slash.
    Directory,
    /// Nothing servable; the reason is for the debug log.
    Missing(&'static str),
}

/// A regular file inside the site.
#[derive(Debug)]
pub struct Found {
    /// The path as requested (symlinks not followed): its name decides the content type.
    pub requested: PathBuf,
    /// The same file with every symlink resolved: what is opened.
    pub canonical: PathBuf,
    /// Its metadata.
    pub meta: Metadata,
}

/// A file found for a request.
#[derive(Debug)]
pub struct Located {
    /// The file itself.
    pub file: Found,
    /// `<file>.gz` next to it, if that is a regular file inside the site.
    pub gzip: Option<Found>,
}

/// Resolves `path` below `root`, trying `index` names in order for a directory.
pub async fn resolve(root: &Path, path: &SitePath, index: &[String]) -> Resolved {
    let root = root.to_owned();
    let path = path.clone();
    let index = index.to_vec();
    // Several blocking syscalls in a row: one trip to the blocking pool instead of one per call.
    tokio::task::spawn_blocking(move || resolve_blocking(&root, &path, &index))
        .await
        .unwrap_or(Resolved::Missing("resolver task failed"))
}

fn resolve_blocking(root: &Path, path: &SitePath, index: &[String]) -> Resolved {
    let Ok(root_canonical) = std::fs::canonicalize(root) else {
        tracing::warn!(site = %root.display(), "site directory is missing");
        return Resolved::Missing("site directory missing");
    };
    let requested = root.join(path.relative());
    let Ok(canonical) = std::fs::canonicalize(&requested) else {
        return Resolved::Missing("no such file");
    };
    if !canonical.starts_with(&root_canonical) {
        tracing::warn!(path = %requested.display(), target = %canonical.display(), "symlink leads outside the site; refused");
        return Resolved::Missing("symlink leads outside the site");
    }
    let Ok(meta) = std::fs::metadata(&canonical) else {
        return Resolved::Missing("no such file");
    };
    if meta.is_dir() {
        if !path.trailing_slash {
            return Resolved::Directory;
        }
        for name in index {
            match inside_regular_file(&root_canonical, requested.join(name)) {
                Ok(Some(found)) => return located(&root_canonical, found),
                Ok(None) => {}
                Err(reason) => return Resolved::Missing(reason),
            }
        }
        return Resolved::Missing("directory without an index file");
    }
    if path.trailing_slash {
        // `/file.html/`: like the OS, a file is not a directory.
        return Resolved::Missing("a file asked for as a directory");
    }
    if !meta.is_file() {
        return Resolved::Missing("not a regular file");
    }
    let found = Found {
        requested,
        canonical,
        meta,
    };
    located(&root_canonical, found)
}

/// `file`, with its `.gz` sibling looked up in the same trip to the blocking pool.
fn located(root_canonical: &Path, file: Found) -> Resolved {
    let mut name = file.requested.as_os_str().to_owned();
    name.push(".gz");
    let gzip = inside_regular_file(root_canonical, PathBuf::from(name)).ok().flatten();
    Resolved::File(Box::new(Located { file, gzip }))
}

/// `Ok(Some)` for a regular file whose real path is inside `root_canonical`; `Ok(None)` when there is
/// no such file; `Err` when it exists but must not be served.
fn inside_regular_file(root_canonical: &Path, requested: PathBuf) -> Result<Option<Found>, &'static str> {
    let Ok(canonical) = std::fs::canonicalize(&requested) else {
        return Ok(None);
    };
    if !canonical.starts_with(root_canonical) {
        tracing::warn!(path = %requested.display(), target = %canonical.display(), "symlink leads outside the site; refused");
        return Err("symlink leads outside the site");
    }
    match std::fs::metadata(&canonical) {
        Ok(meta) if meta.is_file() => Ok(Some(Found {
            requested,
            canonical,
            meta,
        })),
        _ => Ok(None),
    }
}
