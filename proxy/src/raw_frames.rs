//! `[server] raw_frames`: one port, two protocols. A connection to the HTTP port whose first 12 bytes form
//! a length line is a socket-protocol client: each frame's `head.module` names a `module_socket`, the
//! payload goes to that module's nodes through the same gateway as an HTTP `POST` (balancer, pool,
//! timeouts), and the reply frame is the backend's reply. Anything else is handed to hyper untouched.
//!
//! Telling the two apart never consumes a byte (the stream is peeked) and never delays HTTP: a request
//! line starts with a letter, and a length line only with padding or digits, so the first byte that is
//! neither decides for HTTP at once.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use modproxy_sdk::frame::{parse_length_line, LENGTH_LINE_LEN};
use modproxy_sdk::{FrameError, LengthLineCodec, MethodError};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Role};
use crate::module_policy::Refusal as PolicyRefusal;
use crate::request_context::{self, RequestContext};
use crate::server::LiveApp;
use crate::socket_gateway::GatewayError;

/// How long the rest of a length line may take once its first bytes have arrived. Clients write the line
/// and the payload at once, so this only matters on a congested link; an HTTP client never waits on it.
const REST_OF_LINE_WAIT: Duration = Duration::from_secs(1);

/// How often a partial length line is peeked again (a peeked socket stays readable, so waiting for
/// readiness would spin).
const PEEK_INTERVAL: Duration = Duration::from_millis(5);

/// A raw-frame connection that sends no frame for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A length line: the socket protocol.
    Frames,
    /// Anything else: HTTP (or garbage, which hyper answers).
    Http,
    /// Too few bytes to tell, and they could still begin a length line.
    Undecided,
}

/// Classifies the bytes seen so far at the start of a connection. Pure, so it can be tested with
/// hostile inputs.
pub fn sniff(prefix: &[u8]) -> Sniffed {
    if let Some(line) = prefix.get(..LENGTH_LINE_LEN) {
        let line: &[u8; LENGTH_LINE_LEN] = line.try_into().expect("slice of LENGTH_LINE_LEN");
        // Size limits are the codec's business: an oversized frame is still a raw-frame client, and is
        // told so in its own protocol.
        return match parse_length_line(line, usize::MAX) {
            Ok(_) => Sniffed::Frames,
            Err(_) => Sniffed::Http,
        };
    }
    let could_be_line = prefix.iter().enumerate().all(|(column, &byte)| match column {
        0..=9 => byte == b' ' || byte.is_ascii_digit(),
        10 => byte == b'\r',
        _ => byte == b'\n',
    });
    if could_be_line {
        Sniffed::Undecided
    } else {
        Sniffed::Http
    }
}

/// Serves `stream` here if `[server] raw_frames` is on and it opens with a length line; otherwise gives it
/// back, unread, for HTTP. `None` means the connection was served (or closed) here.
pub async fn serve_if_raw(
    stream: TcpStream,
    peer: SocketAddr,
    live: &LiveApp,
    stopping: &CancellationToken,
) -> Option<TcpStream> {
    let (enabled, first_byte_wait, max_body) = {
        let app = live.load();
        let server = &app.config().server;
        (server.raw_frames, server.header_timeout, server.max_body)
    };
    if !enabled {
        return Some(stream);
    }
    let verdict = tokio::select! {
        () = stopping.cancelled() => return Some(stream),
        verdict = peek_verdict(&stream, first_byte_wait) => verdict,
    };
    match verdict {
        Some(Sniffed::Frames) => {
            tracing::debug!(%peer, "raw-frame client");
            serve(stream, peer, live, max_body, stopping).await;
            None
        }
        Some(_) => Some(stream),
        None => {
            tracing::debug!(%peer, "connection closed: nothing sent within header_timeout");
            None
        }
    }
}

/// Peeks until the first bytes decide. `None` when the peer sent nothing within `first_byte_wait` or went
/// away; HTTP when a partial length line stalls.
async fn peek_verdict(stream: &TcpStream, first_byte_wait: Duration) -> Option<Sniffed> {
    let mut line = [0u8; LENGTH_LINE_LEN];
    // A client may connect early and speak later (browsers pre-connect): it gets as long as hyper gives
    // for a request head.
    let got = match tokio::time::timeout(first_byte_wait, stream.peek(&mut line)).await {
        Ok(Ok(got)) if got > 0 => got,
        _ => return None,
    };
    let mut got = got;
    let deadline = Instant::now() + REST_OF_LINE_WAIT;
    loop {
        match sniff(&line[..got]) {
            Sniffed::Undecided if Instant::now() < deadline => {}
            Sniffed::Undecided => return Some(Sniffed::Http),
            decided => return Some(decided),
        }
        tokio::time::sleep(PEEK_INTERVAL).await;
        got = match stream.peek(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(got) => got,
        };
    }
}

/// Reads frames and answers each in turn until the client leaves, breaks the framing, idles out, or the
/// server stops. A frame being answered when the server stops is answered first.
async fn serve(stream: TcpStream, peer: SocketAddr, live: &LiveApp, max_body: u64, stopping: &CancellationToken) {
    let max_frame = usize::try_from(max_body).unwrap_or(usize::MAX);
    let mut framed = Framed::new(stream, LengthLineCodec::new(max_frame));
    loop {
        let next = tokio::select! {
            () = stopping.cancelled() => return,
            next = tokio::time::timeout(IDLE_TIMEOUT, framed.next()) => next,
        };
        let payload = match next {
            Err(_) => {
                tracing::debug!(%peer, "raw-frame connection idle; closed");
                return;
            }
            Ok(None) => return,
            Ok(Some(Ok(payload))) => payload,
            Ok(Some(Err(FrameError::TooLarge { len, max }))) => {
                tracing::warn!(%peer, len, max, "raw frame over [server] max_body; connection closed");
                let refusal = MethodError::new(
                    "payload_too_large",
                    format!("a frame of {len} bytes is over the limit of {max} bytes (server.max_body)"),
                );
                let _ = tokio::time::timeout(IDLE_TIMEOUT, framed.send(Bytes::from(refusal.to_reply()))).await;
                return;
            }
            Ok(Some(Err(error))) => {
                tracing::warn!(%peer, %error, "raw-frame client broke the framing; connection closed");
                return;
            }
        };
        let app = live.load_full();
        let reply = answer(&app, payload, peer).await;
        match tokio::time::timeout(IDLE_TIMEOUT, framed.send(reply)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// The fields of a request the proxy reads to route it; everything else passes through unread.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    head: RoutingHead<'a>,
}

#[derive(Deserialize)]
struct RoutingHead<'a> {
    #[serde(borrow, default)]
    module: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
}

/// The reply to one frame: the backend's reply, or an SDK-style error reply.
async fn answer(app: &App, payload: Bytes, peer: SocketAddr) -> Bytes {
    let started = Instant::now();
    let (module, method) = match serde_json::from_slice::<Envelope>(&payload) {
        Ok(Envelope {
            head: RoutingHead {
                module: Some(module),
                method,
            },
        }) => (
            module.into_owned(),
            method.map_or_else(|| "-".to_owned(), Cow::into_owned),
        ),
        Ok(_) => {
            return refuse(
                peer,
                MethodError::bad_request("head.module must name the socket module to call"),
            )
        }
        Err(error) if error.is_data() => {
            return refuse(
                peer,
                MethodError::bad_request(format!(
                    "the request must be {{\"head\": {{\"module\": \"…\", \"method\": \"…\"}}, \"data\": …}}: {error}"
                )),
            )
        }
        Err(error) => {
            return refuse(
                peer,
                MethodError::bad_request(format!("the request is not UTF-8 JSON: {error}")),
            )
        }
    };
    let Some(mounted) = app.mounted(&module) else {
        return refuse(
            peer,
            MethodError::new("module_not_found", format!("no module '{module}' is configured")),
        );
    };
    let Role::Socket(gateway) = &mounted.role else {
        return refuse(
            peer,
            MethodError::new(
                "not_socket_module",
                format!("module '{module}' is not a module_socket; raw frames reach socket modules only"),
            ),
        );
    };
    // The module's policy and head rules hold for raw frames exactly as for HTTP.
    let context = RequestContext {
        peer,
        id: request_context::generate(),
    };
    let admitted = mounted.policy.admit(peer.ip()).await;
    let mut node = None;
    let outcome = match &admitted {
        Ok(_) => match gateway.call(payload, &context).await {
            Ok((reply, served_by)) => {
                node = Some(served_by);
                Ok(reply)
            }
            Err((error, served_by)) => {
                node = served_by;
                Err(Refusal::Gateway(error))
            }
        },
        Err(refusal) => Err(Refusal::Policy(*refusal)),
    };
    drop(admitted);
    let (reply, status) = match outcome {
        Ok(reply) => (reply, StatusCode::OK),
        Err(Refusal::Policy(refusal)) => {
            let (code, status) = match refusal {
                PolicyRefusal::RateLimited(_) => ("too_many_requests", StatusCode::TOO_MANY_REQUESTS),
                PolicyRefusal::Busy(_) => ("service_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            };
            tracing::warn!(%peer, module, %refusal, "raw frame refused by policy");
            (
                Bytes::from(MethodError::new(code, refusal.to_string()).to_reply()),
                status,
            )
        }
        Err(Refusal::Gateway(error)) => {
            let status = error.status();
            let code = match status {
                StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
                StatusCode::BAD_REQUEST => "bad_request",
                _ => "bad_gateway",
            };
            let reply = MethodError::new(code, error.to_string()).to_reply();
            (Bytes::from(reply), status)
        }
    };
    let elapsed = started.elapsed();
    mounted.stats.record(status, elapsed);
    if !app.config().access_log || !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return reply;
    }
    tracing::info!(
        target: "access",
        "{peer} FRAME /{module} method={} module={} node={} status={} bytes={} ms={:.2} id={}",
        crate::log_text::LogText::word(&method),
        mounted.stats.name,
        node.as_deref().unwrap_or("-"),
        status.as_u16(),
        reply.len(),
        elapsed.as_secs_f64() * 1000.0,
        context.id,
    );
    reply
}

/// Why a frame that named a socket module got no reply from it.
enum Refusal {
    Policy(PolicyRefusal),
    Gateway(GatewayError),
}

fn refuse(peer: SocketAddr, error: MethodError) -> Bytes {
    tracing::warn!(%peer, code = %error.code, message = %crate::log_text::LogText::new(&error.message), "raw frame refused");
    Bytes::from(error.to_reply())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_lines_are_frames_and_request_lines_are_http() {
        for line in ["        42\r\n", "0000000042\r\n", "   0000042\r\n", "9999999999\r\n"] {
            assert_eq!(sniff(line.as_bytes()), Sniffed::Frames, "{line:?}");
        }
        let with_payload = [&b"         2\r\n"[..], b"{}"].concat();
        assert_eq!(sniff(&with_payload), Sniffed::Frames);
        for start in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /s3/ HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"G",
            b"hello world\r\n",
        ] {
            assert_eq!(sniff(start), Sniffed::Http, "{:?}", String::from_utf8_lossy(start));
        }
    }

    #[test]
    fn near_misses_are_http() {
        for line in [
            "          \r\n", // blank: no number
            "        42\n\r",
            "       -42\r\n",
            "      4 2 \r\n",
            "        42\r\r",
            "42        \r\n",
        ] {
            assert_eq!(sniff(line.as_bytes()), Sniffed::Http, "{line:?}");
        }
    }

    #[test]
    fn partial_lines_wait_only_while_they_could_still_be_one() {
        for partial in [&b""[..], b" ", b"   00", b"        42", b"        42\r"] {
            assert_eq!(sniff(partial), Sniffed::Undecided, "{partial:?}");
        }
        for partial in [&b"  x"[..], b"        42\n", b"        4\r", b"        42\rx"] {
            assert_eq!(sniff(partial), Sniffed::Http, "{partial:?}");
        }
    }
}
