//! Static sites: the root site, `module_html` sub-sites and the built-in pages.
//!
//! First cut: tower-http's `ServeDir` behind our routing and error pages. (Hardened by the static-sites
//! issue: HEAD, redirects, Range, precompressed files, hostile paths.)

use std::future::Future;
use std::path::PathBuf;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower_http::services::ServeDir;

use crate::body::Body;
use crate::error_response::ErrorPages;

/// One directory served over HTTP.
#[derive(Debug, Clone)]
pub struct StaticSite {
    dir: PathBuf,
}

impl StaticSite {
    /// A site rooted at `dir`, trying `index` names for directories.
    pub fn new(dir: PathBuf, _index: &[String], _chunked_size: u64) -> Self {
        StaticSite { dir }
    }

    /// Serves `rest` (the path inside the site); `prefix` is the URL part before it.
    ///
    /// Returns a `'static` future: everything borrowed is used before the first await, which keeps the
    /// future provably `Send` (rustc cannot prove that for futures holding borrowed `&str`s here).
    pub fn serve<B>(
        &self,
        request: Request<B>,
        _prefix: &str,
        rest: &str,
        pages: &ErrorPages,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let pages = pages.clone();
        let method = request.method().clone();
        let uri = if rest.is_empty() { "/" } else { rest };
        let inner = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(http_body_util::Empty::<bytes::Bytes>::new());
        let dir = self.dir.clone();
        async move {
            if method != Method::GET && method != Method::HEAD {
                return pages.page(StatusCode::METHOD_NOT_ALLOWED);
            }
            let Ok(inner) = inner else {
                return pages.page(StatusCode::BAD_REQUEST);
            };
            let response = match ServeDir::new(dir).try_call(inner).await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "static file read failed");
                    return pages.page(StatusCode::INTERNAL_SERVER_ERROR);
                }
            };
            match response.status() {
                StatusCode::NOT_FOUND => pages.page(StatusCode::NOT_FOUND),
                status if status.is_server_error() => pages.page(status),
                _ => response.map(|body| body.map_err(Into::into).boxed_unsync()),
            }
        }
    }
}
