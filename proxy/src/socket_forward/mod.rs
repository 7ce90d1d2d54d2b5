//! `module_socket`: a browser's `POST` of JSON becomes one length-line frame to a backend node, and the
//! backend's reply frame becomes the HTTP response, byte for byte.
//!
//! The socket side of the pair with [`crate::http_forward`]: this file is the gateway, [`pool`] keeps
//! connections that carry one request at a time, [`pipeline`] the shared ones (`pipeline = N`).

pub mod pipeline;
pub mod pool;

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use modproxy_sdk::frame::length_line;
use modproxy_sdk::FrameError;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::balancer::attempts::{self, Attempt, Event, Miss, Unanswered};
use crate::balancer::{Balancer, Clock, Node};
use crate::body::{full, Body, BoxError};
use crate::body_budget::BodyPermit;
use crate::client_gen;
use crate::config::Upstream;
use crate::contract::{self, Cached, Described, DESCRIBE_REQUEST};
use crate::discovery::{self, Following, Members};
use crate::error_response::{accepts_html, ErrorPages};
use crate::head_shaping;
use crate::json_syntax;
use crate::lanes::{LaneLimits, LaneLoad};
use crate::request_body::{self, BodyError, BodyLimits};
use crate::request_context::{generate, RequestContext};
use crate::validate::{Invalid, Validators};
use pipeline::{FrameOutcome, FrameWire, Pipelines};
use pool::{Connection, SocketPool};

/// Which backend node answered, for the access log (a response extension; on a success, only while the
/// access log is on).
#[derive(Debug, Clone)]
pub struct ServedBy(pub Arc<str>);

/// One socket module: its nodes, their health and their idle connections.
#[derive(Debug)]
pub struct SocketGateway {
    name: String,
    upstream: Upstream,
    /// Shared with the lanes, which mask a node that breaks the pipelining rules.
    balancer: Arc<Balancer>,
    /// Shared with the task that follows the module's discovery source.
    connections: Arc<Connections>,
    _following: Following,
    /// The last `_describe` document (docs/PROTOCOL.md section 5).
    contract: std::sync::Mutex<Cached>,
    /// `validate`: the compiled schemas of the document they came from, rebuilt when it changes.
    validators: std::sync::Mutex<Option<(Bytes, Arc<Validators>)>>,
}

/// Why the gateway has no contract document to give.
enum NoDocument {
    Failed(Failure),
    NotImplemented,
    Bad(String),
}

/// How a module keeps its backend connections.
#[derive(Debug)]
enum Connections {
    /// One request at a time on each, idle ones pooled (the default).
    Pooled(SocketPool),
    /// Shared by requests in flight together (`pipeline` above 1); the pool serves a node that does not
    /// pipeline, one request at a time.
    Pipelined(Pipelines, SocketPool),
}

impl Connections {
    /// Closes what is held open to node `index`, which left the module's set.
    fn release(&self, index: usize) {
        match self {
            Connections::Pooled(pool) => pool.clear(index),
            Connections::Pipelined(lanes, pool) => {
                lanes.release(index);
                pool.clear(index);
            }
        }
    }
}

/// Why a socket request failed; each maps to one status.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)]
pub enum GatewayError {
    #[error("module '{0}' only accepts POST with a JSON body")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("request body is not UTF-8 JSON: {0}")]
    NotJson(String),
    #[error("the module's head rules cannot be applied to this request: {0}")]
    HeadRule(String),
    #[error("request of {len} bytes is too large for one frame (a length line holds at most {max})")]
    FrameTooLarge { len: usize, max: usize },
    #[error("could not connect to backend {node}: {source}")]
    Connect { node: Arc<str>, source: io::Error },
    #[error("no node of module '{module}' is reachable (tried {tried}); start a backend or check forward_pass")]
    Unreachable { module: String, tried: String },
    #[error("module '{module}' has no nodes yet: its DNS names have not resolved (see the log)")]
    NoNodesYet { module: String },
    #[error("backend {node} sent a bad reply: {source}")]
    BadReply { node: Arc<str>, source: FrameError },
    #[error("backend {node} closed the connection before replying")]
    ClosedBeforeReply { node: Arc<str> },
    #[error("backend {node} did not reply within {secs} s (upstream.timeout)")]
    Timeout { node: Arc<str>, secs: f64 },
    #[error("backend {node} broke the pipelining protocol: {what}")]
    Violation { node: Arc<str>, what: String },
    #[error("every connection to backend {node} is full ({lanes} lanes of pipeline requests, max_lanes); try again")]
    Busy { node: Arc<str>, lanes: usize },
}

impl GatewayError {
    /// The HTTP status that reports this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Body(BodyError::TooLarge(_)) | GatewayError::FrameTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            GatewayError::Body(BodyError::OverBudget(_)) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Body(BodyError::Stalled(_)) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Body(BodyError::Unreadable(_)) | GatewayError::NotJson(_) | GatewayError::HeadRule(_) => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::Connect { .. }
            | GatewayError::Unreachable { .. }
            | GatewayError::NoNodesYet { .. }
            | GatewayError::BadReply { .. }
            | GatewayError::ClosedBeforeReply { .. }
            | GatewayError::Violation { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A request whose body is read and checked, waiting for a node; it holds its bytes in the body budget.
#[derive(Debug)]
pub struct Received {
    payload: Bytes,
    wants_html: bool,
    _permit: BodyPermit,
}

impl Received {
    /// Whether the client asked for HTML (`Accept`), for an error page in its language.
    pub fn wants_html(&self) -> bool {
        self.wants_html
    }
}

/// A request that failed, and the node it was tried at last (for the access log).
type Failure = (GatewayError, Option<Arc<str>>);

impl SocketGateway {
    /// The gateway for module `name`, over the nodes its config lists.
    pub fn new(name: &str, upstream: Upstream, clock: Arc<dyn Clock>) -> Self {
        let members = discovery::fixed(discovery::listed(&upstream.nodes, &upstream.weights));
        SocketGateway::following(name, upstream, clock, members)
    }

    /// The gateway for module `name`, over the nodes `members` publishes as it changes: a node that
    /// leaves takes no new requests, its idle connections close and its lanes close once their replies
    /// are in.
    pub fn following(name: &str, upstream: Upstream, clock: Arc<dyn Clock>, members: Members) -> Self {
        let balancer = Arc::new(Balancer::for_upstream(&upstream, clock));
        let pool = SocketPool::new(upstream.keepalive, upstream.max_frame, upstream.connect_timeout);
        let connections = if upstream.pipeline > 1 {
            let limits = LaneLimits {
                max_lanes: upstream.max_lanes,
                overdue: Some(upstream.timeout.mul_f64(upstream.lane_overdue_share)),
                idle: Some(upstream.lane_idle_timeout),
            };
            let lanes = Pipelines::new(
                upstream.pipeline,
                upstream.connect_timeout,
                FrameWire::new(upstream.max_frame),
            );
            let masks = Arc::clone(&balancer);
            let lanes = lanes
                .with_limits(limits)
                .when_broken(move |index| masks.mark_failed(index));
            Connections::Pipelined(lanes, pool)
        } else {
            Connections::Pooled(pool)
        };
        let connections = Arc::new(connections);
        let (nodes, held) = (Arc::downgrade(&balancer), Arc::downgrade(&connections));
        let following = discovery::follow(members, move |set| {
            let (Some(balancer), Some(connections)) = (nodes.upgrade(), held.upgrade()) else {
                return;
            };
            for index in balancer.apply(set).left {
                connections.release(index);
            }
        });
        SocketGateway {
            _following: following,
            name: name.to_owned(),
            upstream,
            balancer,
            connections,
            contract: std::sync::Mutex::default(),
            validators: std::sync::Mutex::default(),
        }
    }

    /// Answers `GET /<module>/_describe`: the module's contract document, from the cache while it is
    /// younger than [`crate::contract::DESCRIBE_TTL`] and no node reconnected since, else asked of a node.
    pub async fn describe(&self, pages: &ErrorPages) -> Response<Body> {
        match self.served_document(pages).await {
            Ok(document) => typed(full(document), "application/json; charset=utf-8"),
            Err(refused) => refused,
        }
    }

    /// Answers `GET /<module>/_client.js`: the browser client `modproxy client --lang js` would write,
    /// made from the same document, so that a page can `import` the module's methods as functions.
    pub async fn client_script(&self, pages: &ErrorPages) -> Response<Body> {
        let document = match self.served_document(pages).await {
            Ok(document) => document,
            Err(refused) => return refused,
        };
        let source = serde_json::from_slice(&document)
            .map_err(|error| error.to_string())
            .and_then(|document| client_gen::client(&document, &self.name, client_gen::Lang::Js));
        match source {
            Ok(source) => typed(full(Bytes::from(source)), "text/javascript; charset=utf-8"),
            Err(why) => {
                tracing::error!(module = self.name, why, "no client from the _describe document");
                contract_error(StatusCode::BAD_GATEWAY, "bad_gateway", &why)
            }
        }
    }

    /// The contract document, or the error response that says why there is none.
    async fn served_document(&self, pages: &ErrorPages) -> Result<Bytes, Response<Body>> {
        self.document().await.map_err(|missing| match missing {
            NoDocument::Failed((error, node)) => self.failed(error, node, false, pages),
            NoDocument::NotImplemented => contract_error(
                StatusCode::NOT_FOUND,
                "method_not_found",
                &format!("the backend of module '{}' does not implement _describe", self.name),
            ),
            NoDocument::Bad(why) => contract_error(StatusCode::BAD_GATEWAY, "bad_gateway", &why),
        })
    }

    /// The module's balancer (for status pages and metrics).
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Connections held open to node `index`: the idle pooled ones, or, for a pipelined module, its lanes.
    pub fn open_connections(&self, index: usize) -> usize {
        match &*self.connections {
            Connections::Pooled(pool) => pool.idle_count(index),
            Connections::Pipelined(pipelines, pool) => pipelines.load(index).open + pool.idle_count(index),
        }
    }

    /// Node `index`'s lanes, for a pipelined module.
    pub fn lane_load(&self, index: usize) -> Option<LaneLoad> {
        match &*self.connections {
            Connections::Pooled(_) => None,
            Connections::Pipelined(pipelines, _) => Some(pipelines.load(index)),
        }
    }

    /// Reads an HTTP request's body under `limits` and checks it, ready for [`Self::answer`]; a request
    /// refused here gets its response at once. Its bytes stay counted in the body budget until answered.
    pub async fn receive<B>(
        &self,
        request: Request<B>,
        limits: &BodyLimits,
        pages: &ErrorPages,
    ) -> Result<Received, Response<Body>>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        // Decided now, because the request is consumed below; copying its headers would cost every request.
        let wants_html = accepts_html(request.headers());
        // Only a module that asks for shaping pays for it: a copy of the headers, a parse, a re-serialisation.
        let shaping = (!self.upstream.head.is_empty()).then(|| {
            let context = request.extensions().get::<RequestContext>().cloned();
            (
                context.unwrap_or_else(|| RequestContext {
                    peer: ([0, 0, 0, 0], 0).into(),
                    id: generate(),
                }),
                request.headers().clone(),
            )
        });
        let read = async {
            let (mut payload, permit) = read_json_body(request, &self.name, limits).await?;
            if let Some((context, headers)) = shaping {
                payload = head_shaping::shape(&payload, &self.upstream.head, &headers, &context)
                    .map_err(GatewayError::HeadRule)?;
            }
            Ok((payload, permit))
        };
        match read.await {
            Ok((payload, permit)) => {
                if self.upstream.validate {
                    if let Err(invalid) = self.check_contract(&payload).await {
                        tracing::warn!(module = self.name, %invalid, "socket request refused by validate");
                        return Err(invalid_response(&invalid));
                    }
                }
                Ok(Received {
                    payload,
                    wants_html,
                    _permit: permit,
                })
            }
            Err(error) => Err(self.failed(error, None, wants_html, pages)),
        }
    }

    /// Sends a received request to a node and answers with its reply, which names the node ([`ServedBy`])
    /// when `noted` (the access log is on: the first extension costs the response an allocation).
    pub async fn answer(&self, received: Received, pages: &ErrorPages, noted: bool) -> Response<Body> {
        match self.forward(&received.payload).await {
            Ok((reply, node)) => {
                let mut response = typed(full(reply), "application/json; charset=utf-8");
                if noted {
                    response.extensions_mut().insert(ServedBy(node));
                }
                response
            }
            Err((error, node)) => self.failed(error, node, received.wants_html, pages),
        }
    }

    /// The response (logged) to a request that failed, at `node` if it got that far.
    fn failed(
        &self,
        error: GatewayError,
        node: Option<Arc<str>>,
        wants_html: bool,
        pages: &ErrorPages,
    ) -> Response<Body> {
        let status = error.status();
        if status.is_server_error() {
            tracing::error!(module = self.name, %error, "socket request failed");
        } else {
            tracing::warn!(module = self.name, %error, "socket request refused");
        }
        let mut response = pages.for_script(wants_html, status, &error.to_string());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(node) = node {
            response.extensions_mut().insert(ServedBy(node));
        }
        response
    }

    /// Sends an already validated payload (UTF-8 JSON) to a node, as an HTTP request's body would be,
    /// and returns the reply: for callers that are not HTTP, such as raw-frame clients. The module's
    /// `head` rules apply as for HTTP, with no request headers: a `header:` field is removed, so such a
    /// caller can never supply it. Either way comes with the node that was tried last, for the
    /// access log.
    pub async fn call(&self, payload: Bytes, context: &RequestContext) -> Result<(Bytes, Arc<str>), Failure> {
        let payload = if self.upstream.head.is_empty() {
            payload
        } else {
            head_shaping::shape(&payload, &self.upstream.head, &http::HeaderMap::new(), context)
                .map_err(|e| (GatewayError::HeadRule(e), None))?
        };
        self.forward(&payload).await.inspect_err(|(error, _)| {
            tracing::error!(module = self.name, %error, "socket request failed");
        })
    }

    async fn forward(&self, payload: &Bytes) -> Result<(Bytes, Arc<str>), Failure> {
        fits_a_frame(payload.len()).map_err(|e| (e, None))?;
        let mut request = SocketRequest { gateway: self, payload };
        // A POST may have been acted on: never sent twice unless the backend provably did not read it.
        match attempts::run(&self.balancer, &self.name, false, &mut request).await {
            Ok(answered) => Ok((answered.answer, self.balancer.node(answered.index).name().clone())),
            Err(Unanswered::Failed { error, index, .. }) => {
                Err((error, Some(self.balancer.node(index).name().clone())))
            }
            // An empty set: discovery has found nothing yet (a source never empties a set it had).
            Err(Unanswered::NoNode(tried)) if tried.is_empty() => Err((
                GatewayError::NoNodesYet {
                    module: self.name.clone(),
                },
                None,
            )),
            Err(Unanswered::NoNode(tried)) => Err((
                GatewayError::Unreachable {
                    module: self.name.clone(),
                    tried: attempts::describe(&self.balancer, &tried),
                },
                None,
            )),
        }
    }

    /// One request on a shared connection (`pipeline`); like [`Self::send`], never sent twice once written.
    async fn send_pipelined(&self, pipelines: &Pipelines, index: usize, node: &Node, payload: &Bytes) -> Tried {
        let outcome = tokio::time::timeout(
            self.upstream.timeout,
            pipelines.call(index, node.address(), payload.clone()),
        )
        .await;
        let name = || node.name().clone();
        // A lane is a kept connection: a request it closed on before writing may be sent again.
        Err(match outcome {
            Ok(FrameOutcome::Reply(reply)) => return Ok(reply),
            Ok(FrameOutcome::Unsent(Some(full))) if full.kind() == io::ErrorKind::WouldBlock => Miss::new(
                Event::Busy,
                true,
                GatewayError::Busy {
                    node: name(),
                    lanes: self.upstream.max_lanes,
                },
            ),
            Ok(FrameOutcome::Violation(what)) => {
                Miss::new(Event::Failed, true, GatewayError::Violation { node: name(), what })
            }
            Ok(FrameOutcome::Unsent(Some(source))) => {
                Miss::new(Event::Refused, false, GatewayError::Connect { node: name(), source })
            }
            Ok(FrameOutcome::Unsent(None)) => Miss::new(Event::Unsent, true, closed_unread(node)),
            Ok(FrameOutcome::Closed) => Miss::new(
                Event::Unanswered,
                true,
                GatewayError::ClosedBeforeReply { node: name() },
            ),
            Ok(FrameOutcome::BadReply(source)) => {
                Miss::new(Event::Failed, true, GatewayError::BadReply { node: name(), source })
            }
            Err(_) => Miss::new(Event::TimedOut, true, self.timed_out(node)),
        })
    }

    /// One request/reply on a connection. Whatever happens after the first byte is written, the request
    /// is never sent again, since the backend may have acted on it, unless a reset proves it did not.
    async fn send(
        &self,
        pool: &SocketPool,
        mut connection: Connection,
        index: usize,
        node: &Node,
        payload: &Bytes,
    ) -> Tried {
        let reused = connection.is_reused();
        let exchange = async {
            write_frame(connection.framed.get_mut(), payload).await?;
            connection.framed.next().await.transpose()
        };
        let outcome = tokio::time::timeout(self.upstream.timeout, exchange).await;
        let name = || node.name().clone();
        Err(match outcome {
            Ok(Ok(Some(reply))) => {
                // The reply shares the read buffer's allocation, which the buffer would keep alive (and
                // resident) for as long as the connection stays pooled: a large one goes with the reply.
                if reply.len() > KEEP_READ_BUFFER_AFTER && connection.framed.read_buffer().is_empty() {
                    *connection.framed.read_buffer_mut() = BytesMut::new();
                }
                pool.put(index, connection);
                return Ok(reply);
            }
            Err(_) => Miss::new(Event::TimedOut, reused, self.timed_out(node)),
            // A reset before any byte of a reply means the backend closed with the request unread (it
            // resets only a connection whose received bytes it never read): sending it again is safe.
            // That is the race with a backend that closes kept connections: it replied, we reused the
            // connection, and it closed it just after.
            Ok(Err(FrameError::Io(error)))
                if reused
                    && matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
                    && connection.nothing_received() =>
            {
                Miss::new(Event::Unsent, reused, closed_unread(node))
            }
            // The same race seen as a clean end: the backend's FIN was already on its way when the request
            // went out, and its kernel reset the request's bytes, which no process read. The FIN is what
            // the read reports; the reset waits in the socket's error.
            Ok(Ok(None)) if reused && connection.nothing_received() && reset_after_close(&connection) => {
                Miss::new(Event::Unsent, reused, closed_unread(node))
            }
            Ok(Ok(None)) | Ok(Err(FrameError::Io(_))) | Ok(Err(FrameError::Truncated { .. })) => Miss::new(
                Event::Unanswered,
                reused,
                GatewayError::ClosedBeforeReply { node: name() },
            ),
            Ok(Err(source)) => Miss::new(Event::Failed, reused, GatewayError::BadReply { node: name(), source }),
        })
    }

    fn timed_out(&self, node: &Node) -> GatewayError {
        GatewayError::Timeout {
            node: node.name().clone(),
            secs: self.upstream.timeout.as_secs_f64(),
        }
    }

    /// The module's contract document: the cached one while fresh, else asked of a node.
    async fn document(&self) -> Result<Bytes, NoDocument> {
        let generation = self.node_generation();
        if let Some(document) = self
            .contract
            .lock()
            .expect("contract lock")
            .fresh(Instant::now(), generation)
        {
            return Ok(document);
        }
        let (reply, _) = self
            .forward(&Bytes::from_static(DESCRIBE_REQUEST))
            .await
            .map_err(NoDocument::Failed)?;
        match contract::read_reply(reply) {
            Described::Document(document) => {
                let mut held = self.contract.lock().expect("contract lock");
                held.store(document.clone(), Instant::now(), generation);
                Ok(document)
            }
            Described::NotImplemented => Err(NoDocument::NotImplemented),
            Described::Bad(why) => {
                tracing::error!(module = self.name, why, "bad _describe reply");
                Err(NoDocument::Bad(why))
            }
        }
    }

    /// A count that moves whenever a node may have been replaced since: one was masked, the set
    /// changed, or a backend closed a connection the proxy kept (see [`Cached`]).
    fn node_generation(&self) -> u64 {
        let closed = match &*self.connections {
            Connections::Pooled(pool) => pool.closed_by_backend(),
            Connections::Pipelined(lanes, pool) => lanes.closed_by_backend() + pool.closed_by_backend(),
        };
        self.balancer.generation() + closed
    }

    /// `validate`: checks `payload` against the contract. Without a usable document the request passes
    /// (logged): the backend still answers it, as it would with `validate` off.
    async fn check_contract(&self, payload: &Bytes) -> Result<(), Invalid> {
        let document = match self.document().await {
            Ok(document) => document,
            Err(NoDocument::Failed((error, _))) => {
                tracing::warn!(module = self.name, %error, "validate: no contract document, request not checked");
                return Ok(());
            }
            Err(NoDocument::NotImplemented) => {
                tracing::warn!(module = self.name, "validate: the backend does not implement _describe");
                return Ok(());
            }
            Err(NoDocument::Bad(_)) => return Ok(()),
        };
        let validators = {
            let mut held = self.validators.lock().expect("validators lock");
            match &*held {
                Some((built_from, validators)) if *built_from == document => Arc::clone(validators),
                _ => match Validators::build(&document) {
                    Ok(validators) => {
                        let validators = Arc::new(validators);
                        *held = Some((document, Arc::clone(&validators)));
                        validators
                    }
                    Err(why) => {
                        tracing::error!(
                            module = self.name,
                            why,
                            "validate: the contract's schemas do not compile"
                        );
                        return Ok(());
                    }
                },
            }
        };
        validators.check(payload)
    }
}

/// `{"error": {"status": N, "code": "…", "message": "…"}}`: the proxy's own error, with the code a
/// client branches on.
fn contract_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "status": status.as_u16(), "code": code, "message": message } });
    json_response(status, &body)
}

/// 400 for a request `validate` refused: the field and what it should be, for the client to show.
fn invalid_response(invalid: &Invalid) -> Response<Body> {
    let body = serde_json::json!({ "error": {
        "status": 400,
        "code": "bad_request",
        "message": invalid.to_string(),
        "method": invalid.method,
        "field": invalid.field,
        "expected": invalid.expected,
    } });
    json_response(StatusCode::BAD_REQUEST, &body)
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = typed(full(body.to_string()), "application/json; charset=utf-8");
    *response.status_mut() = status;
    response
}

/// A 200 response of `body` with its `Content-Type`.
fn typed(body: Body, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Refuses a payload that a length line cannot announce: the client's fault, not a node's (413).
fn fits_a_frame(len: usize) -> Result<(), GatewayError> {
    match length_line(len) {
        Err(FrameError::TooLarge { len, max }) => Err(GatewayError::FrameTooLarge { len, max }),
        _ => Ok(()),
    }
}

/// Writes one request frame straight to the socket. Through the codec the payload would first be copied
/// whole into the connection's write buffer: twice a body's memory while it is sent, and a buffer that
/// keeps that capacity for as long as the connection stays pooled.
async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> Result<(), FrameError> {
    let line = length_line(payload.len())?;
    // One vectored write for a small frame, as the codec's single buffer gave.
    let mut frame = (&line[..]).chain(payload);
    stream.write_all_buf(&mut frame).await?;
    Ok(())
}

/// A pooled connection's read buffer is dropped after a reply larger than this (it would hold the reply's
/// allocation); after smaller ones it is kept, saving an allocation per request.
const KEEP_READ_BUFFER_AFTER: usize = 64 * 1024;

/// What one try at a node yields.
type Tried = Result<Bytes, Miss<GatewayError>>;

/// Whether the backend reset the connection after closing it: proof that the request written last was
/// never read, since a backend that read it and then closed would have sent no reset.
fn reset_after_close(connection: &Connection) -> bool {
    matches!(
        connection.framed.get_ref().take_error(),
        Ok(Some(error)) if error.kind() == io::ErrorKind::ConnectionReset
    )
}

/// The error of a request a kept connection closed on before the backend read it (logged, not answered:
/// such a request is sent again, or goes on to another node).
fn closed_unread(node: &Node) -> GatewayError {
    GatewayError::Connect {
        node: node.name().clone(),
        source: io::Error::other("the connection closed before the request was read"),
    }
}

/// One socket request going through the attempt loop.
struct SocketRequest<'a> {
    gateway: &'a SocketGateway,
    payload: &'a Bytes,
}

impl Attempt for SocketRequest<'_> {
    type Answer = Bytes;
    type Error = GatewayError;

    async fn attempt(&mut self, index: usize, node: &Node, _resend: bool) -> Tried {
        let gateway = self.gateway;
        match &*gateway.connections {
            Connections::Pipelined(pipelines, _) if pipelines.pipelines(index) => {
                gateway.send_pipelined(pipelines, index, node, self.payload).await
            }
            Connections::Pooled(pool) | Connections::Pipelined(_, pool) => {
                match pool.get(index, node.address()).await {
                    Ok(connection) => gateway.send(pool, connection, index, node, self.payload).await,
                    Err(source) => Err(Miss::new(
                        Event::Refused,
                        false,
                        GatewayError::Connect {
                            node: node.name().clone(),
                            source,
                        },
                    )),
                }
            }
        }
    }

    fn masked(&mut self, index: usize) {
        // Idle connections to a failed node are suspect; shared ones close on their own when they fail.
        let (Connections::Pooled(pool) | Connections::Pipelined(_, pool)) = &*self.gateway.connections;
        pool.clear(index);
    }
}

/// Reads the body under `limits` (refusing one over `max_body` as soon as that is known) and checks it is
/// UTF-8 JSON without building a tree: the proxy passes it on byte for byte.
async fn read_json_body<B>(
    request: Request<B>,
    module: &str,
    limits: &BodyLimits,
) -> Result<(Bytes, BodyPermit), GatewayError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if request.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed(module.to_owned()));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (body, permit) = request_body::read_whole(request.into_body(), declared, limits).await?;
    std::str::from_utf8(&body).map_err(|e| GatewayError::NotJson(e.to_string()))?;
    json_syntax::check(&body).map_err(|e| GatewayError::NotJson(e.describe(&body)))?;
    Ok((body, permit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_no_length_line_can_announce_is_refused_as_too_large() {
        assert!(fits_a_frame(modproxy_sdk::frame::MAX_ENCODABLE).is_ok());
        let error = fits_a_frame(modproxy_sdk::frame::MAX_ENCODABLE + 1).unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    }
}
