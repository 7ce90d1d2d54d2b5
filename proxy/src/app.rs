//! [`App`]: everything a request needs, built once from the config, and the routing of each request to
//! the role that answers it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::balancer::{Clock, SystemClock};
use crate::body::Body;
use crate::config::{Config, Module};
use crate::error_response::ErrorPages;
use crate::http_forward::HttpForward;
use crate::routing::{route, Route};
use crate::socket_gateway::SocketGateway;
use crate::static_site::StaticSite;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtime side of one configured module.
#[derive(Debug)]
pub enum Role {
    /// A `module_html` sub-site.
    Html(StaticSite),
    /// A `module_http` reverse proxy.
    Http(HttpForward),
    /// A `module_socket` gateway.
    Socket(SocketGateway),
}

/// The proxy's state for one configuration.
#[derive(Debug)]
pub struct App {
    config: Config,
    pages: ErrorPages,
    root: StaticSite,
    inner: StaticSite,
    roles: HashMap<String, Role>,
}

impl App {
    /// Builds the runtime for `config`; `home` holds the built-in `html/` directory.
    pub fn new(config: Config, home: &Path) -> App {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let server = &config.server;
        let site = |dir: PathBuf| StaticSite::new(dir, &server.index, server.chunked_size);
        let html_dir = home.join("html");
        let roles = config
            .modules
            .iter()
            .map(|(name, module)| {
                let role = match module {
                    Module::Html { path } => Role::Html(site(path.clone())),
                    Module::Http(upstream) => Role::Http(HttpForward::new(name, upstream.clone(), clock.clone())),
                    Module::Socket(upstream) => Role::Socket(SocketGateway::new(name, upstream.clone(), clock.clone())),
                };
                (name.clone(), role)
            })
            .collect();
        App {
            pages: ErrorPages::load(&html_dir),
            root: site(server.root_path.clone()),
            inner: site(html_dir),
            roles,
            config,
        }
    }

    /// The configuration this app runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The runtime of every module, by name.
    pub fn roles(&self) -> &HashMap<String, Role> {
        &self.roles
    }

    /// Answers one request. Returns the module name (for the access log) with the response.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> (Response<Body>, String) {
        let uri = request.uri().clone();
        let route = route(&self.roles, uri.path());
        let module = match &route {
            Route::Module { name, .. } => (*name).to_owned(),
            Route::Inner { .. } => crate::config::INNER_MODULE.to_owned(),
            Route::Root => "-".to_owned(),
        };
        // Each arm is boxed so the future's type does not carry the borrowed route across the await
        // (rustc cannot prove such futures `Send` for every lifetime).
        let pages = &self.pages;
        let respond: BoxFuture<'_, Response<Body>> = match route {
            Route::Module {
                module: Role::Socket(gateway),
                ..
            } => Box::pin(gateway.handle(request, self.config.server.max_body, pages)),
            Route::Module {
                module: Role::Http(forward),
                ..
            } => Box::pin(forward.handle(request, peer, self.config.server.max_body, pages)),
            Route::Module {
                module: Role::Html(site),
                prefix,
                rest,
                ..
            } => Box::pin(site.serve(request, prefix, rest, pages)),
            Route::Inner { prefix, rest } => Box::pin(self.inner.serve(request, prefix, rest, pages)),
            Route::Root => Box::pin(self.root.serve(request, "", uri.path(), pages)),
        };
        let response = respond.await;
        (response, module)
    }
}
