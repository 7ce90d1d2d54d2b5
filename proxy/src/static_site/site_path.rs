//! A request path turned into file names below a site's root: the security-relevant step of static
//! serving, pure so that hostile inputs are tested on their own.
//!
//! The path is split on `/` *before* percent-decoding, so an encoded slash (`%2F`) can never create a
//! segment boundary, and each decoded segment must be one plain file name. Dot segments resolve as
//! `url_path` resolves them for routing (`..` never climbs above the root). Symlinks are the
//! filesystem's business: see `resolve.rs`.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

use crate::url_path::{self, DotError};

/// Why a request path was refused. Every case is answered with 404: the site has no such file, and the
/// client learns nothing about the filesystem around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A segment decodes to bytes that are not UTF-8.
    #[error("a path segment is not UTF-8 after percent-decoding")]
    NotUtf8,
    /// `..` would leave the site's directory.
    #[error("'..' climbs above the site's directory")]
    EscapesRoot,
    /// `%2F` inside a segment.
    #[error("an encoded '/' inside a path segment")]
    EncodedSlash,
    /// A backslash, raw or encoded (a path separator on Windows, never a file name here).
    #[error("a backslash in the path")]
    Backslash,
    /// A NUL byte (`%00`): it would truncate the name at the operating system.
    #[error("a NUL byte in the path")]
    Nul,
    /// A segment the OS would read as more than one plain name (a drive prefix, a root).
    #[error("a path segment that is not a plain file name")]
    NotAName,
}

/// A request path as file names below the site root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePath {
    /// Decoded file names, outermost first; empty for the root itself.
    pub segments: Vec<String>,
    /// The URL path ends with `/` (or is empty of names after a `/`): it asks for a directory.
    pub trailing_slash: bool,
}

impl SitePath {
    /// Parses `raw`, the still percent-encoded URL path below the site (`/a/b.html`, `/`, or empty
    /// when a `module_html` was requested without anything after its name).
    pub fn parse(raw: &str) -> Result<SitePath, PathError> {
        for encoded in raw.split('/') {
            let decoded = decode(encoded)?;
            if decoded.contains('\0') {
                return Err(PathError::Nul);
            }
            if decoded.contains('\\') {
                return Err(PathError::Backslash);
            }
            if decoded.contains('/') {
                return Err(PathError::EncodedSlash);
            }
        }
        // Dot segments resolve as for routing: one implementation, in `url_path`.
        let rooted: Cow<str> = if raw.is_empty() || raw.starts_with('/') {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(format!("/{raw}"))
        };
        let normal = url_path::normalise(&rooted).map_err(|error| match error {
            DotError::AboveRoot => PathError::EscapesRoot,
            DotError::HiddenDots => PathError::EncodedSlash,
        })?;
        let mut segments: Vec<String> = Vec::new();
        for encoded in normal.split('/') {
            let name = decode(encoded)?;
            if name.is_empty() {
                continue;
            }
            let mut components = Path::new(&*name).components();
            match (components.next(), components.next()) {
                (Some(Component::Normal(only)), None) if only == &*name => segments.push(name.into_owned()),
                _ => return Err(PathError::NotAName),
            }
        }
        Ok(SitePath {
            segments,
            trailing_slash: normal.ends_with('/'),
        })
    }

    /// Whether the path names a dot-file or passes through a dot-directory (`.env`, `.git/config`):
    /// what a site keeps to itself. `.well-known` at the top is public by definition (RFC 8615).
    pub fn is_hidden(&self) -> bool {
        self.segments
            .iter()
            .enumerate()
            .any(|(i, name)| name.starts_with('.') && !(i == 0 && name == ".well-known"))
    }

    /// The path relative to the site root (empty for the root).
    pub fn relative(&self) -> PathBuf {
        self.segments.iter().collect()
    }
}

/// One segment, percent-decoded.
fn decode(encoded: &str) -> Result<Cow<'_, str>, PathError> {
    percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> (Vec<String>, bool) {
        let path = SitePath::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        (path.segments, path.trailing_slash)
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_paths() {
        assert_eq!(ok("/"), (names(&[]), true));
        assert_eq!(ok(""), (names(&[]), false));
        assert_eq!(ok("/a/b.html"), (names(&["a", "b.html"]), false));
        assert_eq!(ok("/a/"), (names(&["a"]), true));
        assert_eq!(ok("//a///b"), (names(&["a", "b"]), false));
        assert_eq!(ok("/hello%20world.txt"), (names(&["hello world.txt"]), false));
        assert_eq!(ok("/caf%C3%A9"), (names(&["café"]), false));
        assert_eq!(ok("/.well-known/x"), (names(&[".well-known", "x"]), false));
        assert_eq!(ok("/a:b"), (names(&["a:b"]), false), "a colon is a plain name on Unix");
    }

    #[test]
    fn dot_segments_stay_inside() {
        assert_eq!(ok("/a/./b"), (names(&["a", "b"]), false));
        assert_eq!(ok("/a/../b"), (names(&["b"]), false));
        assert_eq!(ok("/a/%2e%2E/b"), (names(&["b"]), false));
        assert_eq!(ok("/a/.."), (names(&[]), true), "as a URL resolves it: a directory");
        assert_eq!(ok("/..."), (names(&["..."]), false), "three dots is a file name");
    }

    #[test]
    fn dot_files_and_directories_are_hidden() {
        for raw in [
            "/.env",
            "/.git/config",
            "/a/.htpasswd",
            "/%2Egit/",
            "/a/.b/c",
            "/.well-known/.x",
            "/a/.well-known/x",
        ] {
            assert!(SitePath::parse(raw).unwrap().is_hidden(), "{raw}");
        }
        for raw in [
            "/",
            "",
            "/a/b.html",
            "/.well-known/acme-challenge/t",
            "/a/..",
            "/...x/..",
            "/a.b/c.d",
        ] {
            assert!(!SitePath::parse(raw).unwrap().is_hidden(), "{raw}");
        }
    }

    #[test]
    fn hostile_paths_are_refused() {
        use PathError::*;
        let cases: &[(&str, PathError)] = &[
            ("/..", EscapesRoot),
            ("/../secret", EscapesRoot),
            ("/a/../../secret", EscapesRoot),
            ("/%2e%2e/secret", EscapesRoot),
            ("/.%2E/secret", EscapesRoot),
            ("/./../secret", EscapesRoot),
            ("..", EscapesRoot),
            ("/%2e%2e%2fsecret", EncodedSlash),
            ("/a%2F..%2F..%2Fsecret", EncodedSlash),
            ("/%2Fetc%2Fpasswd", EncodedSlash),
            ("/%2F", EncodedSlash),
            ("/..%5Csecret", Backslash),
            ("/..\\secret", Backslash),
            ("/a%5c..%5c..%5csecret", Backslash),
            ("/index.html%00.txt", Nul),
            ("/%00", Nul),
            ("/\0", Nul),
            ("/%c0%ae%c0%ae/secret", NotUtf8),
            ("/%ff", NotUtf8),
        ];
        for (raw, why) in cases {
            assert_eq!(SitePath::parse(raw).as_ref(), Err(why), "{raw:?}");
        }
    }
}
