//! The access log: one line per answered request, whether it came as HTTP or as a raw frame, in one
//! format: client, what was asked, module, node, status, size, time and id.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::{header, Method, Response, StatusCode};
use http_body::Body;

use crate::config::Config;
use crate::log_text::LogText;

/// What the client asked for, as the line names it. The two protocols ask differently: HTTP by method
/// and path, a raw frame by module and the method name in its head.
#[derive(Debug, Clone, Copy)]
pub enum Asked<'a> {
    /// An HTTP request: `GET /s3/items`.
    Http {
        /// The request method.
        method: &'a Method,
        /// The request path, without the query.
        path: &'a str,
    },
    /// A raw frame: `FRAME /todo method=add`.
    Frame {
        /// The module named in `head.module`.
        module: &'a str,
        /// `head.method`, when the frame has one.
        method: Option<&'a str>,
    },
}

/// One answered request, ready to be written.
#[derive(Debug)]
pub struct AccessLine<'a> {
    /// The client's address.
    pub peer: SocketAddr,
    /// What it asked for.
    pub asked: Asked<'a>,
    /// The name of the module that answered, as the metrics name it.
    pub module: &'a str,
    /// The backend node that answered (or was tried last), if any.
    pub node: Option<&'a str>,
    /// The status of the answer; for a raw frame, the status an HTTP client would have had.
    pub status: StatusCode,
    /// The size of the answer's body, when known up front.
    pub bytes: Option<u64>,
    /// The time from receiving the request to having the answer.
    pub elapsed: Duration,
    /// The request id.
    pub id: &'a str,
}

/// Whether lines are written: on in the config, and not filtered out by the log level. Asked before a
/// request is answered, so that nothing is copied for a line nobody will see.
pub fn enabled(config: &Config) -> bool {
    config.access_log && tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// The size of an HTTP response's body, when known before it is sent: streamed bodies know it from
/// `Content-Length`.
pub fn body_size<B: Body>(response: &Response<B>) -> Option<u64> {
    response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

impl AccessLine<'_> {
    /// Writes the line to the `access` target.
    pub fn write(&self) {
        tracing::info!(
            target: "access",
            "{} {} module={} node={} status={} bytes={} ms={:.2} id={}",
            self.peer,
            self.asked,
            self.module,
            self.node.unwrap_or("-"),
            self.status.as_u16(),
            OrDash(self.bytes),
            self.elapsed.as_secs_f64() * 1000.0,
            self.id,
        );
    }
}

impl fmt::Display for Asked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The path, module and method are the client's words: escaped so they cannot forge a line.
            Asked::Http { method, path } => write!(f, "{method} {}", LogText::word(path)),
            Asked::Frame { module, method } => write!(
                f,
                "FRAME /{} method={}",
                LogText::word(module),
                LogText::word(method.unwrap_or("-"))
            ),
        }
    }
}

/// A value, or "-" when nobody knows it.
struct OrDash(Option<u64>);

impl fmt::Display for OrDash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_name_what_was_asked() {
        let get = Method::GET;
        assert_eq!(
            Asked::Http {
                method: &get,
                path: "/s3/items"
            }
            .to_string(),
            "GET /s3/items"
        );
        assert_eq!(
            Asked::Frame {
                module: "todo",
                method: Some("add")
            }
            .to_string(),
            "FRAME /todo method=add"
        );
        assert_eq!(
            Asked::Frame {
                module: "todo",
                method: None
            }
            .to_string(),
            "FRAME /todo method=-"
        );
        assert_eq!(OrDash(None).to_string(), "-");
        assert_eq!(OrDash(Some(42)).to_string(), "42");
    }
}
