//! The filesystem side of finding a file: symlinks resolved and checked against the site's directory,
//! directories turned into an index file or a redirect, precompressed siblings looked up.
//!
//! Paths are canonicalised (every symlink followed) and must still start with the canonical site
//! directory, so a symlink inside the site that points outside it is treated as missing. Only regular
//! files are served: a FIFO or a device in the site would hang or leak.

use std::fs::Metadata;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

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

/// A file found for a request, in the representation to send.
#[derive(Debug)]
pub struct Located {
    /// The file to send: the one asked for, or its `.gz` sibling.
    pub served: Found,
    /// `served` is the gzip sibling.
    pub gzip: bool,
    /// A `.gz` sibling exists, so the response depends on `Accept-Encoding`.
    pub vary: bool,
    /// The whole of `served`, when it was small enough to read in the same trip (see [`Lookup`]).
    pub contents: Option<Bytes>,
}

/// What the caller wants besides the file's location.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The client accepts gzip: prefer the `.gz` sibling.
    pub gzip: bool,
    /// Read the file now if it is at most this many bytes (0: never).
    pub read_up_to: u64,
}

/// Resolves `path` below `root`, trying `index` names in order for a directory.
pub async fn resolve(root: &Path, path: &SitePath, index: &[String], lookup: Lookup) -> Resolved {
    let root = root.to_owned();
    let path = path.clone();
    let index = index.to_vec();
    // Several blocking syscalls in a row: one trip to the blocking pool instead of one per call.
    tokio::task::spawn_blocking(move || match resolve_blocking(&root, &path, &index) {
        Ok((root_canonical, file)) => Resolved::File(Box::new(located(&root_canonical, file, lookup))),
        Err(other) => other,
    })
    .await
    .unwrap_or(Resolved::Missing("resolver task failed"))
}

/// The file `path` names and the canonical root, or why there is none (`Err` is never `File`).
fn resolve_blocking(root: &Path, path: &SitePath, index: &[String]) -> Result<(PathBuf, Found), Resolved> {
    let Ok(root_canonical) = std::fs::canonicalize(root) else {
        tracing::warn!(site = %root.display(), "site directory is missing");
        return Err(Resolved::Missing("site directory missing"));
    };
    let requested = root.join(path.relative());
    let Ok(canonical) = std::fs::canonicalize(&requested) else {
        return Err(Resolved::Missing("no such file"));
    };
    if !canonical.starts_with(&root_canonical) {
        tracing::warn!(path = %requested.display(), target = %canonical.display(), "symlink leads outside the site; refused");
        return Err(Resolved::Missing("symlink leads outside the site"));
    }
    let Ok(meta) = std::fs::metadata(&canonical) else {
        return Err(Resolved::Missing("no such file"));
    };
    if meta.is_dir() {
        if !path.trailing_slash {
            return Err(Resolved::Directory);
        }
        for name in index {
            match inside_regular_file(&root_canonical, requested.join(name)) {
                Ok(Some(found)) => return Ok((root_canonical, found)),
                Ok(None) => {}
                Err(reason) => return Err(Resolved::Missing(reason)),
            }
        }
        return Err(Resolved::Missing("directory without an index file"));
    }
    if path.trailing_slash {
        // `/file.html/`: like the OS, a file is not a directory.
        return Err(Resolved::Missing("a file asked for as a directory"));
    }
    if !meta.is_file() {
        return Err(Resolved::Missing("not a regular file"));
    }
    let found = Found {
        requested,
        canonical,
        meta,
    };
    Ok((root_canonical, found))
}

/// Picks the representation (the `.gz` sibling when wanted and present) and reads it if small.
fn located(root_canonical: &Path, file: Found, lookup: Lookup) -> Located {
    let mut name = file.requested.as_os_str().to_owned();
    name.push(".gz");
    let sibling = inside_regular_file(root_canonical, PathBuf::from(name)).ok().flatten();
    let vary = sibling.is_some();
    let (mut served, gzip) = match sibling {
        Some(gz) if lookup.gzip => (gz, true),
        _ => (file, false),
    };
    let mut contents = None;
    if served.meta.len() <= lookup.read_up_to {
        // Length and metadata from the same open file, so they agree with each other.
        let read = std::fs::File::open(&served.canonical).and_then(|mut f| {
            let meta = f.metadata()?;
            let mut buf = Vec::with_capacity(meta.len() as usize);
            (&mut f).take(lookup.read_up_to + 1).read_to_end(&mut buf)?;
            Ok((meta, buf))
        });
        if let Ok((meta, buf)) = read {
            if buf.len() as u64 == meta.len() {
                served.meta = meta;
                contents = Some(Bytes::from(buf));
            }
        }
    }
    Located {
        served,
        gzip,
        vary,
        contents,
    }
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
