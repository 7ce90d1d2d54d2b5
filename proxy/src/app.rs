//! [`App`]: everything a request needs, built once from the config, and the one entry every request
//! passes, HTTP or raw frame: routed to the role that answers it, admitted by its module's policy, counted
//! in its metrics and written to the access log.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use modproxy_sdk::MethodError;

use crate::access_log::{self, AccessLine, Asked, UpstreamTime};
use crate::balancer::{Clock, SystemClock};
use crate::body::{full, Body};
use crate::body_budget::BodyBudget;
use crate::client_address;
use crate::config::{Config, Module, Upstream, INNER_MODULE};
use crate::discovery::{self, Dns, Hosts, Members};
use crate::error_response::{accepts_html, ErrorPages};
use crate::frame_request::{self, FrameRequest};
use crate::http_forward::HttpForward;
use crate::lanes::LaneLoad;
use crate::log_text::LogText;
use crate::metrics::{self, Metrics, ModuleMetrics, NodeState};
use crate::module_policy::{ModulePolicy, Refusal};
use crate::request_body::BodyLimits;
use crate::request_context::{self, RequestContext, REQUEST_ID};
use crate::routing::{route, Route};
use crate::socket_forward::{ServedBy, SocketGateway};
use crate::static_site::StaticSite;
use crate::status::{ModuleStatus, Status};
use crate::url_path;

/// How long a body waits for room in `[server] body_memory` before it is refused (503).
const BODY_MEMORY_WAIT: Duration = Duration::from_secs(2);

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
///
/// The role and the policy are shared with the app a reload replaced when their configuration did not
/// change, so that masked nodes, pooled connections, lanes, rate-limit buckets and `max_conns` slots
/// live on across the reload.
#[derive(Debug)]
pub struct Mounted {
    /// What answers the module's requests.
    pub role: Arc<Role>,
    /// Rate limit, concurrency cap and added headers.
    pub policy: Arc<ModulePolicy>,
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
    body_limits: BodyLimits,
    /// The names the modules' nodes are looked up by, when any is named in DNS.
    dns: Option<Arc<Dns>>,
}

/// The running configuration, replaced whole by a reload.
pub type LiveApp = Arc<ArcSwap<App>>;

/// A request as it arrived, whichever protocol it came by: what its answer is counted and logged with.
struct Arrival<'a> {
    started: Instant,
    peer: SocketAddr,
    id: &'a str,
}

impl Arrival<'_> {
    /// Every answer ends here: counted in the answering module's metrics and, when `asked` is given
    /// (only while the access log is on), written as an access line with what `told` says of the answer.
    fn answered<'t>(
        &self,
        stats: &ModuleMetrics,
        status: StatusCode,
        asked: Option<(Asked<'_>, Option<u64>)>,
        told: impl FnOnce() -> Told<'t>,
    ) {
        let elapsed = self.started.elapsed();
        stats.record(status, elapsed);
        if let Some((asked, bytes_in)) = asked {
            let told = told();
            AccessLine {
                peer: self.peer,
                asked,
                module: &stats.name,
                node: told.node,
                status,
                bytes: told.bytes,
                bytes_in,
                elapsed,
                upstream: told.upstream,
                id: self.id,
            }
            .write();
        }
    }
}

/// What the access line says of an answer: the node that gave it, its body's size and the node's time.
struct Told<'a> {
    node: Option<&'a str>,
    bytes: Option<u64>,
    upstream: Option<Duration>,
}

/// What the access line needs of an HTTP request, copied before the request is handed on.
struct Logged {
    method: Method,
    path: String,
    version: Version,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    bytes_in: Option<u64>,
}

impl Logged {
    fn of(request: &Request<Incoming>) -> Logged {
        let headers = request.headers();
        Logged {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            version: request.version(),
            referer: headers.get(header::REFERER).cloned(),
            user_agent: headers.get(header::USER_AGENT).cloned(),
            bytes_in: headers
                .get(header::CONTENT_LENGTH)
                .and_then(|length| length.to_str().ok()?.parse().ok()),
        }
    }

    fn asked(&self) -> (Asked<'_>, Option<u64>) {
        let asked = Asked::Http {
            method: &self.method,
            path: &self.path,
            version: self.version,
            referer: self.referer.as_ref().map(HeaderValue::as_bytes),
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
        };
        (asked, self.bytes_in)
    }
}

/// Where module `name`'s nodes come from: the source its `discover` names (etcd), or its configured
/// nodes, those named in DNS followed through `dns`. A source that cannot start leaves the module with no
/// nodes (502) and says why.
fn members_of(name: &str, upstream: &Upstream, http: bool, dns: Option<&Arc<Dns>>) -> (Members, Hosts) {
    let Some(source) = &upstream.discover else {
        return discovery::members_for(&upstream.nodes, &upstream.weights, http, dns);
    };
    let members = discovery::start(source).unwrap_or_else(|error| {
        tracing::error!(module = name, %error, "node discovery could not start; the module has no nodes");
        discovery::fixed(Vec::new())
    });
    (members, Hosts::default())
}

/// The moment a forwarder is asked, when the access log is on and will note how long its node took
/// ([`upstream_timed`]); `None` otherwise.
fn upstream_clock(noted: bool) -> Option<Instant> {
    noted.then(Instant::now)
}

/// Notes on a forwarder's `response` how long its node took since `asked` (`UpstreamTime`), when the
/// access log wants it (`asked` given) and a node answered. Not a wrapper around the forwarder's future:
/// that would move the whole (large) future once more per request.
fn upstream_timed(asked: Option<Instant>, mut response: Response<Body>) -> Response<Body> {
    if let Some(asked) = asked {
        if response.extensions().get::<ServedBy>().is_some() {
            response.extensions_mut().insert(UpstreamTime(asked.elapsed()));
        }
    }
    response
}

impl App {
    /// Builds the runtime for `config`; `home` holds the built-in `html/` directory. On a reload,
    /// `previous` is the running app: a module whose entry (or policy) is unchanged keeps its runtime.
    pub fn new(config: Config, home: &Path, metrics: Arc<Metrics>, previous: Option<&App>) -> App {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        let server = &config.server;
        let site = |dir: PathBuf| StaticSite::new(dir, &server.index, server.chunked_size, server.dotfiles);
        let html_dir = home.join("html");
        // One for the app: a name several modules use is looked up once.
        let dns = Dns::for_config(&config);
        let modules = config
            .modules
            .iter()
            .map(|(name, module)| {
                let old = previous.and_then(|app| Some((app, app.modules.get(name)?)));
                // A static site holds no state, and depends on `[server]` too: it is always built anew.
                let role = match old {
                    Some((app, mounted))
                        if !matches!(module, Module::Html { .. }) && app.config.modules.get(name) == Some(module) =>
                    {
                        Arc::clone(&mounted.role)
                    }
                    _ => Arc::new(match module {
                        Module::Html { path } => Role::Html(site(path.clone())),
                        Module::Http(upstream) => {
                            let (members, hosts) = members_of(name, upstream, true, dns.as_ref());
                            Role::Http(HttpForward::following(
                                name,
                                upstream.clone(),
                                clock.clone(),
                                members,
                                hosts,
                            ))
                        }
                        Module::Socket(upstream) => {
                            let (members, _) = members_of(name, upstream, false, dns.as_ref());
                            Role::Socket(SocketGateway::following(name, upstream.clone(), clock.clone(), members))
                        }
                    }),
                };
                let policy = match old {
                    Some((app, mounted)) if app.config.policies.get(name) == config.policies.get(name) => {
                        Arc::clone(&mounted.policy)
                    }
                    _ => Arc::new(config.policies.get(name).map(ModulePolicy::new).unwrap_or_default()),
                };
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
        let body_limits = BodyLimits {
            max_body: server.max_body,
            chunk_timeout: server.body_chunk_timeout,
            total_timeout: server.body_timeout,
            budget: Arc::new(
                BodyBudget::new(server.body_memory, BODY_MEMORY_WAIT).counted(metrics.body_budget.clone()),
            ),
        };
        App {
            body_limits,
            pages: ErrorPages::load(&html_dir),
            root: site(server.root_path.clone()),
            root_stats: metrics.module("-"),
            inner: site(html_dir),
            inner_stats: metrics.module(INNER_MODULE),
            modules,
            metrics,
            config,
            dns,
        }
    }

    /// The limits on request bodies, and the budget they share.
    pub fn body_limits(&self) -> &BodyLimits {
        &self.body_limits
    }

    /// The configuration this app runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Answers one HTTP request: gives it its id (kept from the client when sensible, and seen by
    /// upstreams too), and counts and logs the answer.
    pub async fn handle(&self, mut request: Request<Incoming>, socket_peer: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        // Who the client is, for everything below: policy, head rules, metrics access, the access log.
        let peer = client_address::client(socket_peer, request.headers(), &self.config.server.trusted_proxies);
        let over_tls = request.extensions().get::<client_address::OverTls>().is_some();
        let scheme = client_address::scheme(
            socket_peer,
            request.headers(),
            &self.config.server.trusted_proxies,
            over_tls,
        );
        // Read only by `http_forward`, which takes a missing one for plain HTTP.
        if scheme != client_address::Scheme::Http {
            request.extensions_mut().insert(scheme);
        }
        // Copied only for the access line, which is optional, and which the log level may filter out.
        let logged = access_log::enabled(&self.config).then(|| Logged::of(&request));
        let id = request_context::request_id(request.headers());
        // Made once: a clone shares its bytes.
        let id_header = request_context::header_value(&id);
        request.headers_mut().insert(REQUEST_ID, id_header.clone());
        request.extensions_mut().insert(RequestContext { peer, id: id.clone() });
        let (mut response, stats) = self.respond(request, peer, socket_peer).await;
        response.headers_mut().insert(REQUEST_ID, id_header);
        let arrival = Arrival { started, peer, id: &id };
        arrival.answered(stats, response.status(), logged.as_ref().map(Logged::asked), || Told {
            node: response.extensions().get::<ServedBy>().map(|served| &*served.0),
            bytes: access_log::body_size(&response),
            upstream: response.extensions().get::<UpstreamTime>().map(|time| time.0),
        });
        response
    }

    /// Answers one raw frame as an HTTP `POST` to the socket module it names would be answered: the
    /// module's policy, gateway, metrics and access line, with the outcome told in the socket protocol.
    /// A frame has no headers, so its id is always new.
    pub async fn handle_frame(&self, request: FrameRequest, peer: SocketAddr) -> Bytes {
        let started = Instant::now();
        let FrameRequest {
            module,
            method,
            payload,
        } = request;
        let Some(mounted) = self.modules.get(&module) else {
            return frame_request::refuse(
                peer,
                MethodError::new("module_not_found", format!("no module '{module}' is configured")),
            );
        };
        let Role::Socket(gateway) = &*mounted.role else {
            return frame_request::refuse(
                peer,
                MethodError::new(
                    "not_socket_module",
                    format!("module '{module}' is not a module_socket; raw frames reach socket modules only"),
                ),
            );
        };
        let context = RequestContext {
            peer,
            id: request_context::generate(),
        };
        let bytes_in = u64::try_from(payload.len()).ok();
        let mut upstream = None;
        let (reply, status, node) = match mounted.policy.admit(peer.ip()).await {
            // The slot, if any, is held until the gateway has answered.
            Ok(_admission) => {
                let asked = Instant::now();
                let called = gateway.call(payload, &context).await;
                upstream = Some(asked.elapsed());
                match called {
                    Ok((reply, node)) => (reply, StatusCode::OK, Some(node)),
                    Err((error, node)) => {
                        let status = error.status();
                        (frame_request::error_reply(status, error.to_string()), status, node)
                    }
                }
            }
            Err(refusal) => {
                tracing::warn!(%peer, module = %LogText::word(&module), %refusal, "raw frame refused by policy");
                let status = refusal.status();
                (frame_request::error_reply(status, refusal.to_string()), status, None)
            }
        };
        let arrival = Arrival {
            started,
            peer,
            id: &context.id,
        };
        let asked = access_log::enabled(&self.config).then(|| {
            let asked = Asked::Frame {
                module: &module,
                method: method.as_deref(),
            };
            (asked, bytes_in)
        });
        arrival.answered(&mounted.stats, status, asked, || Told {
            node: node.as_deref(),
            bytes: u64::try_from(reply.len()).ok(),
            upstream: node.as_ref().and(upstream),
        });
        reply
    }

    /// Routes an HTTP request to what answers it. Returns, with the response, the metrics of the module
    /// that answered (whose name the access log uses). `peer` is the client; an HTTP upstream's
    /// `X-Forwarded-For` chain ends with `socket_peer`, the hop this proxy saw.
    async fn respond(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        socket_peer: SocketAddr,
    ) -> (Response<Body>, &ModuleMetrics) {
        // Routed and forwarded as one path: the upstream never gets one that resolves outside its module.
        match url_path::normalise(request.uri().path()) {
            Ok(Cow::Borrowed(_)) => {}
            Ok(Cow::Owned(normal)) => *request.uri_mut() = with_path(request.uri(), &normal),
            Err(error) => {
                tracing::debug!(path = %LogText::word(request.uri().path()), %error, "path refused");
                return (self.pages.page(StatusCode::BAD_REQUEST), &self.root_stats);
            }
        }
        let uri = request.uri().clone();
        // The node's time is kept only for an access line.
        let logged = access_log::enabled(&self.config);
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
                    let policy = &mounted.policy;
                    let refuse = |refusal| {
                        let wants_html = accepts_html(request.headers());
                        self.refuse(&mounted.role, wants_html, peer, &mounted.stats.name, refusal)
                    };
                    if let Err(refusal) = policy.check_rate(peer.ip()) {
                        return refuse(refusal);
                    }
                    let mut response = match &*mounted.role {
                        // A socket request takes its `max_conns` slot once its body is in: a slow
                        // uploader holds body bytes (bounded by time and body_memory), never a slot.
                        // The module's contract, and the browser client made from it.
                        Role::Socket(gateway)
                            if request.method() == http::Method::GET
                                && (rest == "/_describe" || rest == "/_client.js") =>
                        {
                            match policy.take_slot().await {
                                Ok(_slot) if rest == "/_describe" => gateway.describe(pages).await,
                                Ok(_slot) => gateway.client_script(pages).await,
                                Err(refusal) => return refuse(refusal),
                            }
                        }
                        Role::Socket(gateway) => {
                            // The Accept header is read once, by `receive`; a refusal after it uses what that found.
                            match gateway.receive(request, &self.body_limits, pages).await {
                                Ok(received) => match policy.take_slot().await {
                                    Ok(_slot) => {
                                        let asked = upstream_clock(logged);
                                        upstream_timed(asked, gateway.answer(received, pages, logged).await)
                                    }
                                    Err(refusal) => {
                                        return self.refuse(
                                            &mounted.role,
                                            received.wants_html(),
                                            peer,
                                            &mounted.stats.name,
                                            refusal,
                                        )
                                    }
                                },
                                Err(refused) => refused,
                            }
                        }
                        Role::Http(forward) => {
                            let _slot = match policy.take_slot().await {
                                Ok(slot) => slot,
                                Err(refusal) => return refuse(refusal),
                            };
                            let asked = upstream_clock(logged);
                            let answer = forward
                                .handle(request, socket_peer, &self.body_limits, pages, logged)
                                .await;
                            upstream_timed(asked, answer)
                        }
                        Role::Html(site) => {
                            let _slot = match policy.take_slot().await {
                                Ok(slot) => slot,
                                Err(refusal) => return refuse(refusal),
                            };
                            site.serve(request, prefix, rest, pages).await
                        }
                    };
                    mounted.policy.decorate(&mut response);
                    response
                });
                (respond, &mounted.stats)
            }
            Route::Inner { rest: "/metrics", .. } => {
                (Box::pin(std::future::ready(self.metrics_page(peer))), &self.inner_stats)
            }
            Route::Inner {
                rest: "/status.json", ..
            } => (Box::pin(std::future::ready(self.status_json(peer))), &self.inner_stats),
            // The page itself holds no data, but is refused alike so that nobody is shown an empty shell.
            Route::Inner {
                prefix,
                rest: "/status" | "/status.html",
            } => {
                let respond: BoxFuture<'_, _> = match self.operator_only(peer, "status page") {
                    Some(refused) => Box::pin(std::future::ready(refused)),
                    None => Box::pin(self.inner.serve(request, prefix, "/status.html", pages)),
                };
                (respond, &self.inner_stats)
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
    fn refuse(
        &self,
        role: &Role,
        wants_html: bool,
        peer: SocketAddr,
        module: &str,
        refusal: Refusal,
    ) -> Response<Body> {
        let (status, retry_after) = match refusal {
            Refusal::RateLimited(seconds) => (refusal.status(), seconds),
            Refusal::Busy(_) => (refusal.status(), 1),
        };
        tracing::warn!(module, client = %peer, %refusal, "request refused by policy");
        let mut response = match role {
            Role::Socket(_) => self.pages.for_script(wants_html, status, &refusal.to_string()),
            Role::Http(_) | Role::Html(_) => self.pages.page(status),
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        response
    }

    /// `None` for a client that may read the operator's pages (loopback and `metrics_allow`), else the
    /// 403 page, logged as refusing `what`.
    fn operator_only(&self, peer: SocketAddr, what: &str) -> Option<Response<Body>> {
        if metrics::allowed(peer.ip(), &self.config.server.metrics_allow) {
            return None;
        }
        tracing::warn!(%peer, "{what} refused: not loopback and not in [server] metrics_allow");
        Some(self.pages.page(StatusCode::FORBIDDEN))
    }

    /// The Prometheus text page, for loopback and `metrics_allow` clients only.
    fn metrics_page(&self, peer: SocketAddr) -> Response<Body> {
        if let Some(refused) = self.operator_only(peer, "metrics") {
            return refused;
        }
        if let Some(dns) = &self.dns {
            self.metrics.dns_counts(&dns.counts());
        }
        let mut response = Response::new(full(self.metrics.render(&self.node_states())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        response
    }

    /// `status.json`, for loopback and `metrics_allow` clients only. Never cached: it is read every
    /// second or two by the status page.
    fn status_json(&self, peer: SocketAddr) -> Response<Body> {
        if let Some(refused) = self.operator_only(peer, "status") {
            return refused;
        }
        let status = self.status(metrics::unix_second());
        let body = serde_json::to_vec(&status).expect("the status serialises");
        let mut response = Response::new(full(body));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }

    /// Every module's card as of `now` (Unix seconds).
    pub fn status(&self, now: u64) -> Status {
        let modules = self
            .modules
            .iter()
            .map(|(name, mounted)| {
                let role = match *mounted.role {
                    Role::Html(_) => "html",
                    Role::Http(_) => "http",
                    Role::Socket(_) => "socket",
                };
                let window = mounted.stats.last_minute.window_at(now);
                ModuleStatus::new(name, role, &node_states_of(name, mounted), &window)
            })
            .collect();
        Status::new(now, modules)
    }

    /// Every backend node's state, for the metrics page.
    pub fn node_states(&self) -> Vec<NodeState> {
        self.modules
            .iter()
            .flat_map(|(name, mounted)| node_states_of(name, mounted))
            .collect()
    }
}

/// The state of each backend node of one module (none for a static site).
fn node_states_of(name: &str, mounted: &Mounted) -> Vec<NodeState> {
    type Load<'a> = &'a dyn Fn(usize) -> (usize, Option<LaneLoad>);
    let (balancer, load): (_, Load<'_>) = match &*mounted.role {
        Role::Socket(gateway) => (gateway.balancer(), &|i| {
            (gateway.open_connections(i), gateway.lane_load(i))
        }),
        Role::Http(forward) => (forward.balancer(), &|i| {
            (forward.open_connections(i), forward.lane_load(i))
        }),
        Role::Html(_) => return Vec::new(),
    };
    (balancer.live_nodes().into_iter())
        .map(|(index, node)| {
            let (pooled, lanes) = load(index);
            NodeState {
                module: name.to_owned(),
                node: node.name().to_string(),
                up: !balancer.is_masked(index),
                masked_for: balancer.masked_for(index),
                pooled: Some(pooled),
                in_flight: balancer.in_flight(index),
                lanes,
            }
        })
        .collect()
}

/// `uri` with its path replaced by `path` (a normal form of it, so still a valid path).
fn with_path(uri: &Uri, path: &str) -> Uri {
    let mut parts = uri.clone().into_parts();
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    parts.path_and_query = Some(path_and_query.parse().expect("a normalised path is a valid path"));
    Uri::from_parts(parts).expect("only the path changed")
}
