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
    /// `served` opened, when it was larger than that and [`Lookup::open_larger`] asked for it; `meta`
    /// is then the open file's.
    pub opened: Option<std::fs::File>,
}

/// What the caller wants besides the file's location.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The client accepts gzip: prefer the `.gz` sibling.
    pub gzip: bool,
    /// Read the file now if it is at most this many bytes (0: never).
    pub read_up_to: u64,
    /// Open a larger file in the same trip (it will be sent whole).
    pub open_larger: bool,
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
        tracing::warn!(path = %crate::log_text::LogText::new(requested.display()), target = %canonical.display(), "symlink leads outside the site; refused");
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
    let mut opened = None;
    if served.meta.len() > lookup.read_up_to && lookup.open_larger {
        // Metadata from the open file, so the length sent is the length of what is read.
        let open = std::fs::File::open(&served.canonical).and_then(|file| Ok((file.metadata()?, file)));
        if let Ok((meta, file)) = open {
            served.meta = meta;
            opened = Some(file);
        }
    } else if served.meta.len() <= lookup.read_up_to {
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
        opened,
    }
}

/// `Ok(Some)` for a regular file whose real path is inside `root_canonical`; `Ok(None)` when there is
/// no such file; `Err` when it exists but must not be served.
fn inside_regular_file(root_canonical: &Path, requested: PathBuf) -> Result<Option<Found>, &'static str> {
    let Ok(canonical) = std::fs::canonicalize(&requested) else {
        return Ok(None);
    };
    if !canonical.starts_with(root_canonical) {
        tracing::warn!(path = %crate::log_text::LogText::new(requested.display()), target = %canonical.display(), "symlink leads outside the site; refused");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const PLAIN: Lookup = Lookup {
        gzip: false,
        read_up_to: 0,
        open_larger: false,
    };

    struct Site {
        _dir: tempfile::TempDir,
        outside: PathBuf,
        root: PathBuf,
    }

    fn site() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "secret").unwrap();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::write(root.join("a.txt.gz"), "gz").unwrap();
        std::fs::write(root.join("docs/index.htm"), "htm").unwrap();
        std::fs::write(root.join("docs/index.html"), "html").unwrap();
        symlink(outside.join("secret"), root.join("out_file")).unwrap();
        symlink(&outside, root.join("out_dir")).unwrap();
        symlink(root.join("a.txt"), root.join("in_file")).unwrap();
        symlink(outside.join("secret"), root.join("docs/index.xhtml")).unwrap();
        Site {
            _dir: dir,
            outside,
            root,
        }
    }

    async fn find(site: &Site, raw: &str, index: &[&str], lookup: Lookup) -> Resolved {
        let index: Vec<String> = index.iter().map(|s| s.to_string()).collect();
        resolve(&site.root, &SitePath::parse(raw).unwrap(), &index, lookup).await
    }

    fn served(resolved: Resolved) -> Located {
        match resolved {
            Resolved::File(located) => *located,
            other => panic!("expected a file, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn files_directories_and_index_order() {
        let site = site();
        let a = served(find(&site, "/a.txt", &[], PLAIN).await);
        assert_eq!(a.served.canonical, site.root.canonicalize().unwrap().join("a.txt"));
        assert!(a.vary && !a.gzip && a.contents.is_none());
        assert!(matches!(
            find(&site, "/docs", &["index.html"], PLAIN).await,
            Resolved::Directory
        ));
        let docs = served(find(&site, "/docs/", &["index.htm", "index.html"], PLAIN).await);
        assert!(docs.served.requested.ends_with("docs/index.htm"));
        let docs = served(find(&site, "/docs/", &["nope", "index.html"], PLAIN).await);
        assert!(docs.served.requested.ends_with("docs/index.html"));
        assert!(matches!(
            find(&site, "/docs/", &["nope"], PLAIN).await,
            Resolved::Missing(_)
        ));
        assert!(matches!(find(&site, "/a.txt/", &[], PLAIN).await, Resolved::Missing(_)));
        assert!(matches!(
            find(&site, "/missing", &[], PLAIN).await,
            Resolved::Missing(_)
        ));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_site_are_missing() {
        let site = site();
        assert!(matches!(
            find(&site, "/out_file", &[], PLAIN).await,
            Resolved::Missing(_)
        ));
        assert!(matches!(
            find(&site, "/out_dir/secret", &[], PLAIN).await,
            Resolved::Missing(_)
        ));
        assert!(matches!(
            find(&site, "/out_dir/", &["secret"], PLAIN).await,
            Resolved::Missing(_)
        ));
        assert!(
            matches!(
                find(&site, "/docs/", &["index.xhtml", "index.html"], PLAIN).await,
                Resolved::Missing(_)
            ),
            "an index that escapes is refused, not skipped"
        );
        let inside = served(find(&site, "/in_file", &[], PLAIN).await);
        assert!(
            inside.served.requested.ends_with("in_file"),
            "the name asked for decides the type"
        );
        assert!(!inside.served.canonical.starts_with(&site.outside));
    }

    #[tokio::test]
    async fn gzip_sibling_and_small_reads() {
        let site = site();
        let lookup = Lookup {
            gzip: true,
            read_up_to: 1024,
            open_larger: false,
        };
        let gz = served(find(&site, "/a.txt", &[], lookup).await);
        assert!(gz.gzip && gz.vary);
        assert_eq!(gz.contents.as_deref(), Some(&b"gz"[..]));
        let plain = served(
            find(
                &site,
                "/a.txt",
                &[],
                Lookup {
                    gzip: false,
                    read_up_to: 1,
                    open_larger: false,
                },
            )
            .await,
        );
        assert_eq!(plain.contents.as_deref(), Some(&b"a"[..]));
        std::fs::write(site.root.join("big"), vec![0u8; 2048]).unwrap();
        assert!(served(find(&site, "/big", &[], lookup).await).contents.is_none());
    }

    #[tokio::test]
    async fn only_regular_files() {
        let site = site();
        let status = std::process::Command::new("mkfifo")
            .arg(site.root.join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        assert!(matches!(find(&site, "/pipe", &[], PLAIN).await, Resolved::Missing(_)));
        let missing_root = Site {
            root: site.root.join("nope"),
            outside: site.outside.clone(),
            _dir: tempfile::tempdir().unwrap(),
        };
        assert!(matches!(
            find(&missing_root, "/a.txt", &[], PLAIN).await,
            Resolved::Missing(_)
        ));
    }
}
