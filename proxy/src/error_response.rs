//! Error responses as the browser sees them: pages from `HOME/html` for static and HTTP modules,
//! a JSON body for socket modules (their callers are scripts) unless the client asks for HTML.

use std::path::Path;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{full, Body};

/// Served when `HOME/html/404.html` or `500.html` is missing, so an error never becomes a second error.
const FALLBACK_PAGE: &str = "<!doctype html><title>modproxy</title><h1>{status}</h1>";

/// The error pages, read once from `HOME/html` at start-up (they are small and asked for often).
#[derive(Debug, Clone)]
pub struct ErrorPages {
    not_found: Bytes,
    server_error: Bytes,
}

impl ErrorPages {
    /// Reads `404.html` and `500.html` from `html_dir`, logging a warning for each that is missing.
    pub fn load(html_dir: &Path) -> ErrorPages {
        let read = |name: &str, status: &str| match std::fs::read(html_dir.join(name)) {
            Ok(page) => Bytes::from(page),
            Err(error) => {
                tracing::warn!(page = %html_dir.join(name).display(), %error, "error page missing; using a plain one");
                Bytes::from(FALLBACK_PAGE.replace("{status}", status))
            }
        };
        ErrorPages {
            not_found: read("404.html", "404 Not Found"),
            server_error: read("500.html", "Server Error"),
        }
    }

    /// An HTML error response: `404.html` for 404, `500.html` for every other status.
    pub fn page(&self, status: StatusCode) -> Response<Body> {
        let page = if status == StatusCode::NOT_FOUND {
            &self.not_found
        } else {
            &self.server_error
        };
        let mut response = Response::new(full(page.clone()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// The error response for a socket module: JSON unless the request's `Accept` named `text/html`
    /// (see [`accepts_html`]).
    pub fn for_script(&self, wants_html: bool, status: StatusCode, message: &str) -> Response<Body> {
        if wants_html {
            self.page(status)
        } else {
            json_error(status, message)
        }
    }
}

/// `{"error": {"status": N, "message": "…"}}` with the given status.
pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "message": message } });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Whether the `Accept` header names `text/html`.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            item.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_parsing() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, TEXT/HTML;q=0.9"),
        );
        assert!(accepts_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/htmlx, */*"));
        assert!(!accepts_html(&headers));
    }

    #[test]
    fn missing_pages_fall_back() {
        let pages = ErrorPages::load(Path::new("/nonexistent"));
        assert_eq!(pages.page(StatusCode::NOT_FOUND).status(), StatusCode::NOT_FOUND);
    }
}
