//! Small files kept in memory, ready to send, so a plain GET of a hot small file costs one `stat`
//! instead of a trip to the blocking pool with its `realpath`s, `open`, `fstat`, `read` and `close`.
//!
//! Content is never stale: every hit first `stat`s the file it was read from (by the path as
//! requested, so a retargeted symlink counts as a different file) and is used only if device, inode,
//! size, modification and change times are all unchanged (a same-size rewrite within the file
//! system's timestamp granularity is the one change this misses, and then only until
//! [`RECHECK_AFTER`]). The `stat` runs on the event thread, as nginx's does: it is a metadata lookup
//! of a file read moments ago. What the lookup decided besides
//! the content (which index file, whether a `.gz` sibling exists) is trusted for [`RECHECK_AFTER`], then
//! the file is looked up and read afresh.

use std::fs::Metadata;
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response};
use quick_cache::{sync::Cache, Equivalent, Weighter};

use crate::body::{full, Body};

/// How long the lookup's decisions (index file, `.gz` sibling) are reused before a fresh lookup.
pub const RECHECK_AFTER: Duration = Duration::from_secs(2);

/// Memory for one site's cached files, headers and paths included.
const CAPACITY_BYTES: u64 = 4 * 1024 * 1024;

/// What each entry is charged besides its contents (headers, paths, bookkeeping).
const ENTRY_OVERHEAD: u64 = 512;

/// A site's cache of small files, keyed by the URL path as requested and whether gzip is accepted.
#[derive(Clone)]
pub struct FileCache {
    entries: Arc<Cache<Key, Arc<CachedFile>, ByteWeight>>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// A file as it was read: its contents and the complete `200` headers.
#[derive(Debug)]
pub struct CachedFile {
    /// The file as requested (symlinks not followed), `stat`ed on every hit.
    pub path: PathBuf,
    pub identity: Identity,
    pub headers: HeaderMap,
    pub contents: Bytes,
    pub read_at: Instant,
}

/// What changes when a file is replaced or written: compared on every hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Identity {
    pub fn of(meta: &Metadata) -> Self {
        Identity {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Key {
    url_path: Box<str>,
    gzip: bool,
}

/// A [`Key`] borrowed from the request, so a lookup allocates nothing. Hashes like `Key`: the
/// fields have the same order and `&str` hashes as `Box<str>` does.
#[derive(Hash)]
struct KeyRef<'a> {
    url_path: &'a str,
    gzip: bool,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self.url_path == *key.url_path && self.gzip == key.gzip
    }
}

#[derive(Clone)]
struct ByteWeight;

impl Weighter<Key, Arc<CachedFile>> for ByteWeight {
    fn weight(&self, key: &Key, file: &Arc<CachedFile>) -> u64 {
        file.contents.len() as u64 + key.url_path.len() as u64 + ENTRY_OVERHEAD
    }
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache {
            entries: Arc::new(Cache::with_weighter(256, CAPACITY_BYTES, ByteWeight)),
        }
    }
}

impl FileCache {
    /// The `200` for `url_path` if it is cached and the file on disk is still the one that was read.
    pub fn get(&self, url_path: &str, gzip: bool) -> Option<Response<Body>> {
        let key = KeyRef { url_path, gzip };
        let file = self.entries.get(&key)?;
        let current = file.read_at.elapsed() < RECHECK_AFTER
            && std::fs::metadata(&file.path).is_ok_and(|meta| Identity::of(&meta) == file.identity);
        if !current {
            self.entries.remove(&key);
            return None;
        }
        Some(file.response())
    }

    /// Keeps `file` for later requests of `url_path`, and answers this one from it.
    pub fn insert(&self, url_path: &str, gzip: bool, file: CachedFile) -> Response<Body> {
        let file = Arc::new(file);
        let response = file.response();
        let key = Key {
            url_path: url_path.into(),
            gzip,
        };
        self.entries.insert(key, file);
        response
    }
}

impl CachedFile {
    fn response(&self) -> Response<Body> {
        let mut response = Response::new(full(self.contents.clone()));
        *response.headers_mut() = self.headers.clone();
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderValue};

    fn read(path: &std::path::Path) -> CachedFile {
        let contents = std::fs::read(path).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(contents.len()));
        CachedFile {
            path: path.to_owned(),
            identity: Identity::of(&std::fs::metadata(path).unwrap()),
            headers,
            contents: contents.into(),
            read_at: Instant::now(),
        }
    }

    async fn body(response: Response<Body>) -> Bytes {
        use http_body_util::BodyExt;
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn hits_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::default();
        assert!(cache.get("/a.txt", false).is_none());
        assert_eq!(body(cache.insert("/a.txt", false, read(&path))).await, "one");

        let hit = cache.get("/a.txt", false).expect("cached");
        assert_eq!(hit.headers()[header::CONTENT_LENGTH], "3");
        assert_eq!(body(hit).await, "one");
        assert!(cache.get("/a.txt", true).is_none(), "gzip is another entry");

        std::fs::write(&path, "three").unwrap();
        assert!(cache.get("/a.txt", false).is_none(), "a rewritten file is read again");
        assert!(cache.get("/a.txt", false).is_none(), "and the stale entry is gone");
    }

    #[tokio::test]
    async fn misses_when_the_file_is_replaced_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::default();
        cache.insert("/a.txt", false, read(&path));

        // Replaced by rename, as deploys do: another inode.
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, "one").unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        assert!(cache.get("/a.txt", false).is_none());

        cache.insert("/a.txt", false, read(&path));
        std::fs::remove_file(&path).unwrap();
        assert!(cache.get("/a.txt", false).is_none());
    }

    #[tokio::test]
    async fn decisions_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "one").unwrap();
        let cache = FileCache::default();
        let mut file = read(&path);
        file.read_at -= RECHECK_AFTER;
        cache.insert("/a.txt", false, file);
        assert!(cache.get("/a.txt", false).is_none());
    }

    #[test]
    fn bounded_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 64 * 1024]).unwrap();
        let cache = FileCache::default();
        for n in 0..1000 {
            cache.insert(&format!("/big{n}"), false, read(&path));
        }
        let held: u64 = (0..1000)
            .filter(|n| {
                cache.entries.contains_key(&KeyRef {
                    url_path: &format!("/big{n}"),
                    gzip: false,
                })
            })
            .count() as u64;
        assert!(held * 64 * 1024 <= CAPACITY_BYTES, "{held} entries held");
        assert!(held > 0);
    }
}
