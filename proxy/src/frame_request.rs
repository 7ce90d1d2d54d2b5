//! A request that came as a raw frame rather than as HTTP (`[server] raw_frames`): it names its module
//! and method in the JSON head instead of a URL path, has no headers, and is answered in the socket
//! protocol, with SDK-style error replies for what went wrong.

use std::borrow::Cow;
use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;
use modproxy_sdk::MethodError;
use serde::Deserialize;

use crate::log_text::LogText;

/// One raw frame, with the fields the proxy routes by read out of its head.
#[derive(Debug)]
pub struct FrameRequest {
    /// `head.module`: the `module_socket` to call.
    pub module: String,
    /// `head.method`, for the access log; the backend reads it from the payload.
    pub method: Option<String>,
    /// The whole frame, passed on as it came (apart from the module's `head` rules).
    pub payload: Bytes,
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

impl FrameRequest {
    /// Reads the routing fields of `payload`; a frame that is not JSON, or names no module, is refused
    /// with `bad_request`.
    pub fn parse(payload: Bytes) -> Result<FrameRequest, MethodError> {
        let (module, method) = match serde_json::from_slice::<Envelope>(&payload) {
            Ok(Envelope {
                head:
                    RoutingHead {
                        module: Some(module),
                        method,
                    },
            }) => (module.into_owned(), method.map(Cow::into_owned)),
            Ok(_) => {
                return Err(MethodError::bad_request(
                    "head.module must name the socket module to call",
                ))
            }
            Err(error) if error.is_data() => {
                return Err(MethodError::bad_request(format!(
                    "the request must be {{\"head\": {{\"module\": \"…\", \"method\": \"…\"}}, \"data\": …}}: {error}"
                )))
            }
            Err(error) => {
                return Err(MethodError::bad_request(format!(
                    "the request is not UTF-8 JSON: {error}"
                )))
            }
        };
        Ok(FrameRequest {
            module,
            method,
            payload,
        })
    }
}

/// The error reply to a frame whose HTTP twin would have been answered `status`: the statuses a module's
/// policy or gateway answers with, told in the socket protocol's error codes.
pub fn error_reply(status: StatusCode, message: String) -> Bytes {
    Bytes::from(MethodError::new(error_code(status), message).to_reply())
}

/// The reply to a frame the proxy turns away itself, before any module answers; logged, not counted.
pub fn refuse(peer: SocketAddr, error: MethodError) -> Bytes {
    tracing::warn!(%peer, code = %error.code, message = %LogText::new(&error.message), "raw frame refused");
    Bytes::from(error.to_reply())
}

/// The socket protocol's error code for an HTTP status.
fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        _ => "bad_gateway",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_fields_are_read_and_the_payload_kept_whole() {
        let payload = Bytes::from_static(br#"{"head":{"module":"todo","method":"add","x":1},"data":[1]}"#);
        let request = FrameRequest::parse(payload.clone()).unwrap();
        assert_eq!(
            (request.module.as_str(), request.method.as_deref()),
            ("todo", Some("add"))
        );
        assert_eq!(request.payload, payload);
        let escaped = FrameRequest::parse(Bytes::from_static(br#"{"head":{"module":"to\"do"}}"#)).unwrap();
        assert_eq!((escaped.module.as_str(), escaped.method), ("to\"do", None));
    }

    #[test]
    fn frames_that_name_no_module_are_bad_requests() {
        for hostile in [
            &br#"{"head":{"method":"add"}}"#[..],
            br#"{"head":{"module":7}}"#,
            br#"{"data":1}"#,
            br#"[1,2]"#,
            b"not json",
            b"\xff\xfe",
            b"",
        ] {
            let refused = FrameRequest::parse(Bytes::from_static(hostile)).unwrap_err();
            assert_eq!(refused.code, "bad_request", "{:?}", String::from_utf8_lossy(hostile));
        }
    }

    #[test]
    fn statuses_become_the_protocols_error_codes() {
        for (status, code) in [
            (StatusCode::BAD_REQUEST, "bad_request"),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
            (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
            (StatusCode::BAD_GATEWAY, "bad_gateway"),
        ] {
            assert_eq!(error_code(status), code);
        }
    }
}
