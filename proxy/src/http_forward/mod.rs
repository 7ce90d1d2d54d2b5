//! `module_http`: reverse proxy to upstream HTTP servers.
//!
//! The request goes to a node chosen by the module's [`Balancer`] over a keep-alive connection from
//! that node's idle stack (see [`pool`]), path and query unchanged, bodies streamed both ways. Whether a
//! failed try moves on, goes out again or is answered 502 or 504 is decided in
//! [`crate::balancer::attempts`]: a connect failure moves the request on (nothing was sent, see
//! [`unsent_body`]); a later failure is answered, because the upstream may have acted on the request.
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
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use crate::balancer::attempts::{self, Answered, Attempt, Event, Miss, Unanswered};
use crate::balancer::{Balancer, Clock, InFlight, Node};
use crate::body::Body;
use crate::client_address::Scheme;
use crate::config::Upstream;
use crate::error_response::ErrorPages;
use crate::lanes::LaneLoad;
use crate::socket_forward::ServedBy;
use crate::tls::upstream::Connector;
use pipeline::{Head, HttpLanes, HttpWire, Outcome, ResponseBody};
use pool::{Lease, Pool, RequestBody, SendError, UpstreamBody};
use unsent_body::BodySlot;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::connection_hold::ConnectionHold;
use crate::discovery::{self, Following, Hosts, Members};
use crate::request_body::{BodyLimits, Stalled, TimedBody};

/// One HTTP module.
#[derive(Debug)]
pub struct HttpForward {
    shared: Arc<Shared>,
    _following: Following,
}

#[derive(Debug)]
struct Shared {
    name: String,
    upstream: Upstream,
    /// The nodes (address, `Host`, name) and their health.
    balancer: Balancer,
    pool: Arc<Pool>,
    /// With `pipeline`: the connections bodyless `GET` and `HEAD` requests share.
    lanes: Option<HttpLanes>,
    /// Cancelled when this module is dropped, i.e. when a reload has replaced the app it belongs to and its
    /// requests have finished: its WebSockets are then closed, and reconnect to the new configuration.
    retired: CancellationToken,
    _retire_on_drop: DropGuard,
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
    #[error(transparent)]
    ClientStalled(Stalled),
    #[error("could not connect to upstream {node}: {reason}")]
    Connect { node: Arc<str>, reason: String },
    #[error("no node of module '{module}' is reachable (tried {tried}); start the upstream or check proxy_pass")]
    Unreachable { module: String, tried: String },
    #[error("module '{module}' has no nodes yet: its DNS names have not resolved (see the log)")]
    NoNodesYet { module: String },
    #[error("upstream {node} failed after the request was sent: {reason}")]
    Failed { node: Arc<str>, reason: String },
    #[error("upstream {node} failed after the request was sent: the connection closed before the response, on each of {} attempts", spelled(*.attempts))]
    Unanswered { node: Arc<str>, attempts: u8 },
    #[error("upstream {node} sent no response headers within {secs} s (upstream.timeout)")]
    Timeout { node: Arc<str>, secs: f64 },
    #[error("upstream {node} switched protocols without being asked to")]
    UnexpectedUpgrade { node: Arc<str> },
}

impl ForwardError {
    fn status(&self) -> StatusCode {
        match self {
            ForwardError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ForwardError::ClientStalled(_) => StatusCode::REQUEST_TIMEOUT,
            ForwardError::Connect { .. }
            | ForwardError::Unreachable { .. }
            | ForwardError::NoNodesYet { .. }
            | ForwardError::Failed { .. }
            | ForwardError::Unanswered { .. }
            | ForwardError::UnexpectedUpgrade { .. } => StatusCode::BAD_GATEWAY,
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
    /// which depends on the node (see [`Outgoing::host_for`]). Moved into the one request a forward builds: it is built only once a
    /// connection is up, and a request that was built is either sent again as it is or not at all.
    headers: http::HeaderMap,
    /// The host the client asked for, if it named one.
    client_host: Option<HeaderValue>,
    /// Whether that host is passed on (`pass_host`).
    pass_host: bool,
}

impl Outgoing {
    /// The `Host` `node` is sent.
    fn host_for<'a>(&'a self, node: &'a Node) -> &'a HeaderValue {
        headers::upstream_host(self.client_host.as_ref(), self.pass_host, node.host_header())
    }
}

impl HttpForward {
    /// The forwarder for module `name`, over the nodes its config lists.
    pub fn new(name: &str, upstream: Upstream, clock: Arc<dyn Clock>) -> Self {
        let members = discovery::fixed(discovery::listed(&upstream.nodes, &upstream.weights));
        HttpForward::following(name, upstream, clock, members, Hosts::default())
    }

    /// The forwarder for module `name`, over the nodes `members` publishes as it changes: a node that
    /// leaves takes no new requests, its idle connections close and its lanes close once their
    /// responses are in. A node found through a DNS name is sent the `Host` `hosts` gives it.
    pub fn following(name: &str, upstream: Upstream, clock: Arc<dyn Clock>, members: Members, hosts: Hosts) -> Self {
        let pool = Pool::new(upstream.keepalive, upstream.connect_timeout, connector(name, &upstream));
        let lanes =
            (upstream.pipeline > 1).then(|| HttpLanes::new(upstream.pipeline, upstream.connect_timeout, HttpWire));
        let retired = CancellationToken::new();
        let shared = Arc::new(Shared {
            _retire_on_drop: retired.clone().drop_guard(),
            retired,
            lanes,
            name: name.to_owned(),
            balancer: Balancer::for_upstream(&upstream, clock).with_node_maker(move |member| {
                let node = Node::new(&member.address, member.weight);
                let host = hosts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&member.address)
                    .cloned();
                match host {
                    Some(host) => node.with_host(&host),
                    None => node,
                }
            }),
            upstream,
            pool,
        });
        let module = Arc::downgrade(&shared);
        let following = discovery::follow(members, move |set| {
            let Some(shared) = module.upgrade() else {
                return;
            };
            for index in shared.balancer.apply(set).left {
                shared.pool.clear(index);
                if let Some(lanes) = &shared.lanes {
                    lanes.release(index);
                }
            }
        });
        HttpForward {
            shared,
            _following: following,
        }
    }

    /// The module's balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.shared.balancer
    }

    /// Idle keep-alive connections held for node `index`.
    pub fn open_connections(&self, index: usize) -> usize {
        self.shared.pool.idle_count(index)
    }

    /// Node `index`'s lanes, with `pipeline`.
    pub fn lane_load(&self, index: usize) -> Option<LaneLoad> {
        self.shared.lanes.as_ref().map(|lanes| lanes.load(index))
    }

    /// Forwards one request; bodies over `max_body` get 413. A response from a node names it
    /// ([`ServedBy`]) when `noted` (the access log is on: the first extension costs an allocation).
    ///
    /// Returns a `'static` future (see `StaticSite::serve` for why).
    pub fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        limits: &BodyLimits,
        pages: &ErrorPages,
        noted: bool,
    ) -> impl Future<Output = Response<Body>> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        let pages = pages.clone();
        let limits = limits.clone();
        async move {
            match shared.forward(request, peer, &limits, noted).await {
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

/// A client's request body as forwarded: within `max_body`, and cut off if the client stops sending.
pub type ClientBody = Limited<TimedBody<Incoming>>;

/// `body` under `limits` (only their size and time: a forwarded body streams, it is not held whole).
pub fn client_body(body: Incoming, limits: &BodyLimits) -> ClientBody {
    let max_body = usize::try_from(limits.max_body).unwrap_or(usize::MAX);
    Limited::new(
        TimedBody::new(body, limits.chunk_timeout, limits.total_timeout),
        max_body,
    )
}

/// No response head within the module's `timeout`.
struct Elapsed;

/// How the module's connections are opened. Its `ca_file` and node names were checked with the config;
/// a `ca_file` that cannot be read now leaves the system's roots alone, and handshakes say so.
fn connector(name: &str, upstream: &Upstream) -> Connector {
    if upstream.insecure {
        tracing::warn!(
            module = name,
            "insecure = true: the certificates of this module's https:// nodes are not checked"
        );
    }
    Connector::for_nodes(&upstream.nodes, upstream.ca_file.as_deref(), upstream.insecure).unwrap_or_else(|error| {
        tracing::error!(module = name, %error, "https:// nodes are checked against the system's CAs only");
        Connector::for_nodes(&upstream.nodes, None, upstream.insecure).unwrap_or_else(|_| Connector::plain())
    })
}

impl Shared {
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        limits: &BodyLimits,
        noted: bool,
    ) -> Result<Response<Body>, Failure> {
        let max_body = limits.max_body;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max_body) {
            return Err((ForwardError::BodyTooLarge(max_body), None));
        }
        let upgrading = headers::is_upgrade_request(request.version(), request.headers());
        // The splice keeps a share of the client connection's hold (its slot, and shutdown's wait).
        let client_upgrade = upgrading.then(|| {
            let hold = request.extensions().get::<ConnectionHold>().cloned();
            (hyper::upgrade::on(&mut request), hold)
        });
        // Decided where the request came in (app.rs), from the listener and trusted proxies.
        let proto = request.extensions().get::<Scheme>().copied().unwrap_or(Scheme::Http);
        let (parts, body) = request.into_parts();
        // Only a bodyless GET or HEAD may go out twice (RFC 9110, section 9.2.2), and only those share lanes.
        let may_resend = !upgrading && pipeline::is_pipelinable(&parts.method, !http_body::Body::is_end_stream(&body));
        let lanes = self.lanes.as_ref().filter(|_| may_resend);
        let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let mut outgoing = Outgoing {
            headers: headers::upstream_request_headers(
                parts.headers,
                upgrading,
                peer.ip(),
                client_host.as_ref(),
                proto,
            ),
            client_host,
            pass_host: self.upstream.pass_host,
            target: origin_form(parts.uri),
            method: parts.method,
        };
        let slot = BodySlot::new(client_body(body, limits));
        let mut request = HttpRequest {
            shared: self,
            outgoing: &mut outgoing,
            slot: &slot,
            lanes,
            upgrading,
            max_body,
            unsent: None,
        };
        let node_name = |index: usize| self.balancer.node(index).name().clone();
        match attempts::run(&self.balancer, &self.name, may_resend, &mut request).await {
            Ok(Answered {
                answer,
                index,
                in_flight,
            }) => {
                // The in-flight count lasts until the response body or the upgraded connection ends.
                match self.respond(answer, index, client_upgrade, in_flight) {
                    Ok(mut response) => {
                        if noted {
                            response.extensions_mut().insert(ServedBy(node_name(index)));
                        }
                        Ok(response)
                    }
                    Err(error) => Err((error, Some(node_name(index)))),
                }
            }
            Err(Unanswered::Failed { error, index, resends }) => {
                let error = match error {
                    ForwardError::Unanswered { node, .. } => ForwardError::Unanswered {
                        node,
                        attempts: resends.unanswered + 1,
                    },
                    error => error,
                };
                Err((error, Some(node_name(index))))
            }
            // An empty set: discovery has found nothing yet (a source never empties a set it had).
            Err(Unanswered::NoNode(tried)) if tried.is_empty() => Err((
                ForwardError::NoNodesYet {
                    module: self.name.clone(),
                },
                None,
            )),
            Err(Unanswered::NoNode(tried)) => Err((
                ForwardError::Unreachable {
                    module: self.name.clone(),
                    tried: attempts::describe(&self.balancer, &tried),
                },
                None,
            )),
        }
    }

    /// Waits for `exchange` (an attempt up to its response head): at most `timeout` after the request
    /// began or after the last piece of its body went out, whichever is later.
    async fn timed<T>(&self, exchange: impl Future<Output = T>, slot: &BodySlot<ClientBody>) -> Result<T, Elapsed> {
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

    /// One try at node `index` over a pooled connection, driven by this task. A request that a reused
    /// connection closed before taking is kept in `unsent`, to go out again as it is: not one byte of it
    /// was sent.
    async fn exchange(
        &self,
        index: usize,
        node: &Node,
        outgoing: &mut Outgoing,
        slot: &BodySlot<ClientBody>,
        unsent: &mut Option<Box<Request<RequestBody>>>,
        max_body: u64,
    ) -> Tried {
        let lease = match self.pool.get(index, node).await {
            Ok(lease) => lease,
            Err(error) => return Err(self.connect_failed(node, &SendError::Connect(error), slot, max_body)),
        };
        let request = match unsent.take() {
            Some(request) => *request,
            None => self.build(outgoing, node, slot),
        };
        let reused = lease.is_reused();
        match pool::send(lease, request).await {
            Ok((response, lease)) => Ok(Answer::Own(response, lease)),
            Err((error, Some(request))) if reused && !slot.is_taken() => {
                *unsent = Some(Box::new(request));
                let reason = chain(&SendError::Http(error));
                let error = ForwardError::Failed {
                    node: node.name().clone(),
                    reason,
                };
                Err(Miss::new(Event::Unsent, reused, error))
            }
            Err((error, _)) => Err(self.classify(node, reused, &SendError::Http(error), max_body)),
        }
    }

    /// One try at `node` that asks to switch protocols: on a new connection that runs as its own task, so
    /// it can outlive the request once upgraded.
    async fn exchange_detached(
        &self,
        node: &Node,
        outgoing: &mut Outgoing,
        slot: &BodySlot<ClientBody>,
        max_body: u64,
    ) -> Tried {
        let mut sender = match self.pool.connect_detached(node).await {
            Ok(sender) => sender,
            Err(error) => return Err(self.connect_failed(node, &SendError::Connect(error), slot, max_body)),
        };
        match sender.send_request(self.build(outgoing, node, slot)).await {
            Ok(response) => Ok(Answer::Own(response, None)),
            Err(error) => Err(self.classify(node, false, &SendError::Http(error), max_body)),
        }
    }

    /// One try at node `index` on one of its shared connections. A lane is a kept connection: a request
    /// it closed on unwritten, or the upstream turned away unread, may go out again; so may one whose
    /// connection closed before its response, since only `GET` and `HEAD` take lanes.
    async fn exchange_pipelined(&self, lanes: &HttpLanes, index: usize, node: &Node, outgoing: &Outgoing) -> Tried {
        let target = outgoing.target.path_and_query().map_or("/", |target| target.as_str());
        // Built for each try: cloning it would cost every request an allocation, a resend is rare.
        let head = Head::new(&outgoing.method, target, outgoing.host_for(node), &outgoing.headers);
        let name = || node.name().clone();
        Err(match lanes.call(index, node.address(), head).await {
            Outcome::Response(response) => return Ok(Answer::Pipelined(response)),
            Outcome::Unsent(Some(error)) => Miss::new(
                Event::Refused,
                false,
                ForwardError::Connect {
                    node: name(),
                    reason: error.to_string(),
                },
            ),
            Outcome::Unsent(None) => {
                let reason = "every connection closed before the upstream took the request".to_owned();
                Miss::new(Event::Unsent, true, ForwardError::Failed { node: name(), reason })
            }
            // The count of attempts is filled in if this is the one the client is answered with.
            Outcome::Closed => Miss::new(
                Event::Unanswered,
                true,
                ForwardError::Unanswered {
                    node: name(),
                    attempts: 1,
                },
            ),
            Outcome::BadResponse(reason) => {
                Miss::new(Event::Failed, true, ForwardError::Failed { node: name(), reason })
            }
        })
    }

    /// The request to `node`, once a connection to it is up.
    fn build(&self, outgoing: &mut Outgoing, node: &Node, slot: &BodySlot<ClientBody>) -> Request<RequestBody> {
        let mut request = Request::new(slot.attempt());
        *request.method_mut() = outgoing.method.clone();
        *request.uri_mut() = outgoing.target.clone();
        // Upstreams are spoken to in HTTP/1.1 whatever the client used.
        *request.version_mut() = Version::HTTP_11;
        let host = outgoing.host_for(node).clone();
        let mut headers = std::mem::take(&mut outgoing.headers);
        headers.insert(header::HOST, host);
        *request.headers_mut() = headers;
        request
    }

    /// The upstream's response as the client gets it; on `101`, the two connections are spliced.
    fn respond(
        &self,
        answer: Answer,
        index: usize,
        client_upgrade: Option<(OnUpgrade, Option<ConnectionHold>)>,
        in_flight: InFlight,
    ) -> Result<Response<Body>, ForwardError> {
        let (mut response, lease) = match answer {
            Answer::Own(response, lease) => (response, lease),
            // Its hop-by-hop headers were left out as they were read.
            Answer::Pipelined(response) => return Ok(response.map(|body| body.holding(in_flight).boxed_unsync())),
        };
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some((client, hold)) = client_upgrade else {
                self.balancer.mark_failed(index);
                return Err(ForwardError::UnexpectedUpgrade {
                    node: self.balancer.node(index).name().clone(),
                });
            };
            let upstream = hyper::upgrade::on(&mut response);
            let splice = upgrade::splice(
                self.name.clone(),
                self.balancer.node(index).name().to_string(),
                client,
                upstream,
                hold,
                self.retired.clone(),
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

    /// A connect that failed: nothing was sent unless an earlier try already took the body.
    fn connect_failed(
        &self,
        node: &Node,
        error: &SendError,
        slot: &BodySlot<ClientBody>,
        max_body: u64,
    ) -> Miss<ForwardError> {
        if slot.is_taken() {
            return self.classify(node, false, error, max_body);
        }
        let reason = chain(error);
        Miss::new(
            Event::Refused,
            false,
            ForwardError::Connect {
                node: node.name().clone(),
                reason,
            },
        )
    }

    /// An error after the request may have been sent. The client's own body failing is not the
    /// upstream's fault.
    fn classify(&self, node: &Node, reused: bool, error: &SendError, max_body: u64) -> Miss<ForwardError> {
        if causes(error).any(|cause| cause.is::<LengthLimitError>()) {
            return Miss::new(Event::ClientFailed, reused, ForwardError::BodyTooLarge(max_body));
        }
        if let Some(stalled) = causes(error).find_map(|cause| cause.downcast_ref::<Stalled>()) {
            return Miss::new(Event::ClientFailed, reused, ForwardError::ClientStalled(*stalled));
        }
        if causes(error).any(|cause| cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_user)) {
            return Miss::new(Event::ClientFailed, reused, ForwardError::ClientBody(chain(error)));
        }
        let error = ForwardError::Failed {
            node: node.name().clone(),
            reason: chain(error),
        };
        Miss::new(Event::Failed, reused, error)
    }
}

/// What one try at a node yields.
type Tried = Result<Answer, Miss<ForwardError>>;

/// One HTTP request going through the attempt loop.
struct HttpRequest<'a> {
    shared: &'a Shared,
    outgoing: &'a mut Outgoing,
    slot: &'a BodySlot<ClientBody>,
    /// With `pipeline`, for a request that may share a connection.
    lanes: Option<&'a HttpLanes>,
    upgrading: bool,
    max_body: u64,
    /// A request built for a node that a kept connection closed before taking. Boxed: it is rare, and
    /// this lives in every request's future.
    unsent: Option<Box<Request<RequestBody>>>,
}

impl Attempt for HttpRequest<'_> {
    type Answer = Answer;
    type Error = ForwardError;

    async fn attempt(&mut self, index: usize, node: &Node, resend: bool) -> Tried {
        let shared = self.shared;
        if !resend {
            // A request built for the node before: its headers go back, to be built again with this one's `Host`.
            if let Some(request) = self.unsent.take() {
                self.outgoing.headers = request.into_parts().0.headers;
            }
        }
        let (outgoing, slot) = (&mut *self.outgoing, self.slot);
        let tried = if self.upgrading {
            // Boxed, being rare, so as not to enlarge every request's future.
            shared
                .timed(
                    Box::pin(shared.exchange_detached(node, outgoing, slot, self.max_body)),
                    slot,
                )
                .await
        } else if let Some(lanes) = self.lanes {
            shared
                .timed(shared.exchange_pipelined(lanes, index, node, outgoing), slot)
                .await
        } else {
            // Boxed: a pooled try's state is the larger part of this future, which moves several times.
            let exchange = shared.exchange(index, node, outgoing, slot, &mut self.unsent, self.max_body);
            shared.timed(Box::pin(exchange), slot).await
        };
        tried.unwrap_or_else(|Elapsed| {
            let error = ForwardError::Timeout {
                node: node.name().clone(),
                secs: shared.upstream.timeout.as_secs_f64(),
            };
            Err(Miss::new(Event::TimedOut, false, error))
        })
    }
}

/// A count of attempts in words, as error messages give it.
fn spelled(count: u8) -> String {
    const WORDS: [&str; 4] = ["no", "one", "two", "three"];
    WORDS
        .get(usize::from(count))
        .map_or_else(|| count.to_string(), |word| (*word).to_owned())
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

/// An error and its causes on one line: the outer message alone rarely says what went wrong.
fn chain(error: &(dyn StdError + 'static)) -> String {
    causes(error).map(ToString::to_string).collect::<Vec<_>>().join(": ")
}
