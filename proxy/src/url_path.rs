//! The URL path in normal form: dot segments resolved before anything routes on it or forwards it, so
//! `/api/../admin` is `/admin` for the router and for every upstream alike, and no upstream is ever sent
//! a path that it would resolve to somewhere else.
//!
//! Rules (RFC 3986, section 5.2.4, applied to the still percent-encoded path):
//! - a segment that percent-decodes to `.` (`.`, `%2e`, `%2E`) is dropped, one that decodes to `..`
//!   (`..`, `.%2e`, `%2E%2e`, …) drops the segment before it; every other segment is kept byte for byte,
//!   empty ones included;
//! - an encoded slash (`%2F`) never creates a segment, but a segment that would hold a `..` once its
//!   `%2F` or `\` were read as separators (`..%2Fadmin`, `..%5c`) is refused: some upstreams decode
//!   them before resolving dots;
//! - a `..` with nothing left to drop would climb above the root: refused.
//!
//! Refused paths are answered 400.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Whether `path` holds a `.`, plainly or as `%2e`/`%2E`: one pass over its bytes.
fn may_hold_a_dot(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &b)| {
        b == b'.' || (b == b'%' && path.get(i + 1) == Some(&b'2') && matches!(path.get(i + 2), Some(b'e' | b'E')))
    })
}

/// Why a path has no normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DotError {
    /// `..` would climb above the root.
    #[error("'..' climbs above the root")]
    AboveRoot,
    /// A segment hides `..` behind an encoded slash or a backslash.
    #[error("a path segment hides '..' behind an encoded slash or a backslash")]
    HiddenDots,
}

/// `path` (the URL path, still percent-encoded, without the query) with its dot segments resolved.
/// Borrowed when there was nothing to resolve, which is almost always.
///
/// ```
/// use modproxy::url_path::normalise;
/// assert_eq!(normalise("/api/../admin").unwrap(), "/admin");
/// assert_eq!(normalise("/a/%2E%2e/b/.").unwrap(), "/b/");
/// assert!(normalise("/api/../../etc").is_err());
/// ```
pub fn normalise(path: &str) -> Result<Cow<'_, str>, DotError> {
    // No '.' in any spelling: nothing to resolve (the common case costs one scan).
    if !may_hold_a_dot(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    // Not origin form (`*`, or empty): nothing of this applies.
    let Some(below_root) = path.strip_prefix('/') else {
        return Ok(Cow::Borrowed(path));
    };
    let mut kept: Vec<&str> = Vec::new();
    let mut changed = false;
    let segments: Vec<&str> = below_root.split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        let kind = dots(segment)?;
        match kind {
            Dots::Name => kept.push(segment),
            Dots::One | Dots::Two => {
                changed = true;
                if kind == Dots::Two {
                    kept.pop().ok_or(DotError::AboveRoot)?;
                }
                // A dot segment at the end leaves a directory: `/a/..` is `/`, `/a/.` is `/a/`.
                if i == last {
                    kept.push("");
                }
            }
        }
    }
    if !changed {
        return Ok(Cow::Borrowed(path));
    }
    let mut normal = String::with_capacity(path.len());
    for segment in kept {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

#[derive(Debug, PartialEq, Eq)]
enum Dots {
    Name,
    One,
    Two,
}

/// What one encoded segment is.
fn dots(segment: &str) -> Result<Dots, DotError> {
    let decoded: Cow<[u8]> = percent_decode_str(segment).into();
    match &*decoded {
        b"." => Ok(Dots::One),
        b".." => Ok(Dots::Two),
        name if name.split(|&b| b == b'/' || b == b'\\').any(|part| part == b"..") => Err(DotError::HiddenDots),
        _ => Ok(Dots::Name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> String {
        normalise(path).unwrap_or_else(|e| panic!("{path:?}: {e}")).into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for path in [
            "/",
            "",
            "*",
            "/api/x",
            "//api//x/",
            "/a%2Fb",
            "/v1.2/file.tar.gz",
            "/...",
            "/.well-known/x",
            "/a..b",
        ] {
            assert!(matches!(normalise(path), Ok(Cow::Borrowed(p)) if p == path), "{path:?}");
        }
    }

    #[test]
    fn dot_segments_resolve_in_every_spelling() {
        assert_eq!(ok("/api/../admin"), "/admin");
        assert_eq!(ok("/api/./x"), "/api/x");
        assert_eq!(ok("/api/%2e%2e/admin"), "/admin");
        assert_eq!(ok("/api/%2E%2E/admin"), "/admin");
        assert_eq!(ok("/api/.%2e/admin"), "/admin");
        assert_eq!(ok("/api/%2e./admin"), "/admin");
        assert_eq!(ok("/api/%2e/x"), "/api/x");
        assert_eq!(ok("/a/b/../../c"), "/c");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/a/."), "/a/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/a//../b"), "/a/b", "an empty segment is a segment");
        assert_eq!(ok("//../api"), "/api");
        assert_eq!(
            ok("/api/x%2Fy/../z"),
            "/api/z",
            "an encoded slash is inside its segment"
        );
        assert_eq!(ok("/a/.../b/.."), "/a/.../", "three dots is a name");
    }

    #[test]
    fn hostile_paths_are_refused() {
        use DotError::*;
        for (path, why) in [
            ("/..", AboveRoot),
            ("/../admin", AboveRoot),
            ("/api/../../admin", AboveRoot),
            ("/%2e%2e/admin", AboveRoot),
            ("/.%2E", AboveRoot),
            ("/./..", AboveRoot),
            ("/api/..%2Fadmin", HiddenDots),
            ("/api/..%2fadmin", HiddenDots),
            ("/api/x%2F..%2F..%2Fadmin", HiddenDots),
            ("/api/%2e%2e%2fadmin", HiddenDots),
            ("/api/..%5cadmin", HiddenDots),
            ("/api/..\\admin", HiddenDots),
            ("/api/a\\..", HiddenDots),
        ] {
            assert_eq!(normalise(path), Err(why), "{path:?}");
        }
    }

    #[test]
    fn a_normal_form_is_its_own_normal_form_and_has_no_dot_segments() {
        let alphabet = ["/", "..", ".", "%2e", "%2E", "a", "%2f", "%", "\\"];
        let mut path = String::new();
        for i in 0..100_000u64 {
            path.clear();
            path.push('/');
            let mut n = i;
            while n > 0 {
                path.push_str(alphabet[(n % alphabet.len() as u64) as usize]);
                n /= alphabet.len() as u64;
            }
            if let Ok(normal) = normalise(&path) {
                assert!(normal.starts_with('/'), "{path:?} -> {normal:?}");
                assert_eq!(normalise(&normal).as_deref(), Ok(&*normal), "{path:?}");
                for segment in normal.split('/') {
                    assert_eq!(dots(segment), Ok(Dots::Name), "{path:?} -> {normal:?}");
                }
            }
        }
    }
}
