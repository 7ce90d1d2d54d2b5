//! Clients that speak the length-line protocol to a backend: [`Client`] on tokio and [`BlockingClient`]
//! on `std::net`, for tests and for a backend that calls another backend.
//!
//! Both send one request and wait for its reply before the next, as the proxy does, so a connection never
//! has more than one request in flight. An `{"error": {"code": …, "message": …}}` reply comes back as
//! [`ClientError::Method`], so callers handle a backend's refusal the same way as a broken connection.
//!
//! Connected to the proxy's HTTP port instead of a backend (with `[server] raw_frames = true`), either
//! client reaches every socket module through the proxy's balancing: [`Client::call_module`] names the
//! module in `head.module`, and the proxy's own refusals (`module_not_found`, `bad_gateway`,
//! `gateway_timeout`, …) arrive as [`ClientError::Method`] too.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs as StdToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::Framed;

use crate::codec::LengthLineCodec;
use crate::envelope::Request;
use crate::error::MethodError;
use crate::frame::{read_frame, write_frame, FrameError, DEFAULT_MAX_FRAME};

/// How long [`Client::connect`] and [`BlockingClient::connect`] wait for a connection, as the proxy's
/// `connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a call waits for its reply, as the proxy's `timeout` default.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call did not produce a reply value.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address did not resolve to anything.
    #[error("could not resolve the backend address: {0}")]
    Resolve(#[source] io::Error),
    /// No address accepted the connection.
    #[error("could not connect to the backend at {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Connecting took longer than the connect timeout.
    #[error("no connection to the backend at {addr} within {timeout:?}")]
    ConnectTimeout {
        /// The address that did not answer.
        addr: SocketAddr,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The reply did not arrive within the reply timeout. The connection is abandoned: a late reply
    /// would otherwise be taken for the answer to the next call.
    #[error("no reply from the backend within {0:?}")]
    Timeout(Duration),
    /// The backend closed the connection before replying.
    #[error("the backend closed the connection before replying")]
    Closed,
    /// An earlier call on this client failed or was cancelled half-way, so replies can no longer be
    /// matched to requests. Connect again.
    #[error("the connection was abandoned after an earlier failed or cancelled call; connect again")]
    Abandoned,
    /// The backend broke the wire format, or the connection failed.
    #[error("bad frame from the backend: {0}")]
    Frame(#[from] FrameError),
    /// The request's `data` could not be serialised to JSON.
    #[error("the request data is not serialisable to JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The reply payload is not JSON.
    #[error("the backend's reply is not JSON: {0}")]
    BadReply(#[source] serde_json::Error),
    /// The backend answered with an error reply.
    #[error("the backend replied with an error: {0}")]
    Method(#[from] MethodError),
}

impl ClientError {
    /// The error reply's code (`"not_found"`, `"method_not_found"`, …) when the backend answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Method(error) => Some(&error.code),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(error: io::Error) -> Self {
        ClientError::Frame(FrameError::Io(error))
    }
}

/// An async client over one keep-alive connection.
///
/// ```no_run
/// # async fn example() -> Result<(), modproxy_sdk::ClientError> {
/// use modproxy_sdk::Client;
/// use serde_json::json;
///
/// let mut client = Client::connect("127.0.0.1:21230").await?;
/// let todo = client.call("add", json!({"title": "write docs"})).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    framed: Framed<TcpStream, LengthLineCodec>,
    reply_timeout: Duration,
    /// Set while a call is between sending and receiving; still set at the next call means the previous
    /// one failed or was dropped half-way and the stream is out of step.
    in_flight: bool,
}

impl Client {
    /// Connects with the [`DEFAULT_CONNECT_TIMEOUT`].
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_timeout(addr, DEFAULT_CONNECT_TIMEOUT).await
    }

    /// Connects, trying each address `addr` resolves to, each for at most `timeout`.
    pub async fn connect_timeout(addr: impl ToSocketAddrs, timeout: Duration) -> Result<Client, ClientError> {
        let mut last = None;
        for candidate in tokio::net::lookup_host(addr).await.map_err(ClientError::Resolve)? {
            match tokio::time::timeout(timeout, TcpStream::connect(candidate)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Client {
                        framed: Framed::new(stream, LengthLineCodec::new(DEFAULT_MAX_FRAME)),
                        reply_timeout: DEFAULT_REPLY_TIMEOUT,
                        in_flight: false,
                    });
                }
                Ok(Err(source)) => {
                    last = Some(ClientError::Connect {
                        addr: candidate,
                        source,
                    })
                }
                Err(_) => {
                    last = Some(ClientError::ConnectTimeout {
                        addr: candidate,
                        timeout,
                    })
                }
            }
        }
        Err(last.unwrap_or_else(no_address))
    }

    /// How long each call waits for its reply (default [`DEFAULT_REPLY_TIMEOUT`]).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Largest reply payload accepted (default [`DEFAULT_MAX_FRAME`]).
    pub fn max_frame(mut self, max_frame: usize) -> Self {
        *self.framed.codec_mut() = LengthLineCodec::new(max_frame);
        self
    }

    /// The backend's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.framed.get_ref().peer_addr()
    }

    /// Calls `method` with `data` and returns the reply; an error reply becomes [`ClientError::Method`].
    pub async fn call(&mut self, method: &str, data: impl Serialize) -> Result<Value, ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        self.call_request(&Request::new(method, data)).await
    }

    /// Calls `method` of socket module `module` through the proxy's raw-frame port.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), modproxy_sdk::ClientError> {
    /// use modproxy_sdk::Client;
    /// use serde_json::json;
    ///
    /// // The proxy's HTTP port, with `[server] raw_frames = true`.
    /// let mut proxy = Client::connect("127.0.0.1:8080").await?;
    /// let todo = proxy.call_module("todo", "add", json!({"title": "write docs"})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call_module(
        &mut self,
        module: &str,
        method: &str,
        data: impl Serialize,
    ) -> Result<Value, ClientError> {
        self.call_request(&module_request(module, method, data)?).await
    }

    /// Calls with a whole request, for a caller that sets `head.token` or other head fields.
    pub async fn call_request(&mut self, request: &Request) -> Result<Value, ClientError> {
        let reply = self.call_raw(&request.to_vec()).await?;
        reply_value(&reply)
    }

    /// Sends one payload as it is and returns the reply payload as it is: no JSON on either side.
    pub async fn call_raw(&mut self, payload: &[u8]) -> Result<Bytes, ClientError> {
        if self.in_flight {
            return Err(ClientError::Abandoned);
        }
        self.in_flight = true;
        let timeout = self.reply_timeout;
        let exchange = async {
            self.framed.send(payload).await?;
            match self.framed.next().await {
                Some(reply) => Ok(reply?),
                None => Err(ClientError::Closed),
            }
        };
        let reply = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        self.in_flight = false;
        Ok(reply)
    }
}

/// A blocking client over one keep-alive `std::net` connection, for code without a tokio runtime.
///
/// Do not use it on a tokio worker thread: each call blocks the thread until the reply arrives.
#[derive(Debug)]
pub struct BlockingClient {
    reader: BufReader<StdTcpStream>,
    writer: StdTcpStream,
    max_frame: usize,
    reply_timeout: Duration,
    in_flight: bool,
}

impl BlockingClient {
    /// Connects with the [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect(addr: impl StdToSocketAddrs) -> Result<BlockingClient, ClientError> {
        BlockingClient::connect_timeout(addr, DEFAULT_CONNECT_TIMEOUT)
    }

    /// Connects, trying each address `addr` resolves to, each for at most `timeout`.
    pub fn connect_timeout(addr: impl StdToSocketAddrs, timeout: Duration) -> Result<BlockingClient, ClientError> {
        let mut last = None;
        for candidate in addr.to_socket_addrs().map_err(ClientError::Resolve)? {
            match StdTcpStream::connect_timeout(&candidate, timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream.set_read_timeout(Some(DEFAULT_REPLY_TIMEOUT))?;
                    stream.set_write_timeout(Some(DEFAULT_REPLY_TIMEOUT))?;
                    let writer = stream.try_clone()?;
                    return Ok(BlockingClient {
                        reader: BufReader::new(stream),
                        writer,
                        max_frame: DEFAULT_MAX_FRAME,
                        reply_timeout: DEFAULT_REPLY_TIMEOUT,
                        in_flight: false,
                    });
                }
                Err(source) if source.kind() == io::ErrorKind::TimedOut => {
                    last = Some(ClientError::ConnectTimeout {
                        addr: candidate,
                        timeout,
                    })
                }
                Err(source) => {
                    last = Some(ClientError::Connect {
                        addr: candidate,
                        source,
                    })
                }
            }
        }
        Err(last.unwrap_or_else(no_address))
    }

    /// How long each call waits for its reply (default [`DEFAULT_REPLY_TIMEOUT`]). The operating system
    /// applies it to each read, so a backend that trickles its reply byte by byte can take longer. A zero
    /// duration is refused by the operating system and returns an error.
    pub fn reply_timeout(mut self, timeout: Duration) -> Result<Self, ClientError> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.writer.set_write_timeout(Some(timeout))?;
        self.reply_timeout = timeout;
        Ok(self)
    }

    /// Largest reply payload accepted (default [`DEFAULT_MAX_FRAME`]).
    pub fn max_frame(mut self, max_frame: usize) -> Self {
        self.max_frame = max_frame;
        self
    }

    /// The backend's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.writer.peer_addr()
    }

    /// Calls `method` with `data` and returns the reply; an error reply becomes [`ClientError::Method`].
    pub fn call(&mut self, method: &str, data: impl Serialize) -> Result<Value, ClientError> {
        let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
        self.call_request(&Request::new(method, data))
    }

    /// Calls `method` of socket module `module` through the proxy's raw-frame port (see
    /// [`Client::call_module`]).
    pub fn call_module(&mut self, module: &str, method: &str, data: impl Serialize) -> Result<Value, ClientError> {
        self.call_request(&module_request(module, method, data)?)
    }

    /// Calls with a whole request, for a caller that sets `head.token` or other head fields.
    pub fn call_request(&mut self, request: &Request) -> Result<Value, ClientError> {
        let reply = self.call_raw(&request.to_vec())?;
        reply_value(&reply)
    }

    /// Sends one payload as it is and returns the reply payload as it is: no JSON on either side.
    pub fn call_raw(&mut self, payload: &[u8]) -> Result<Vec<u8>, ClientError> {
        if self.in_flight {
            return Err(ClientError::Abandoned);
        }
        self.in_flight = true;
        // One write for line and payload: two small writes would cost two segments with nodelay.
        let mut wire = Vec::with_capacity(crate::frame::LENGTH_LINE_LEN + payload.len());
        write_frame(&mut wire, payload)?;
        let timeout = self.reply_timeout;
        let timed_out = |error: FrameError| match error {
            FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                ClientError::Timeout(timeout)
            }
            other => ClientError::Frame(other),
        };
        self.writer.write_all(&wire).map_err(|e| timed_out(e.into()))?;
        let reply = read_frame(&mut self.reader, self.max_frame)
            .map_err(timed_out)?
            .ok_or(ClientError::Closed)?;
        self.in_flight = false;
        Ok(reply)
    }
}

fn module_request(module: &str, method: &str, data: impl Serialize) -> Result<Request, ClientError> {
    let data = serde_json::to_value(data).map_err(ClientError::Encode)?;
    let mut request = Request::new(method, data);
    request.head = request.head.with_module(module);
    Ok(request)
}

fn no_address() -> ClientError {
    ClientError::Resolve(io::Error::new(
        io::ErrorKind::NotFound,
        "the address resolved to nothing",
    ))
}

/// Turns a reply payload into a value, or into [`ClientError::Method`] when it is an SDK error reply:
/// an object whose only key is `error`, holding a string `code`.
fn reply_value(reply: &[u8]) -> Result<Value, ClientError> {
    let value: Value = serde_json::from_slice(reply).map_err(ClientError::BadReply)?;
    if let Some(error) = as_method_error(&value) {
        return Err(ClientError::Method(error));
    }
    Ok(value)
}

fn as_method_error(value: &Value) -> Option<MethodError> {
    let object = value.as_object().filter(|o| o.len() == 1)?;
    let error = object.get("error")?.as_object()?;
    let code = error.get("code")?.as_str()?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
    Some(MethodError::new(code.to_owned(), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_replies_become_method_errors() {
        let err = reply_value(br#"{"error":{"code":"not_found","message":"no todo 3"}}"#).unwrap_err();
        assert_eq!(err.code(), Some("not_found"));
        assert!(matches!(err, ClientError::Method(ref e) if e.message == "no todo 3"));
    }

    #[test]
    fn values_that_merely_mention_error_are_values() {
        for reply in [
            json!({"error": "just a string"}),
            json!({"error": {"code": "x"}, "other": 1}),
            json!({"error": {"status": 502, "message": "proxy"}}),
            json!([{"error": {"code": "x"}}]),
        ] {
            let bytes = serde_json::to_vec(&reply).unwrap();
            assert_eq!(reply_value(&bytes).unwrap(), reply);
        }
    }

    #[test]
    fn module_requests_name_the_module_in_head() {
        let request = module_request("todo", "add", json!({"title": "x"})).unwrap();
        let wire: Value = serde_json::from_slice(&request.to_vec()).unwrap();
        assert_eq!(
            wire,
            json!({"head": {"method": "add", "module": "todo"}, "data": {"title": "x"}})
        );
    }

    #[test]
    fn non_json_reply_is_bad_reply() {
        assert!(matches!(reply_value(b"nope"), Err(ClientError::BadReply(_))));
    }
}
