//! `module_http`: reverse proxy to upstream HTTP servers.
//!
//! The request goes to a node chosen by the module's [`Balancer`] over hyper-util's pooled client
//! (keep-alive connections per node), path and query unchanged, bodies streamed both ways. A connect
//! failure masks the node and moves the request on (nothing was sent, see [`unsent_body`]); any later
//! failure masks the node and answers 502 or 504, because the upstream may have acted on the request.
//! `Upgrade` requests (WebSocket) are spliced through once the upstream answers 101.

pub mod headers;
pub mod unsent_body;
pub mod upgrade;

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::balancer::{Balancer, Clock, InFlight};
use crate::body::Body;
use crate::config::Upstream;
use crate::error_response::ErrorPages;
use crate::socket_gateway::ServedBy;
use unsent_body::{BodySlot, UnsentBody};

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(30);

type UpstreamClient = Client<HttpConnector, UnsentBody<Limited<Incoming>>>;

/// One HTTP module.
#[derive(Debug)]
pub struct HttpForward {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    upstream: Upstream,
    balancer: Balancer,
    /// Each node's `host:port`, the `Host` the upstream is sent unless `pass_host`.
    hosts: Vec<HeaderValue>,
    client: UpstreamClient,
}

/// Why a forwarded request failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("request body is larger than the limit of {0} bytes (server.max_body)")]
    BodyTooLarge(u64),
    #[error("could not read the request body from the client: {0}")]
    ClientBody(String),
    #[error("request target {0:?} cannot be forwarded")]
    BadTarget(String),
    #[error("no node of module '{module}' is reachable (tried {tried}); start the upstream or check proxy_pass")]
    Unreachable { module: String, tried: String },
    #[error("upstream {node} failed after the request was sent (not retried): {reason}")]
    Failed { node: String, reason: String },
    #[error("upstream {node} sent no response headers within {secs} s (upstream.timeout)")]
    Timeout { node: String, secs: f64 },
    #[error("upstream {node} switched protocols without being asked to")]
    UnexpectedUpgrade { node: String },
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            ForwardError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::ClientBody(_) | ForwardError::BadTarget(_) => StatusCode::BAD_REQUEST,
            ForwardError::Unreachable { .. } | ForwardError::Failed { .. } | ForwardError::UnexpectedUpgrade { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// The parts of the client's request every attempt starts from.
struct Outgoing {
    method: http::Method,
    path_and_query: String,
    headers: http::HeaderMap,
    client_host: Option<HeaderValue>,
    upgrading: bool,
    peer: SocketAddr,
}

impl HttpForward {
    /// The forwarder for module `name`.
    pub fn new(name: &str, upstream: Upstream, clock: Arc<dyn Clock>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(upstream.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(if upstream.keepalive { usize::MAX } else { 0 })
            .build(connector);
        let hosts = upstream
            .nodes
            .iter()
            .map(|node| {
                let authority = node
                    .parse::<Uri>()
                    .ok()
                    .and_then(|uri| uri.authority().map(|a| a.as_str().to_owned()))
                    .unwrap_or_default();
                HeaderValue::from_str(&authority).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
            })
            .collect();
        HttpForward {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                balancer: Balancer::for_upstream(&upstream, clock),
                upstream,
                hosts,
                client,
            }),
        }
    }

    /// The module's balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.shared.balancer
    }

    /// Forwards one request; bodies over `max_body` get 413.
    ///
    /// Returns a `'static` future (see `StaticSite::serve` for why).
    pub fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        max_body: u64,
        pages: &ErrorPages,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let pages = pages.clone();
        async move {
            match shared.forward(request, peer, max_body).await {
                Ok(response) => response,
                Err((error, node)) => {
                    let status = error.status();
                    if status.is_server_error() {
                        tracing::error!(module = shared.name, %error, "http request failed");
                    } else {
                        tracing::warn!(module = shared.name, %error, "http request refused");
                    }
                    let mut response = pages.page(status);
                    if let Some(node) = node {
                        response.extensions_mut().insert(ServedBy(node));
                    }
                    response
                }
            }
        }
    }
}

type Failure = (ForwardError, Option<Arc<str>>);

/// No response head within the module's `timeout`.
struct Elapsed;

impl Shared {
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        max_body: u64,
    ) -> Result<Response<Body>, Failure> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body) {
            return Err((ForwardError::BodyTooLarge(max_body), None));
        }
        let upgrading = headers::is_upgrade_request(request.version(), request.headers());
        let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let outgoing = Outgoing {
            client_host: parts.headers.get(header::HOST).cloned().or_else(|| {
                parts
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            path_and_query: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()).to_owned(),
            method: parts.method,
            headers: parts.headers,
            upgrading,
            peer,
        };
        let slot = BodySlot::new(Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)));
        let mut tried = Vec::with_capacity(self.balancer.nodes().len());
        loop {
            let Some(pick) = self.balancer.pick(&tried) else {
                let tried: Vec<&str> = tried.iter().map(|&i| self.balancer.node(i)).collect();
                return Err((
                    ForwardError::Unreachable {
                        module: self.name.clone(),
                        tried: tried.join(", "),
                    },
                    None,
                ));
            };
            if pick.all_masked {
                tracing::warn!(module = self.name, "every node is masked; trying a masked one");
            }
            tried.push(pick.index);
            let index = pick.index;
            let node = self.balancer.node(index);
            let request = self.build(&outgoing, index, &slot).map_err(|e| (e, None))?;
            let served_by: Arc<str> = node.into();
            // Counted from the pick, so requests arriving together see each other (least_conn), and until
            // the response body or the upgraded connection ends.
            let in_flight = self.balancer.track(index);
            match self.exchange(request, &slot).await {
                Ok(Ok(response)) => {
                    return self
                        .respond(response, index, client_upgrade, in_flight)
                        .map_err(|e| (e, Some(served_by.clone())))
                        .map(|mut response| {
                            response.extensions_mut().insert(ServedBy(served_by));
                            response
                        });
                }
                // Nothing was sent: the request may go on to another node.
                Ok(Err(error)) if error.is_connect() && !slot.is_taken() => {
                    tracing::warn!(module = self.name, node, error = %chain(&error), "connect failed; node masked");
                    self.balancer.mark_failed(index);
                }
                Ok(Err(error)) => return Err((self.classify(index, &error, max_body), Some(served_by))),
                Err(Elapsed) => {
                    self.balancer.mark_failed(index);
                    let error = ForwardError::Timeout {
                        node: node.to_owned(),
                        secs: self.upstream.timeout.as_secs_f64(),
                    };
                    return Err((error, Some(served_by)));
                }
            }
        }
    }

    /// Sends one attempt and waits for the response head: at most `timeout` after the request began
    /// or after the last piece of its body went out, whichever is later.
    async fn exchange(
        &self,
        request: Request<UnsentBody<Limited<Incoming>>>,
        slot: &BodySlot<Limited<Incoming>>,
    ) -> Result<Result<Response<Incoming>, hyper_util::client::legacy::Error>, Elapsed> {
        let timeout = self.upstream.timeout;
        let response = self.client.request(request);
        tokio::pin!(response);
        let started = Instant::now();
        loop {
            let deadline = started.max(slot.last_sent()) + timeout;
            tokio::select! {
                outcome = &mut response => return Ok(outcome),
                () = tokio::time::sleep_until(deadline.into()) => {
                    if started.max(slot.last_sent()) + timeout <= Instant::now() {
                        return Err(Elapsed);
                    }
                }
            }
        }
    }

    /// The request for one attempt at node `index`.
    fn build(
        &self,
        outgoing: &Outgoing,
        index: usize,
        slot: &BodySlot<Limited<Incoming>>,
    ) -> Result<Request<UnsentBody<Limited<Incoming>>>, ForwardError> {
        let target = format!("{}{}", self.balancer.node(index), outgoing.path_and_query);
        let uri: Uri = target
            .parse()
            .map_err(|_| ForwardError::BadTarget(outgoing.path_and_query.clone()))?;
        let mut request = Request::new(slot.attempt());
        *request.method_mut() = outgoing.method.clone();
        *request.uri_mut() = uri;
        // Upstreams are spoken to in HTTP/1.1 whatever the client used.
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers::upstream_request_headers(
            outgoing.headers.clone(),
            outgoing.upgrading,
            outgoing.peer.ip(),
            outgoing.client_host.clone(),
            self.hosts[index].clone(),
            self.upstream.pass_host,
        );
        Ok(request)
    }

    /// The upstream's response as the client gets it; on `101`, the two connections are spliced.
    fn respond(
        &self,
        mut response: Response<Incoming>,
        index: usize,
        client_upgrade: Option<OnUpgrade>,
        in_flight: InFlight,
    ) -> Result<Response<Body>, ForwardError> {
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client) = client_upgrade else {
                self.balancer.mark_failed(index);
                return Err(ForwardError::UnexpectedUpgrade {
                    node: self.balancer.node(index).to_owned(),
                });
            };
            let upstream = hyper::upgrade::on(&mut response);
            let splice = upgrade::splice(
                self.name.clone(),
                self.balancer.node(index).to_owned(),
                client,
                upstream,
            );
            tokio::spawn(async move {
                splice.await;
                drop(in_flight);
            });
            headers::strip_hop_by_hop(response.headers_mut(), switching);
            return Ok(response.map(|body| body.map_err(Into::into).boxed_unsync()));
        }
        headers::strip_hop_by_hop(response.headers_mut(), switching);
        // The body carries the in-flight count until it is done or dropped.
        Ok(response.map(|body| {
            body.map_err(Into::into)
                .map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                })
                .boxed_unsync()
        }))
    }

    /// An error after the request may have been sent. The client's own body failing is not the
    /// upstream's fault and does not mask it.
    fn classify(&self, index: usize, error: &hyper_util::client::legacy::Error, max_body: u64) -> ForwardError {
        if causes(error).any(|cause| cause.is::<LengthLimitError>()) {
            return ForwardError::BodyTooLarge(max_body);
        }
        if causes(error).any(|cause| cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_user)) {
            return ForwardError::ClientBody(chain(error));
        }
        self.balancer.mark_failed(index);
        ForwardError::Failed {
            node: self.balancer.node(index).to_owned(),
            reason: chain(error),
        }
    }
}

/// An error and everything under it.
fn causes<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// An error and its causes on one line (hyper-util's own message is only "client error (Connect)").
fn chain(error: &(dyn StdError + 'static)) -> String {
    causes(error).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
