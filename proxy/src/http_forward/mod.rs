//! `module_http`: reverse proxy to upstream HTTP servers.
//!
//! The request goes to a node chosen by the module's [`Balancer`] over a keep-alive connection from
//! that node's idle stack (see [`pool`]), path and query unchanged, bodies streamed both ways. A connect
//! failure masks the node and moves the request on (nothing was sent, see [`unsent_body`]); any later
//! failure masks the node and answers 502 or 504, because the upstream may have acted on the request.
//! `Upgrade` requests (WebSocket) are spliced through once the upstream answers 101. With `pipeline`,
//! bodyless `GET` and `HEAD` requests share connections instead (see [`pipeline`]).

pub mod body_framing;
pub mod headers;
pub mod pipeline;
pub mod pool;
pub mod request_encoding;
pub mod response_head;
pub mod unsent_body;
pub mod upgrade;

use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::balancer::{Balancer, Clock, InFlight};
use crate::body::Body;
use crate::config::Upstream;
use crate::error_response::ErrorPages;
use crate::socket_gateway::ServedBy;
use pipeline::{Head, HttpLanes, HttpWire, Outcome, ResponseBody};
use pool::{Lease, Pool, RequestBody, SendError, UpstreamBody};
use unsent_body::BodySlot;

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
    /// Each node as responses name it (`ServedBy`).
    served_by: Vec<Arc<str>>,
    pool: Arc<Pool>,
    /// With `pipeline`: the connections bodyless `GET` and `HEAD` requests share.
    lanes: Option<HttpLanes>,
    /// Each node's `host:port`, for the lanes to connect to.
    addrs: Vec<String>,
}

/// An upstream's response head, and where its body comes from.
enum Answer {
    /// A connection of its own (pooled, or detached when upgrading), driven by the body until it ends.
    Own(Response<Incoming>, Option<Lease>),
    /// A shared connection (`pipeline`), whose lane reads the body.
    Pipelined(Response<ResponseBody>),
}

/// Why a forwarded request failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("request body is larger than the limit of {0} bytes (server.max_body)")]
    BodyTooLarge(u64),
    #[error("could not read the request body from the client: {0}")]
    ClientBody(String),
    #[error("no node of module '{module}' is reachable (tried {tried}); start the upstream or check proxy_pass")]
    Unreachable { module: String, tried: String },
    #[error("upstream {node} failed after the request was sent: {reason}")]
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
            ForwardError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ForwardError::Unreachable { .. } | ForwardError::Failed { .. } | ForwardError::UnexpectedUpgrade { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ForwardError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// The parts of the client's request the upstream's request is made of.
struct Outgoing {
    method: Method,
    /// The request target in origin form (`/path?query`).
    target: Uri,
    /// Already rewritten for the upstream (see [`headers::upstream_request_headers`]) but for `Host`,
    /// which depends on the node. Moved into the one request a forward builds: it is built only once a
    /// connection is up, and a request that was built is either sent again as it is or not at all.
    headers: http::HeaderMap,
    /// The `Host` every node is sent (`pass_host` and the client named one); otherwise each node's own.
    host: Option<HeaderValue>,
}

impl HttpForward {
    /// The forwarder for module `name`.
    pub fn new(name: &str, upstream: Upstream, clock: Arc<dyn Clock>) -> Self {
        let pool = Pool::new(&upstream.nodes, upstream.keepalive, upstream.connect_timeout);
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
        let lanes = (upstream.pipeline > 1).then(|| {
            HttpLanes::new(
                upstream.nodes.len(),
                upstream.pipeline,
                upstream.connect_timeout,
                HttpWire,
            )
        });
        HttpForward {
            shared: Arc::new(Shared {
                addrs: (0..upstream.nodes.len()).map(|node| pool.addr(node)).collect(),
                lanes,
                name: name.to_owned(),
                balancer: Balancer::for_upstream(&upstream, clock),
                served_by: upstream.nodes.iter().map(|node| Arc::from(node.as_str())).collect(),
                upstream,
                hosts,
                pool,
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
        let lanes = self
            .lanes
            .as_ref()
            .filter(|_| !upgrading && pipeline::is_pipelinable(&parts.method, !http_body::Body::is_end_stream(&body)));
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let host = client_host.clone().filter(|_| self.upstream.pass_host);
        let mut outgoing = Outgoing {
            headers: headers::upstream_request_headers(
                parts.headers,
                upgrading,
                peer.ip(),
                client_host,
                // Replaced by each node's own in `build` unless `host` is set.
                self.hosts
                    .first()
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("localhost")),
                self.upstream.pass_host,
            ),
            host,
            target: origin_form(parts.uri),
            method: parts.method,
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
            let served_by = &self.served_by[index];
            // Counted from the pick, so requests arriving together see each other (least_conn), and until
            // the response body or the upgraded connection ends.
            let in_flight = self.balancer.track(index);
            let exchange = if upgrading {
                // Boxed, being rare, so as not to enlarge every request's future.
                self.timed(Box::pin(self.exchange_detached(index, &mut outgoing, &slot)), &slot)
                    .await
            } else if let Some(lanes) = lanes {
                self.timed(self.exchange_pipelined(lanes, index, &outgoing), &slot)
                    .await
            } else {
                // Boxed: a pooled attempt's state is the larger part of this future, which moves several times.
                self.timed(Box::pin(self.exchange(index, &mut outgoing, &slot)), &slot)
                    .await
            };
            match exchange {
                Ok(Ok(answer)) => {
                    self.balancer.answered(pick);
                    return self
                        .respond(answer, index, client_upgrade, in_flight)
                        .map_err(|e| (e, Some(served_by.clone())))
                        .map(|mut response| {
                            response.extensions_mut().insert(ServedBy(served_by.clone()));
                            response
                        });
                }
                // Nothing was sent: the request may go on to another node.
                Ok(Err(error @ SendError::Connect(_))) if !slot.is_taken() => {
                    tracing::warn!(module = self.name, node, error = %chain(&error), "connect failed; node masked");
                    self.balancer.mark_failed(index);
                }
                Ok(Err(error)) => return Err((self.classify(index, &error, max_body), Some(served_by.clone()))),
                Err(Elapsed) => {
                    self.balancer.mark_failed(index);
                    let error = ForwardError::Timeout {
                        node: node.to_owned(),
                        secs: self.upstream.timeout.as_secs_f64(),
                    };
                    return Err((error, Some(served_by.clone())));
                }
            }
        }
    }

    /// Waits for `exchange` (an attempt up to its response head): at most `timeout` after the request
    /// began or after the last piece of its body went out, whichever is later.
    async fn timed<T>(
        &self,
        exchange: impl Future<Output = T>,
        slot: &BodySlot<Limited<Incoming>>,
    ) -> Result<T, Elapsed> {
        let timeout = self.upstream.timeout;
        let mut exchange = std::pin::pin!(exchange);
        let started = Instant::now();
        loop {
            let deadline = started.max(slot.last_sent()) + timeout;
            tokio::select! {
                outcome = &mut exchange => return Ok(outcome),
                () = tokio::time::sleep_until(deadline.into()) => {
                    if started.max(slot.last_sent()) + timeout <= Instant::now() {
                        return Err(Elapsed);
                    }
                }
            }
        }
    }

    /// One attempt at node `index` over a pooled connection, driven by this task. A request that a
    /// reused connection closed before taking goes out again on another connection: not one byte of it
    /// was sent.
    async fn exchange(
        &self,
        index: usize,
        outgoing: &mut Outgoing,
        slot: &BodySlot<Limited<Incoming>>,
    ) -> Result<Answer, SendError> {
        let mut lease = self.pool.get(index).await.map_err(SendError::Connect)?;
        let mut request = self.build(outgoing, index, slot);
        loop {
            let reused = lease.is_reused();
            match pool::send(lease, request).await {
                Ok((response, lease)) => return Ok(Answer::Own(response, lease)),
                Err((error, Some(unsent))) if reused && !slot.is_taken() => {
                    tracing::debug!(module = self.name, %error, "pooled connection closed before the request; retrying");
                    request = unsent;
                    lease = self.pool.get(index).await.map_err(SendError::Connect)?;
                }
                Err((error, _)) => return Err(SendError::Http(error)),
            }
        }
    }

    /// One attempt at node `index` that asks to switch protocols: on a new connection that runs as its
    /// own task, so it can outlive the request once upgraded.
    async fn exchange_detached(
        &self,
        index: usize,
        outgoing: &mut Outgoing,
        slot: &BodySlot<Limited<Incoming>>,
    ) -> Result<Answer, SendError> {
        let mut sender = self.pool.connect_detached(index).await.map_err(SendError::Connect)?;
        let response = sender
            .send_request(self.build(outgoing, index, slot))
            .await
            .map_err(SendError::Http)?;
        Ok(Answer::Own(response, None))
    }

    /// One attempt at node `index` on one of its shared connections. A request the upstream turned away
    /// unread goes out again on another one; so does, twice at most, one whose connection closed before
    /// its response, which only `GET` and `HEAD` allow (RFC 9110, section 9.2.2).
    async fn exchange_pipelined(
        &self,
        lanes: &HttpLanes,
        index: usize,
        outgoing: &Outgoing,
    ) -> Result<Answer, SendError> {
        let target = outgoing.target.path_and_query().map_or("/", |target| target.as_str());
        let host = outgoing.host.as_ref().unwrap_or(&self.hosts[index]);
        let (mut unanswered, mut turned_away) = (2, 16);
        loop {
            // Built for each attempt: cloning it would cost every request an allocation, a retry is rare.
            let head = Head::new(&outgoing.method, target, host, &outgoing.headers);
            match lanes.call(index, &self.addrs[index], head).await {
                Outcome::Response(response) => return Ok(Answer::Pipelined(response)),
                Outcome::Unsent(Some(error)) => return Err(SendError::Connect(error)),
                Outcome::Unsent(None) if turned_away > 0 => turned_away -= 1,
                Outcome::Closed if unanswered > 0 => {
                    unanswered -= 1;
                    tracing::debug!(
                        module = self.name,
                        "pipelined connection closed before the response; retrying"
                    );
                }
                Outcome::Closed => {
                    let reason = "the connection closed before the response, on each of three attempts";
                    return Err(SendError::Pipelined(reason.into()));
                }
                Outcome::Unsent(None) => {
                    let reason = "every connection closed before the upstream took the request";
                    return Err(SendError::Pipelined(reason.into()));
                }
                Outcome::BadResponse(reason) => return Err(SendError::Pipelined(reason)),
            }
        }
    }

    /// The request to node `index`, once a connection to it is up.
    fn build(&self, outgoing: &mut Outgoing, index: usize, slot: &BodySlot<Limited<Incoming>>) -> Request<RequestBody> {
        let mut request = Request::new(slot.attempt());
        *request.method_mut() = outgoing.method.clone();
        *request.uri_mut() = outgoing.target.clone();
        // Upstreams are spoken to in HTTP/1.1 whatever the client used.
        *request.version_mut() = Version::HTTP_11;
        let mut headers = std::mem::take(&mut outgoing.headers);
        let host = outgoing.host.clone().unwrap_or_else(|| self.hosts[index].clone());
        headers.insert(header::HOST, host);
        *request.headers_mut() = headers;
        request
    }

    /// The upstream's response as the client gets it; on `101`, the two connections are spliced.
    fn respond(
        &self,
        answer: Answer,
        index: usize,
        client_upgrade: Option<OnUpgrade>,
        in_flight: InFlight,
    ) -> Result<Response<Body>, ForwardError> {
        let (mut response, lease) = match answer {
            Answer::Own(response, lease) => (response, lease),
            // Its hop-by-hop headers were left out as they were read.
            Answer::Pipelined(response) => return Ok(response.map(|body| body.holding(in_flight).boxed_unsync())),
        };
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
        // The body drives its connection and carries the in-flight count until it is done or dropped.
        Ok(response.map(|body| UpstreamBody::new(body, lease, in_flight).boxed_unsync()))
    }

    /// An error after the request may have been sent. The client's own body failing is not the
    /// upstream's fault and does not mask it.
    fn classify(&self, index: usize, error: &SendError, max_body: u64) -> ForwardError {
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

/// The target of `uri` in origin form (`/path?query`), as an upstream is sent it.
fn origin_form(uri: Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() && uri.path_and_query().is_some() {
        return uri;
    }
    match uri.path_and_query() {
        Some(path) if path.as_str() != "/" => {
            let mut parts = http::uri::Parts::default();
            parts.path_and_query = Some(path.clone());
            Uri::from_parts(parts).unwrap_or_default()
        }
        _ => Uri::default(),
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
