//! Static sites: the root site, `module_html` sub-sites and the built-in pages.
//!
//! Ours: turning the URL into a file inside the site ([`site_path`], [`resolve`]), index files,
//! directory redirects, the precompressed sibling, entity tags ([`conditional`]) and error pages.
//! tower-http's `ServeFile` does the mechanics: MIME type, `Last-Modified`, `If-Modified-Since`,
//! single ranges, `HEAD`, and streaming the file in bounded chunks. A plain GET of a small file skips it:
//! it is answered from the one blocking call that found and read the file, and then from [`file_cache`]
//! while the file stays the same; a plain GET of a larger file is opened in that call and sent by
//! [`file_body`]: with `sendfile` where the connection can ([`sendfile`]: plain HTTP/1.1), else in large
//! reads.

pub mod conditional;
pub mod file_body;
pub mod file_cache;
pub mod resolve;
pub mod sendfile;
pub mod site_path;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{self, Either};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower_http::services::ServeFile;

use crate::body::{empty, Body};
use crate::error_response::ErrorPages;
use crate::log_text::LogText;
use file_cache::{CachedFile, FileCache, Identity};
use resolve::{Located, Lookup, Resolved};
use site_path::SitePath;

/// Size of each read from a file for what tower-http sends (ranges, conditional requests).
const READ_CHUNK: usize = 64 * 1024;

/// Files up to this size are read whole in the same blocking call that finds them: one trip to the
/// blocking pool instead of tower-http's open, stat and reads. Small enough that many at once are cheap.
const READ_WHOLE: u64 = 64 * 1024;

/// One directory served over HTTP.
#[derive(Debug, Clone)]
pub struct StaticSite {
    dir: PathBuf,
    index: Arc<[String]>,
    read_whole_up_to: u64,
    cache: FileCache,
    /// Serve dot-files and dot-directories (`[server] dotfiles`).
    dotfiles: bool,
}

/// The request headers a file response depends on, taken before the first await.
struct Conditions {
    method: Method,
    headers: HeaderMap,
    /// The URL path as requested (prefix and rest), for redirects.
    url_path: String,
    query: Option<String>,
    /// The path inside the site as requested: what a small file is cached under.
    rest: String,
    /// The client accepts gzip.
    gzip: bool,
    /// The connection sends large files with `sendfile` (see [`sendfile`]).
    slot: Option<sendfile::FileSlot>,
    /// Else, it reads them [`file_body::LARGE_CHUNK`] at a time.
    large_reads: bool,
}

impl StaticSite {
    /// A site rooted at `dir`, trying `index` names in order for a directory.
    ///
    /// A plain GET of a file up to `chunked_size` (capped at 64 KiB) is read in one go; anything
    /// larger is streamed ([`file_body::CHUNK`] at a time for a whole file, 64 KiB for a range) and
    /// never held whole in memory. `Content-Length` is always
    /// sent. Dot-files and dot-directories (but `.well-known/`) are missing unless `dotfiles`.
    pub fn new(dir: PathBuf, index: &[String], chunked_size: u64, dotfiles: bool) -> Self {
        StaticSite {
            dir,
            index: index.into(),
            read_whole_up_to: chunked_size.min(READ_WHOLE),
            cache: FileCache::default(),
            dotfiles,
        }
    }

    /// Serves `rest` (the still-encoded path inside the site); `prefix` is the URL part before it.
    ///
    /// Returns a `'static` future: everything borrowed is used before the first await, which keeps the
    /// future provably `Send` (rustc cannot prove that for futures holding borrowed `&str`s here).
    pub fn serve<B>(
        &self,
        request: Request<B>,
        prefix: &str,
        rest: &str,
        pages: &ErrorPages,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let gzip = conditional::accepts_gzip(request.headers());
        let plain_get = request.method() == Method::GET
            && [header::RANGE, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE]
                .iter()
                .all(|name| !request.headers().contains_key(name));
        if plain_get && !request.headers().contains_key(header::IF_NONE_MATCH) {
            if let Some(response) = self.cache.get(rest, gzip) {
                return Either::Left(future::ready(response));
            }
        }
        let pages = pages.clone();
        let site = self.clone();
        let parsed = SitePath::parse(rest);
        let conditions = Conditions {
            method: request.method().clone(),
            headers: request.headers().clone(),
            url_path: format!("{prefix}{rest}"),
            query: request.uri().query().map(str::to_owned),
            rest: rest.to_owned(),
            gzip,
            slot: request.extensions().get::<sendfile::FileSlot>().cloned(),
            large_reads: request.extensions().get::<file_body::LargeReads>().is_some(),
        };
        Either::Right(async move {
            if conditions.method != Method::GET && conditions.method != Method::HEAD {
                let mut response = pages.page(StatusCode::METHOD_NOT_ALLOWED);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
            let path = match parsed {
                Ok(path) => path,
                Err(error) => {
                    tracing::debug!(path = conditions.url_path, %error, "refused path");
                    return pages.page(StatusCode::NOT_FOUND);
                }
            };
            if !site.dotfiles && path.is_hidden() {
                // Logged: someone looking for `.env` or `.git/` is worth knowing about.
                tracing::info!(path = %LogText::word(&conditions.url_path), "dot-file refused: [server] dotfiles = false");
                return pages.page(StatusCode::NOT_FOUND);
            }
            let lookup = Lookup {
                gzip,
                // Only a plain GET is answered from memory; the rest goes through tower-http.
                read_up_to: if plain_get { site.read_whole_up_to } else { 0 },
                open_larger: plain_get,
            };
            match resolve::resolve(&site.dir, &path, &site.index, lookup).await {
                Resolved::File(located) => send_file(*located, &conditions, &site.cache, &pages).await,
                Resolved::Directory => redirect_to_directory(&conditions),
                Resolved::Missing(reason) => {
                    tracing::debug!(path = conditions.url_path, reason, "not found");
                    pages.page(StatusCode::NOT_FOUND)
                }
            }
        })
    }
}

/// Sends the file (or its gzip sibling), answering validators and ranges.
async fn send_file(located: Located, conditions: &Conditions, cache: &FileCache, pages: &ErrorPages) -> Response<Body> {
    let Located {
        served,
        gzip,
        vary,
        contents,
        opened,
    } = located;
    // The type of what was asked for, whichever representation is sent.
    let mime = mime_guess::from_path(if gzip {
        served.requested.with_extension("")
    } else {
        served.requested.clone()
    })
    .first_or_octet_stream();
    let modified = served.meta.modified().ok();
    let etag = conditional::etag(served.meta.len(), modified);
    let last_modified = modified.map(httpdate::fmt_http_date).unwrap_or_default();

    let mut forwarded = HeaderMap::new();
    let not_modified = conditional::if_none_match(&conditions.headers, &etag);
    if not_modified == Some(true) {
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        decorate(response.headers_mut(), &etag, gzip, vary);
        if let Ok(value) = HeaderValue::from_str(&last_modified) {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
        return response;
    }
    if let Some(contents) = contents {
        // A small file read with its metadata: a plain 200 needs nothing from tower-http, and the
        // next requests for it are answered from the cache.
        let headers = whole_file_headers(&mime, &last_modified, served.meta.len(), &etag, gzip, vary);
        let file = CachedFile {
            identity: Identity::of(&served.meta),
            path: served.requested,
            headers,
            contents,
            read_at: Instant::now(),
        };
        return cache.insert(&conditions.rest, conditions.gzip, file);
    }
    if let Some(file) = opened {
        // A plain GET of a larger file: the same 200, its body sent from the file.
        let len = served.meta.len();
        let body = match file_body::FileBody::sent_by(file, len, conditions.slot.clone(), conditions.large_reads) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(file = %served.canonical.display(), %error, "static file read failed");
                return pages.page(StatusCode::INTERNAL_SERVER_ERROR);
            }
        };
        let mut response = Response::new(body.boxed_unsync());
        *response.headers_mut() = whole_file_headers(&mime, &last_modified, len, &etag, gzip, vary);
        return response;
    }
    // If-None-Match, when present, decides alone (RFC 9110 13.2.2).
    if not_modified.is_none() {
        copy(&conditions.headers, &mut forwarded, header::IF_MODIFIED_SINCE);
    }
    copy(&conditions.headers, &mut forwarded, header::IF_UNMODIFIED_SINCE);
    if let Some(range) = conditions.headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        let if_range_ok = conditions
            .headers
            .get(header::IF_RANGE)
            .map(|v| conditional::if_range_allows(v.to_str().unwrap_or(""), &etag, &last_modified))
            .unwrap_or(true);
        if if_range_ok && !conditional::is_multi_range(range) {
            copy(&conditions.headers, &mut forwarded, header::RANGE);
        }
    }
    let mut inner = Request::new(http_body_util::Empty::<bytes::Bytes>::new());
    *inner.method_mut() = conditions.method.clone();
    *inner.headers_mut() = forwarded;

    let result = ServeFile::new_with_mime(&served.canonical, &mime)
        .with_buf_chunk_size(READ_CHUNK)
        .try_call(inner)
        .await;
    let response = match result {
        Ok(response) => response,
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(file = %served.canonical.display(), %error, "file not readable");
            return pages.page(StatusCode::FORBIDDEN);
        }
        Err(error) => {
            tracing::error!(file = %served.canonical.display(), %error, "static file read failed");
            return pages.page(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    match response.status() {
        // Gone between our look and tower-http's open.
        StatusCode::NOT_FOUND => pages.page(StatusCode::NOT_FOUND),
        status if status.is_server_error() => pages.page(status),
        status => {
            let mut response = response.map(|body| body.map_err(Into::into).boxed_unsync());
            if matches!(
                status,
                StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
            ) {
                decorate(response.headers_mut(), &etag, gzip, vary);
            }
            response
        }
    }
}

/// The headers of a `200` carrying the whole file.
fn whole_file_headers(
    mime: &mime_guess::Mime,
    last_modified: &str,
    len: u64,
    etag: &str,
    gzip: bool,
    vary: bool,
) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(8);
    if let Ok(value) = HeaderValue::from_str(mime.as_ref()) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(last_modified) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    decorate(&mut headers, etag, gzip, vary);
    headers
}

/// Adds the entity tag and what says which representation this is.
fn decorate(headers: &mut HeaderMap, etag: &str, gzip: bool, vary: bool) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if vary {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

fn copy(from: &HeaderMap, to: &mut HeaderMap, name: header::HeaderName) {
    if let Some(value) = from.get(&name) {
        to.insert(name, value.clone());
    }
}

/// `301` to the same path with a `/` added, keeping the module prefix and the query. Leading slashes
/// are collapsed so the `Location` can never read as `//host/…` (another site).
fn redirect_to_directory(conditions: &Conditions) -> Response<Body> {
    let mut location = format!("/{}/", conditions.url_path.trim_start_matches('/'));
    if let Some(query) = &conditions.query {
        location.push('?');
        location.push_str(query);
    }
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => *response.status_mut() = StatusCode::NOT_FOUND,
    }
    response
}
