//! Which role answers a request: a pure function of the configured modules and the URL path.

use std::collections::HashMap;

use crate::config::INNER_MODULE;

/// Where a request goes. `M` is whatever the caller keeps per module (its config, or its runtime).
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'m, 'p, M> {
    /// A configured module.
    Module {
        /// Its name (the first path segment).
        name: &'m str,
        /// What the caller keeps for it.
        module: &'m M,
        /// The part of the path that names the module as requested, e.g. `/store` or `//store`.
        prefix: &'p str,
        /// The path below the module, e.g. `/a/b.html` (empty when the request stopped at the module).
        rest: &'p str,
    },
    /// The built-in pages in `HOME/html`; `prefix` and `rest` as for modules.
    Inner {
        /// See [`Route::Module::prefix`].
        prefix: &'p str,
        /// See [`Route::Module::rest`].
        rest: &'p str,
    },
    /// The root site; the whole path is the file path.
    Root,
}

/// The module segment: the first non-empty segment of `path`, and the byte offset where it ends.
///
/// ```text
/// "/s3/add" -> ("s3", 3)     "//s3/" -> ("s3", 4)     "/" -> None
/// ```
pub fn module_segment(path: &str) -> Option<(&str, usize)> {
    let start = path.len() - path.trim_start_matches('/').len();
    let rest = &path[start..];
    let len = rest.find('/').unwrap_or(rest.len());
    (len > 0).then(|| (&rest[..len], start + len))
}

/// Routes `path` (the URL path without the query) through the configured `modules`.
pub fn route<'m, 'p, M>(modules: &'m HashMap<String, M>, path: &'p str) -> Route<'m, 'p, M> {
    let Some((segment, end)) = module_segment(path) else {
        return Route::Root;
    };
    let (prefix, rest) = path.split_at(end);
    if segment == INNER_MODULE {
        return Route::Inner { prefix, rest };
    }
    match modules.get_key_value(segment) {
        Some((name, module)) => Route::Module {
            name,
            module,
            prefix,
            rest,
        },
        None => Route::Root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Module};
    use std::path::Path;

    fn modules() -> HashMap<String, Module> {
        Config::parse(
            r#"[module]
module_html = [ { module = "store", path = "/opt/vue" } ]
module_http = [ { module = "s2", proxy_pass = "http://127.0.0.1:8081" } ]
module_socket = [ { module = "s3", forward_pass = "127.0.0.1:21231" } ]"#,
            Path::new("t.toml"),
            Path::new("/"),
        )
        .unwrap()
        .modules
    }

    #[test]
    fn module_segment_tolerates_leading_slashes() {
        assert_eq!(module_segment("/s3/add"), Some(("s3", 3)));
        assert_eq!(module_segment("//s3/"), Some(("s3", 4)));
        assert_eq!(module_segment("///s3"), Some(("s3", 5)));
        assert_eq!(module_segment("/"), None);
        assert_eq!(module_segment(""), None);
        assert_eq!(module_segment("////"), None);
    }

    fn kind<'a>(route: Route<'a, 'a, Module>) -> (&'static str, &'a str, &'a str) {
        match route {
            Route::Module {
                module: Module::Socket(_),
                name,
                ..
            } => ("socket", name, ""),
            Route::Module {
                module: Module::Http(_),
                name,
                ..
            } => ("http", name, ""),
            Route::Module {
                module: Module::Html { .. },
                prefix,
                rest,
                ..
            } => ("html", prefix, rest),
            Route::Inner { prefix, rest } => ("inner", prefix, rest),
            Route::Root => ("root", "", ""),
        }
    }

    #[test]
    fn routes_by_first_segment() {
        let m = modules();
        assert_eq!(kind(route(&m, "/s3")), ("socket", "s3", ""));
        assert_eq!(kind(route(&m, "//s3/anything/else")), ("socket", "s3", ""));
        assert_eq!(kind(route(&m, "/s2/adduser")), ("http", "s2", ""));
        assert_eq!(kind(route(&m, "/store/a/b.html")), ("html", "/store", "/a/b.html"));
        assert_eq!(kind(route(&m, "//store")), ("html", "//store", ""));
        assert_eq!(
            kind(route(&m, "/module_proxy_inner_mod/404.html")),
            ("inner", "/module_proxy_inner_mod", "/404.html")
        );
        assert_eq!(kind(route(&m, "/")), ("root", "", ""));
        assert_eq!(kind(route(&m, "/index.html")), ("root", "", ""));
        assert_eq!(kind(route(&m, "/s3x/")), ("root", "", ""));
        assert_eq!(
            kind(route(&m, "/S3/")),
            ("root", "", ""),
            "module names are case-sensitive"
        );
    }

    #[test]
    fn hostile_paths_never_panic() {
        let m = modules();
        for path in [
            "/%2e%2e/",
            "/\0/",
            "/s3\\..\\x",
            "/..",
            "/\u{feff}s3",
            "/s3%2Fx",
            "//../s3",
        ] {
            let _ = route(&m, path);
        }
        assert_eq!(
            kind(route(&m, "/s3%2Fx")),
            ("root", "", ""),
            "an encoded slash is not a segment boundary"
        );
    }
}
