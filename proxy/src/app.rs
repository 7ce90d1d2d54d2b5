//! [`App`]: everything a request needs, built once from the config, and the routing of each request to
//! the role that answers it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::balancer::{Clock, SystemClock};
use crate::body::{full, Body};
use crate::config::{Config, Module, INNER_MODULE};
use crate::error_response::{accepts_html, ErrorPages};
use crate::http_forward::HttpForward;
use crate::metrics::{self, Metrics, ModuleMetrics, NodeState};
use crate::module_policy::{ModulePolicy, Refusal};
use crate::request_context::RequestContext;
use crate::routing::{route, Route};
use crate::socket_forward::SocketGateway;
use crate::static_site::StaticSite;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtime side of one configured module.
// Built once per module, never moved per request: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Role {
    /// A `module_html` sub-site.
    Html(StaticSite),
    /// A `module_http` reverse proxy.
    Http(HttpForward),
    /// A `module_socket` gateway.
    Socket(SocketGateway),
}

/// A module as mounted in the running app: what answers, its traffic policy, and its metrics.
#[derive(Debug)]
pub struct Mounted {
    /// What answers the module's requests.
    pub role: Role,
    /// Rate limit, concurrency cap and added headers.
    pub policy: ModulePolicy,
    /// Its request counters and latency histogram.
    pub stats: ModuleMetrics,
}

/// The proxy's state for one configuration. A reload builds a new `App`; requests in flight finish on
/// the one they started with.
#[derive(Debug)]
pub struct App {
    config: Config,
    pages: ErrorPages,
    metrics: Arc<Metrics>,
    root: StaticSite,
    root_stats: ModuleMetrics,
    inner: StaticSite,
    inner_stats: ModuleMetrics,
    modules: HashMap<String, Mounted>,
}

impl App {
    /// Builds the runtime for `config`; `home` holds the built-in `html/` directory.
    pub fn new(config: Config, home: &Path, metrics: Arc<Metrics>) -> App {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let server = &config.server;
        let site = |dir: PathBuf| StaticSite::new(dir, &server.index, server.chunked_size);
        let html_dir = home.join("html");
        let modules = config
            .modules
            .iter()
            .map(|(name, module)| {
                let role = match module {
                    Module::Html { path } => Role::Html(site(path.clone())),
                    Module::Http(upstream) => Role::Http(HttpForward::new(name, upstream.clone(), clock.clone())),
                    Module::Socket(upstream) => Role::Socket(SocketGateway::new(name, upstream.clone(), clock.clone())),
                };
                let policy = config.policies.get(name).map(ModulePolicy::new).unwrap_or_default();
                (
                    name.clone(),
                    Mounted {
                        role,
                        policy,
                        stats: metrics.module(name),
                    },
                )
            })
            .collect();
        App {
            pages: ErrorPages::load(&html_dir),
            root: site(server.root_path.clone()),
            root_stats: metrics.module("-"),
            inner: site(html_dir),
            inner_stats: metrics.module(INNER_MODULE),
            modules,
            metrics,
            config,
        }
    }

    /// The configuration this app runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The module configured as `name`, for callers that route by name rather than by URL.
    pub fn mounted(&self, name: &str) -> Option<&Mounted> {
        self.modules.get(name)
    }

    /// Answers one request. Returns, with the response, the metrics of the module that answered (whose
    /// name the access log uses).
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> (Response<Body>, &ModuleMetrics) {
        let uri = request.uri().clone();
        let max_body = self.config.server.max_body;
        let pages = &self.pages;
        // Each arm is boxed so the future's type does not carry the borrowed route across the await
        // (rustc cannot prove such futures `Send` for every lifetime).
        let (respond, stats): (BoxFuture<'_, Response<Body>>, _) = match route(&self.modules, uri.path()) {
            Route::Module {
                module: mounted,
                prefix,
                rest,
                ..
            } => {
                let respond: BoxFuture<'_, _> = Box::pin(async move {
                    let _admission = match mounted.policy.admit(peer.ip()).await {
                        Ok(admission) => admission,
                        Err(refusal) => return self.refuse(&mounted.role, &request, &mounted.stats.name, refusal),
                    };
                    let mut response = match &mounted.role {
                        Role::Socket(gateway) => gateway.handle(request, max_body, pages).await,
                        Role::Http(forward) => forward.handle(request, peer, max_body, pages).await,
                        Role::Html(site) => site.serve(request, prefix, rest, pages).await,
                    };
                    mounted.policy.decorate(&mut response);
                    response
                });
                (respond, &mounted.stats)
            }
            Route::Inner { rest: "/metrics", .. } => {
                (Box::pin(std::future::ready(self.metrics_page(peer))), &self.inner_stats)
            }
            Route::Inner { prefix, rest } => (
                Box::pin(self.inner.serve(request, prefix, rest, pages)),
                &self.inner_stats,
            ),
            Route::Root => (
                Box::pin(self.root.serve(request, "", uri.path(), pages)),
                &self.root_stats,
            ),
        };
        (respond.await, stats)
    }

    /// The response to a request the module's policy turned away: 429 with `Retry-After`, or 503.
    fn refuse(&self, role: &Role, request: &Request<Incoming>, module: &str, refusal: Refusal) -> Response<Body> {
        let (status, retry_after) = match refusal {
            Refusal::RateLimited(seconds) => (StatusCode::TOO_MANY_REQUESTS, seconds),
            Refusal::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, 1),
        };
        tracing::warn!(module, client = ?request.extensions().get::<RequestContext>().map(|c| c.peer), %refusal, "request refused by policy");
        let mut response = match role {
            Role::Socket(_) => self
                .pages
                .for_script(accepts_html(request.headers()), status, &refusal.to_string()),
            Role::Http(_) | Role::Html(_) => self.pages.page(status),
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    }

    /// The Prometheus text page, for loopback and `metrics_allow` clients only.
    fn metrics_page(&self, peer: SocketAddr) -> Response<Body> {
        if !metrics::allowed(peer.ip(), &self.config.server.metrics_allow) {
            tracing::warn!(%peer, "metrics refused: not loopback and not in [server] metrics_allow");
            return self.pages.page(StatusCode::FORBIDDEN);
        }
        let mut response = Response::new(full(self.metrics.render(&self.node_states())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    /// Every backend node's state, for the metrics page.
    pub fn node_states(&self) -> Vec<NodeState> {
        let mut states = Vec::new();
        for (name, mounted) in &self.modules {
            let (balancer, pooled): (_, &dyn Fn(usize) -> Option<usize>) = match &mounted.role {
                Role::Socket(gateway) => (gateway.balancer(), &|i| Some(gateway.open_connections(i))),
                Role::Http(forward) => (forward.balancer(), &|_| None),
                Role::Html(_) => continue,
            };
            for (index, node) in balancer.nodes().iter().enumerate() {
                states.push(NodeState {
                    module: name.clone(),
                    node: node.name().to_string(),
                    up: !balancer.is_masked(index),
                    pooled: pooled(index),
                });
            }
        }
        states
    }
}
