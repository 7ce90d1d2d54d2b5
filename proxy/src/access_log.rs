//! The access log: one line per answered request, whether it came as HTTP or as a raw frame, in its own
//! file (`[log] access`), as nginx's `combined` or as one JSON object per line (`[log] access_format`).
//!
//! The request path formats the line into a buffer the thread keeps, and hands one copy of it to
//! tracing-appender's non-blocking writer: a bounded queue that a background thread drains into the
//! rotated file. A full queue drops lines rather than stall a request.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, Method, Response, StatusCode, Version};
use http_body::Body;
use tracing_appender::non_blocking::NonBlocking;

use crate::config::{AccessFormat, Config};
use crate::log_text::LogText;

/// Where lines go, set once at start-up; the file and format take effect only on restart.
struct Sink {
    writer: NonBlocking,
    format: AccessFormat,
}

static SINK: OnceLock<Sink> = OnceLock::new();

thread_local! {
    /// The line being formatted, reused so that a line costs one allocation: the copy queued.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Sends access lines to `writer` in `format` from now on (once per process; later calls are ignored).
pub fn install(writer: NonBlocking, format: AccessFormat) {
    let _ = SINK.set(Sink { writer, format });
}

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
        /// The protocol the client spoke (`HTTP/2.0` in the request line for h2, as nginx writes it).
        version: Version,
        /// The `Referer` header, as sent.
        referer: Option<&'a [u8]>,
        /// The `User-Agent` header, as sent.
        user_agent: Option<&'a [u8]>,
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
    /// The size of the request's body: a frame's payload, or an HTTP request's `Content-Length`.
    pub bytes_in: Option<u64>,
    /// The time from receiving the request to having the answer.
    pub elapsed: Duration,
    /// The time the backend node took to answer, when one was asked (`UpstreamTime`).
    pub upstream: Option<Duration>,
    /// The request id.
    pub id: &'a str,
}

/// A response extension: how long the node took to give the answer's head (retries included), which
/// the access log reports as `upstream_ms`.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// Whether lines are written: on in the config and opened at start-up. Asked before a request is
/// answered, so that nothing is copied for a line nobody will see.
pub fn enabled(config: &Config) -> bool {
    config.access_log.is_some() && SINK.get().is_some()
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
    /// Queues the line for the access log file, if one is open.
    pub fn write(&self) {
        let Some(sink) = SINK.get() else { return };
        LINE.with(|line| {
            let mut line = line.borrow_mut();
            line.clear();
            self.format(sink.format, SystemTime::now(), &mut line);
            // NonBlocking takes one message per write; cloning it only counts a reference.
            let _ = sink.writer.clone().write_all(&line);
        });
    }

    /// The line in `format`, as of `now`, newline included, appended to `out`.
    pub fn format(&self, format: AccessFormat, now: SystemTime, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = match format {
            AccessFormat::Combined => self.combined(now, out),
            AccessFormat::Json => self.json(now, out),
        };
    }

    /// nginx's `combined`: `$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`, in UTC.
    fn combined(&self, now: SystemTime, out: &mut Vec<u8>) -> std::io::Result<()> {
        let time = Civil::of(now);
        write!(
            out,
            "{} - - [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] \"",
            self.peer.ip(),
            time.day,
            MONTHS[time.month as usize - 1],
            time.year,
            time.hour,
            time.minute,
            time.second
        )?;
        let (referer, user_agent) = match self.asked {
            Asked::Http {
                method,
                path,
                version,
                referer,
                user_agent,
            } => {
                write!(out, "{method} ")?;
                nginx_escaped(out, path.as_bytes());
                out.extend_from_slice(request_line_protocol(version));
                (referer, user_agent)
            }
            Asked::Frame { module, method } => {
                out.extend_from_slice(b"FRAME /");
                nginx_escaped(out, module.as_bytes());
                out.extend_from_slice(b" method=");
                nginx_escaped(out, method.unwrap_or("-").as_bytes());
                (None, None)
            }
        };
        write!(out, "\" {} {} \"", self.status.as_u16(), OrDash(self.bytes))?;
        nginx_escaped(out, referer.unwrap_or(b"-"));
        out.extend_from_slice(b"\" \"");
        nginx_escaped(out, user_agent.unwrap_or(b"-"));
        out.extend_from_slice(b"\"\n");
        Ok(())
    }

    /// One JSON object: the `combined` fields and the module, node, request id and timings.
    fn json(&self, now: SystemTime, out: &mut Vec<u8>) -> std::io::Result<()> {
        let time = Civil::of(now);
        write!(
            out,
            "{{\"time\":\"{}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"client\":\"{}\",",
            time.year,
            time.month,
            time.day,
            time.hour,
            time.minute,
            time.second,
            time.millis,
            self.peer.ip()
        )?;
        let (method, path, frame_method, referer, user_agent) = match self.asked {
            Asked::Http {
                method,
                path,
                referer,
                user_agent,
                ..
            } => (method.as_str(), path, None, referer, user_agent),
            Asked::Frame { module, method } => ("FRAME", module, Some(method), None, None),
        };
        out.extend_from_slice(b"\"method\":");
        serde_json::to_writer(&mut *out, method)?;
        out.extend_from_slice(b",\"path\":");
        let quote = out.len();
        serde_json::to_writer(&mut *out, path)?;
        if frame_method.is_some() {
            // A frame names its module, not a path: shown as the path an HTTP POST would have had.
            out.insert(quote + 1, b'/');
        }
        write!(
            out,
            ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_ms\":{:.3},\"module\":",
            self.status.as_u16(),
            OrNull(self.bytes_in),
            OrNull(self.bytes),
            self.elapsed.as_secs_f64() * 1000.0
        )?;
        serde_json::to_writer(&mut *out, self.module)?;
        out.extend_from_slice(b",\"node\":");
        serde_json::to_writer(&mut *out, &self.node)?;
        out.extend_from_slice(b",\"request_id\":");
        serde_json::to_writer(&mut *out, self.id)?;
        out.extend_from_slice(b",\"upstream_ms\":");
        match self.upstream {
            Some(upstream) => write!(out, "{:.3}", upstream.as_secs_f64() * 1000.0)?,
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"referer\":");
        serde_json::to_writer(&mut *out, &referer.map(String::from_utf8_lossy))?;
        out.extend_from_slice(b",\"user_agent\":");
        serde_json::to_writer(&mut *out, &user_agent.map(String::from_utf8_lossy))?;
        out.extend_from_slice(b",\"frame_method\":");
        serde_json::to_writer(&mut *out, &frame_method.flatten())?;
        out.extend_from_slice(b"}\n");
        Ok(())
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// ` HTTP/1.1` as the request line of a `combined` line ends, for the protocol the client spoke.
fn request_line_protocol(version: Version) -> &'static [u8] {
    match version {
        Version::HTTP_09 => b" HTTP/0.9",
        Version::HTTP_10 => b" HTTP/1.0",
        Version::HTTP_2 => b" HTTP/2.0",
        Version::HTTP_3 => b" HTTP/3.0",
        _ => b" HTTP/1.1",
    }
}

/// Writes `text` as nginx escapes variables in a log line: `"`, `\\`, control bytes and bytes of 0x7f and
/// above as `\xHH`, so that a client cannot end the quoted field or forge a line.
fn nginx_escaped(out: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        if byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(out, "\\x{byte:02X}");
        } else {
            out.push(byte);
        }
    }
}

/// A UTC date and time of day.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Civil {
    fn of(time: SystemTime) -> Civil {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let seconds = since.as_secs();
        let (year, month, day) = civil_date((seconds / 86_400) as i64);
        let of_day = (seconds % 86_400) as u32;
        Civil {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
            millis: since.subsec_millis(),
        }
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01: counted in 400-year
/// eras from 0000-03-01, so that the leap day falls at the end of each year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

impl fmt::Display for Asked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The path, module and method are the client's words: escaped so they cannot forge a line.
            Asked::Http { method, path, .. } => write!(f, "{method} {}", LogText::word(path)),
            Asked::Frame { module, method } => write!(
                f,
                "FRAME /{} method={}",
                LogText::word(module),
                LogText::word(method.unwrap_or("-"))
            ),
        }
    }
}

/// A value, or `null` when nobody knows it.
struct OrNull(Option<u64>);

impl fmt::Display for OrNull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("null"),
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
                path: "/s3/items",
                version: Version::HTTP_11,
                referer: None,
                user_agent: None,
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

    fn line<'a>(asked: Asked<'a>, node: Option<&'a str>) -> AccessLine<'a> {
        AccessLine {
            peer: "10.1.2.3:5555".parse().unwrap(),
            asked,
            module: "s3",
            node,
            status: StatusCode::BAD_GATEWAY,
            bytes: Some(120),
            bytes_in: Some(7),
            elapsed: Duration::from_micros(1500),
            upstream: node.map(|_| Duration::from_micros(1250)),
            id: "abc",
        }
    }

    fn formatted(line: &AccessLine<'_>, format: AccessFormat) -> String {
        let mut out = Vec::new();
        // 2025-12-04 20:44:48.500 UTC
        line.format(format, UNIX_EPOCH + Duration::from_millis(1_764_881_088_500), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_is_nginx_combined_with_hostile_text_escaped() {
        let get = Method::GET;
        let http = line(
            Asked::Http {
                method: &get,
                path: "/s3/a\"b\n\u{e9}",
                version: Version::HTTP_11,
                referer: None,
                user_agent: None,
            },
            None,
        );
        assert_eq!(
            formatted(&http, AccessFormat::Combined),
            "10.1.2.3 - - [04/Dec/2025:20:44:48 +0000] \"GET /s3/a\\x22b\\x0A\\xC3\\xA9 HTTP/1.1\" 502 120 \"-\" \"-\"\n"
        );
        let h2 = line(
            Asked::Http {
                method: &get,
                path: "/",
                version: Version::HTTP_2,
                referer: Some(b"https://example.com/a?b=\"c\""),
                user_agent: Some(b"curl/8.0\r\nforged"),
            },
            None,
        );
        assert_eq!(
            formatted(&h2, AccessFormat::Combined),
            "10.1.2.3 - - [04/Dec/2025:20:44:48 +0000] \"GET / HTTP/2.0\" 502 120 \
             \"https://example.com/a?b=\\x22c\\x22\" \"curl/8.0\\x0D\\x0Aforged\"\n"
        );
        let frame = line(
            Asked::Frame {
                module: "s3",
                method: None,
            },
            None,
        );
        assert_eq!(
            formatted(&frame, AccessFormat::Combined),
            "10.1.2.3 - - [04/Dec/2025:20:44:48 +0000] \"FRAME /s3 method=-\" 502 120 \"-\" \"-\"\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let frame = line(
            Asked::Frame {
                module: "s\"3",
                method: Some("add"),
            },
            Some("127.0.0.1:9"),
        );
        let text = formatted(&frame, AccessFormat::Json);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "time": "2025-12-04T20:44:48.500Z", "client": "10.1.2.3", "method": "FRAME", "path": "/s\"3",
                "status": 502, "bytes_in": 7, "bytes_out": 120, "duration_ms": 1.5, "module": "s3",
                "node": "127.0.0.1:9", "request_id": "abc", "upstream_ms": 1.25, "referer": null,
                "user_agent": null, "frame_method": "add"
            })
        );
    }

    #[test]
    fn civil_dates_across_eras_and_leap_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_426), (2025, 12, 4));
    }
}
