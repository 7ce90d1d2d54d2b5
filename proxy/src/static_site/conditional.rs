//! The header decisions tower-http's `ServeFile` leaves to us, as pure functions: the entity tag,
//! `If-None-Match`, `If-Range`, multi-range requests and whether the client takes gzip.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{header, HeaderMap};

/// A strong entity tag from a file's size and modification time, in the spirit of nginx's
/// `"mtime-size"` (with nanoseconds, so a rewrite within the same second changes it too). Strong, so
/// that clients may use it in `If-Range` to resume downloads.
pub fn etag(size: u64, modified: Option<SystemTime>) -> String {
    let since_epoch = modified
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    format!(
        "\"{:x}.{:x}-{:x}\"",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
        size
    )
}

/// Whether `If-None-Match` matches `etag` (weak comparison, `*` matches any): the client's copy is
/// current. `None` when the header is absent, so `If-Modified-Since` decides instead.
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> Option<bool> {
    let mut present = false;
    let mut matched = false;
    for value in headers.get_all(header::IF_NONE_MATCH) {
        present = true;
        let Ok(value) = value.to_str() else { continue };
        matched |= value
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || opaque(tag) == opaque(etag));
    }
    present.then_some(matched)
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// Whether a `Range` may be honoured under `If-Range`: the validator must be our strong entity tag or
/// exactly the `Last-Modified` date. Otherwise the client gets the whole, current file.
pub fn if_range_allows(if_range: &str, etag: &str, last_modified: &str) -> bool {
    let if_range = if_range.trim();
    if if_range.starts_with("W/") {
        return false;
    }
    if if_range.starts_with('"') {
        return if_range == etag;
    }
    if_range == last_modified
}

/// Whether a `Range` header asks for more than one range. tower-http answers those with 416; ignoring
/// the header and sending the whole file is what RFC 9110 allows and what clients cope with.
pub fn is_multi_range(range: &str) -> bool {
    range.contains(',')
}

/// Whether the client accepts `gzip` (`Accept-Encoding` names it, or `*`, with a non-zero weight).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let weight_ok = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .next()
                .is_none_or(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(weight_ok);
            } else if coding == "*" {
                any = Some(weight_ok);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_static(value));
        map
    }

    #[test]
    fn etag_changes_with_size_and_time() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(etag(10, Some(t)), "\"6553f100.5-a\"");
        assert_ne!(etag(10, Some(t)), etag(11, Some(t)));
        assert_ne!(etag(10, Some(t)), etag(10, Some(t + Duration::from_nanos(1))));
        assert_eq!(etag(0, None), "\"0.0-0\"");
    }

    #[test]
    fn if_none_match_forms() {
        let tag = "\"1.0-a\"";
        assert_eq!(if_none_match(&HeaderMap::new(), tag), None);
        assert_eq!(
            if_none_match(&headers(header::IF_NONE_MATCH, "\"1.0-a\""), tag),
            Some(true)
        );
        assert_eq!(
            if_none_match(&headers(header::IF_NONE_MATCH, "W/\"1.0-a\""), tag),
            Some(true)
        );
        assert_eq!(
            if_none_match(&headers(header::IF_NONE_MATCH, "\"x\", \"1.0-a\""), tag),
            Some(true)
        );
        assert_eq!(if_none_match(&headers(header::IF_NONE_MATCH, "*"), tag), Some(true));
        assert_eq!(
            if_none_match(&headers(header::IF_NONE_MATCH, "\"1.0-b\""), tag),
            Some(false)
        );
        assert_eq!(
            if_none_match(&headers(header::IF_NONE_MATCH, "1.0-a"), tag),
            Some(false)
        );
    }

    #[test]
    fn if_range_needs_a_strong_exact_validator() {
        let tag = "\"1.0-a\"";
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(if_range_allows("\"1.0-a\"", tag, date));
        assert!(!if_range_allows("W/\"1.0-a\"", tag, date));
        assert!(!if_range_allows("\"1.0-b\"", tag, date));
        assert!(if_range_allows(date, tag, date));
        assert!(!if_range_allows("Sun, 06 Nov 1994 08:49:38 GMT", tag, date));
        assert!(!if_range_allows("garbage", tag, date));
    }

    #[test]
    fn multi_range() {
        assert!(!is_multi_range("bytes=0-9"));
        assert!(is_multi_range("bytes=0-9, 20-29"));
    }

    #[test]
    fn gzip_acceptance() {
        let accepts = |v: &'static str| accepts_gzip(&headers(header::ACCEPT_ENCODING, v));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("x-gzip"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip;q=0.0, br"));
        assert!(!accepts("*;q=0"));
        assert!(!accepts("gzip;q=0, *"), "an explicit refusal wins over *");
        assert!(!accepts("identity, br"));
        assert!(!accepts("gzipx"));
        assert!(!accepts("gzip;q=abc"));
    }
}
