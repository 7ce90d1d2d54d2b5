//! A small etcd v3 client over etcd's JSON gateway (`/v3/...` on the client port), enough for
//! self-registration and for the proxy's watcher: lease grant / keep-alive / revoke, put, prefix range
//! and prefix watch.
//!
//! The gateway rather than gRPC: it needs no `protoc` and no tonic, so a backend built with the `etcd`
//! feature compiles from a plain release, and the Python and Node wheels stay small. Keys and values
//! travel base64-encoded; 64-bit numbers travel as JSON strings.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// How long one unary call (grant, put, range, keep-alive, revoke) may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection whose peer stays silent this long is probed, and given up after three unanswered probes
/// this far apart: a watch on an etcd that vanished without a reset ends within about 20 s.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The endpoint is not an `http://host:port` URL.
    #[error("etcd endpoint '{0}' is not http://host:port")]
    Endpoint(String),
    /// No connection, a reset, or a reply that did not come in time.
    #[error("etcd at {endpoint} unreachable: {reason}")]
    Unreachable {
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// etcd answered with an error or with something that is not its JSON.
    #[error("etcd at {endpoint} refused {path}: {reason}")]
    Refused {
        /// The endpoint tried.
        endpoint: String,
        /// The gateway path called.
        path: &'static str,
        /// etcd's message.
        reason: String,
    },
}

/// One etcd cluster, reached through any of its endpoints: each call tries them in turn from the one
/// that answered last.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    current: usize,
}

#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    authority: String,
}

/// A change under a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// `key` now holds `value`.
    Put {
        /// The key, as bytes turned to text (lossy).
        key: String,
        /// The value, as text (lossy).
        value: String,
    },
    /// `key` is gone (deleted, or its lease ended).
    Delete {
        /// The key.
        key: String,
    },
}

impl EtcdClient {
    /// A client for the cluster at `endpoints` (`http://host:port` each); no connection is made yet.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<EtcdClient, EtcdError> {
        let endpoints = endpoints
            .iter()
            .map(|url| {
                let url = url.as_ref().trim_end_matches('/');
                let authority = url
                    .strip_prefix("http://")
                    .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                    .ok_or_else(|| EtcdError::Endpoint(url.to_owned()))?;
                Ok(Endpoint {
                    url: url.to_owned(),
                    authority: authority.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::Endpoint(String::new()));
        }
        Ok(EtcdClient { endpoints, current: 0 })
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1) and returns its id.
    pub async fn grant(&mut self, ttl: Duration) -> Result<i64, EtcdError> {
        let ttl = ttl.as_secs().max(1);
        let reply = self.call("/v3/lease/grant", json!({ "TTL": ttl.to_string() })).await?;
        Ok(int(&reply["ID"]))
    }

    /// Renews `lease`; returns the TTL etcd granted, or `None` when the lease is gone (expired or revoked).
    pub async fn keep_alive(&mut self, lease: i64) -> Result<Option<u64>, EtcdError> {
        let reply = self
            .call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
            .await?;
        // The gateway wraps stream replies in `result`; a lease that is gone comes back with TTL 0 or none.
        let ttl = int(&reply["result"]["TTL"]);
        Ok((ttl > 0).then_some(ttl as u64))
    }

    /// Revokes `lease`: every key attached to it goes at once.
    pub async fn revoke(&mut self, lease: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(drop)
    }

    /// Sets `key` to `value`, attached to `lease` (0: none).
    pub async fn put(&mut self, key: &str, value: &str, lease: i64) -> Result<(), EtcdError> {
        let body = json!({ "key": B64.encode(key), "value": B64.encode(value), "lease": lease.to_string() });
        self.call("/v3/kv/put", body).await.map(drop)
    }

    /// Every key under `prefix` with its value, and the store's revision the answer is from.
    pub async fn range_prefix(&mut self, prefix: &str) -> Result<(BTreeMap<String, String>, i64), EtcdError> {
        let body = json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix.as_bytes())) });
        let reply = self.call("/v3/kv/range", body).await?;
        let kvs = reply["kvs"].as_array().map(Vec::as_slice).unwrap_or_default();
        let members = kvs.iter().map(|kv| (text(&kv["key"]), text(&kv["value"]))).collect();
        Ok((members, int(&reply["header"]["revision"])))
    }

    /// Watches `prefix` from revision `from` on; the returned stream yields its changes in order and
    /// ends (with an error) when the connection does.
    pub async fn watch_prefix(&mut self, prefix: &str, from: i64) -> Result<Watch, EtcdError> {
        let body = json!({ "create_request": {
            "key": B64.encode(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
            "start_revision": from.to_string(),
        }});
        let (endpoint, body) = self.open("/v3/watch", body).await?;
        Ok(Watch {
            endpoint,
            body,
            buffer: BytesMut::new(),
        })
    }

    /// A unary call: the first JSON object of the reply.
    async fn call(&mut self, path: &'static str, body: Value) -> Result<Value, EtcdError> {
        let (endpoint, body) = self.open(path, body).await?;
        let mut watch = Watch {
            endpoint,
            body,
            buffer: BytesMut::new(),
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, watch.next_object())
            .await
            .map_err(|_| unreachable(&watch.endpoint, "no reply in time"))??;
        if let Some(message) = reply.get("error").or_else(|| reply.get("message")) {
            return Err(EtcdError::Refused {
                endpoint: watch.endpoint,
                path,
                reason: message.as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(reply)
    }

    /// Sends `body` to `path` on the first endpoint that takes it; returns the reply's body.
    async fn open(&mut self, path: &'static str, body: Value) -> Result<(String, Incoming), EtcdError> {
        let mut last = None;
        for attempt in 0..self.endpoints.len() {
            let index = (self.current + attempt) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            match tokio::time::timeout(CALL_TIMEOUT, post(endpoint, path, &body)).await {
                Ok(Ok(reply)) => {
                    self.current = index;
                    return Ok((endpoint.url.clone(), reply));
                }
                Ok(Err(error)) => last = Some(error),
                Err(_) => last = Some(unreachable(&endpoint.url, "no answer in time")),
            }
        }
        Err(last.expect("at least one endpoint"))
    }
}

/// A watch's stream of changes.
#[derive(Debug)]
pub struct Watch {
    endpoint: String,
    body: Incoming,
    buffer: BytesMut,
}

impl Watch {
    /// The next batch of changes; an error when the watch ended (connection lost, or etcd cancelled it
    /// because the revision was compacted), after which the caller ranges again.
    pub async fn next(&mut self) -> Result<Vec<WatchEvent>, EtcdError> {
        loop {
            let message = self.next_object().await?;
            let result = &message["result"];
            if result["canceled"].as_bool() == Some(true) || result.get("compact_revision").is_some() {
                let reason = result["cancel_reason"].as_str().unwrap_or("watch cancelled").to_owned();
                return Err(EtcdError::Refused {
                    endpoint: self.endpoint.clone(),
                    path: "/v3/watch",
                    reason,
                });
            }
            if let Some(error) = message.get("error") {
                let reason = error["message"].as_str().unwrap_or("watch failed").to_owned();
                return Err(EtcdError::Refused {
                    endpoint: self.endpoint.clone(),
                    path: "/v3/watch",
                    reason,
                });
            }
            let events = watch_events(result);
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    /// The next whole JSON object of the reply body, however the gateway chunked it.
    async fn next_object(&mut self) -> Result<Value, EtcdError> {
        loop {
            if let Some(object) = take_object(&mut self.buffer) {
                return Ok(object);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(error)) => return Err(unreachable(&self.endpoint, &error.to_string())),
                None => return Err(unreachable(&self.endpoint, "reply ended")),
            }
        }
    }
}

/// The events of one watch reply (`result` of the gateway's envelope).
fn watch_events(result: &Value) -> Vec<WatchEvent> {
    let events = result["events"].as_array().map(Vec::as_slice).unwrap_or_default();
    events
        .iter()
        .map(|event| {
            let key = text(&event["kv"]["key"]);
            // The enum's default (PUT) is left out of the JSON.
            match event["type"].as_str() {
                Some("DELETE") => WatchEvent::Delete { key },
                _ => WatchEvent::Put {
                    key,
                    value: text(&event["kv"]["value"]),
                },
            }
        })
        .collect()
}

/// Takes one whole JSON value off the front of `buffer`, if one is there.
fn take_object(buffer: &mut BytesMut) -> Option<Value> {
    let mut values = serde_json::Deserializer::from_slice(buffer).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => {
            let used = values.byte_offset();
            buffer.advance(used);
            Some(value)
        }
        // Incomplete: wait for more. Garbage: drop it so the stream can go on.
        Some(Err(error)) if error.is_eof() => None,
        Some(Err(_)) => {
            buffer.clear();
            None
        }
        None => None,
    }
}

/// The end of the key range that holds exactly the keys starting with `prefix` (etcd's `range_end`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on, which etcd spells as a single zero byte.
    vec![0]
}

/// A 64-bit number that the gateway sends as a string (or, from older versions, as a number).
fn int(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(number) => number.as_i64().unwrap_or(0),
        _ => 0,
    }
}

/// A base64 field as text.
fn text(value: &Value) -> String {
    let bytes = B64.decode(value.as_str().unwrap_or_default()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn unreachable(endpoint: &str, reason: &str) -> EtcdError {
    EtcdError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    }
}

/// A connection that probes a silent peer (see [`KEEPALIVE`]).
async fn connect(authority: &str) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(authority).await?;
    let probes = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE)
        .with_interval(KEEPALIVE)
        .with_retries(3);
    socket2::SockRef::from(&stream).set_tcp_keepalive(&probes)?;
    Ok(stream)
}

/// One POST on a fresh HTTP/1.1 connection: the calls are seconds apart, so a pool would buy nothing.
async fn post(endpoint: &Endpoint, path: &'static str, body: &Value) -> Result<Incoming, EtcdError> {
    let fail = |reason: String| unreachable(&endpoint.url, &reason);
    let stream = connect(&endpoint.authority).await.map_err(|e| fail(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, &endpoint.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| fail(e.to_string()))?;
    let reply = sender.send_request(request).await.map_err(|e| fail(e.to_string()))?;
    if !reply.status().is_success() {
        let status = reply.status();
        let text = reply
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let reason = format!("{status}: {}", String::from_utf8_lossy(&text).trim());
        return Err(EtcdError::Refused {
            endpoint: endpoint.url.clone(),
            path,
            reason,
        });
    }
    Ok(reply.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_where_its_last_byte_is_one_higher() {
        assert_eq!(prefix_end(b"/m/a/"), b"/m/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn objects_are_taken_whole_however_they_were_chunked() {
        let mut buffer = BytesMut::from(&b"{\"result\":{\"a\":1}}\n{\"resu"[..]);
        assert_eq!(take_object(&mut buffer), Some(json!({"result": {"a": 1}})));
        assert_eq!(take_object(&mut buffer), None);
        buffer.extend_from_slice(b"lt\":2}");
        assert_eq!(take_object(&mut buffer), Some(json!({"result": 2})));
        assert!(buffer.iter().all(u8::is_ascii_whitespace));
    }

    #[test]
    fn a_watch_reply_becomes_puts_and_deletes() {
        let result = json!({"events": [
            {"kv": {"key": B64.encode("/p/a"), "value": B64.encode("10.0.0.1:7000")}},
            {"type": "DELETE", "kv": {"key": B64.encode("/p/b")}},
        ]});
        assert_eq!(
            watch_events(&result),
            vec![
                WatchEvent::Put {
                    key: "/p/a".into(),
                    value: "10.0.0.1:7000".into()
                },
                WatchEvent::Delete { key: "/p/b".into() },
            ]
        );
    }

    #[tokio::test]
    async fn connections_to_etcd_probe_a_silent_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = connect(&listener.local_addr().unwrap().to_string()).await.unwrap();
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(EtcdClient::new(&["http://127.0.0.1:2379/"]).is_ok());
        assert!(EtcdClient::new(&["https://127.0.0.1:2379"]).is_err());
        assert!(EtcdClient::new(&["127.0.0.1:2379"]).is_err());
        assert!(EtcdClient::new::<&str>(&[]).is_err());
    }
}
