//! The requests conform sends and the replies it expects, as pure values.
//!
//! Conform knows nothing of a backend's own methods, so every probe uses what the protocol fixes for any
//! backend: `_ping`, a reserved name nobody implements (`method_not_found`) and payloads that are not
//! envelopes (`bad_request`).

use modproxy_sdk::frame::{length_line, LENGTH_LINE_LEN};
use serde_json::Value;

/// A method name reserved by the protocol (it begins with `_`) that no backend implements.
pub const UNKNOWN_METHOD: &str = "_conform_no_such_method";

/// A request whose reply the protocol fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `_ping`: `{"pong":true}`.
    Ping,
    /// A reserved name nobody implements: `method_not_found`.
    Unknown,
    /// A payload that is not JSON: `bad_request`.
    NotJson,
}

impl Probe {
    /// The request payload.
    pub fn payload(self) -> Vec<u8> {
        match self {
            Probe::Ping => br#"{"head":{"method":"_ping"}}"#.to_vec(),
            Probe::Unknown => format!(r#"{{"head":{{"method":"{UNKNOWN_METHOD}"}},"data":null}}"#).into_bytes(),
            Probe::NotJson => br#"{"head":"#.to_vec(),
        }
    }

    /// The reply it must get.
    pub fn expect(self) -> Expect {
        match self {
            Probe::Ping => Expect::Pong,
            Probe::Unknown => Expect::Error("method_not_found"),
            Probe::NotJson => Expect::Error("bad_request"),
        }
    }
}

/// A reply conform accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `{"pong":true}`, as a JSON value (spacing is free).
    Pong,
    /// An error reply with this code.
    Error(&'static str),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Pong => f.write_str(r#"{"pong":true}"#),
            Expect::Error(code) => write!(f, "a {code} error reply"),
        }
    }
}

/// Whether `reply` is what `expect` asks for; `Err` says what it was instead.
pub fn matches(expect: Expect, reply: &[u8]) -> Result<(), String> {
    let value: Value = serde_json::from_slice(reply).map_err(|_| format!("{} (not JSON)", show(reply)))?;
    let ok = match expect {
        Expect::Pong => value == serde_json::json!({"pong": true}),
        Expect::Error(code) => value.pointer("/error/code").and_then(Value::as_str) == Some(code),
    };
    if ok {
        Ok(())
    } else {
        Err(show(reply))
    }
}

/// Whether `reply` has exactly the error reply's shape: an object whose only key is `error`, itself an
/// object with exactly a string `code` and a string `message`.
pub fn error_shape(reply: &[u8]) -> Result<String, String> {
    let value: Value = serde_json::from_slice(reply).map_err(|_| format!("{} (not JSON)", show(reply)))?;
    let wrong = |why: &str| Err(format!("{} ({why})", show(reply)));
    let Some(outer) = value.as_object() else {
        return wrong("not an object");
    };
    let Some(error) = outer.get("error").and_then(Value::as_object) else {
        return wrong("no object under \"error\"");
    };
    if outer.len() != 1 {
        return wrong("keys beside \"error\"");
    }
    let Some(code) = error.get("code").and_then(Value::as_str) else {
        return wrong("no string error.code");
    };
    if !error.get("message").is_some_and(Value::is_string) {
        return wrong("no string error.message");
    }
    if error.len() != 2 {
        return wrong("keys beside code and message in \"error\"");
    }
    Ok(code.to_owned())
}

/// Splits a sequenced reply `{"seq":S,"reply":R}` (byte-exact, section 4.3) into S and R.
pub fn sequenced(payload: &[u8]) -> Option<(u64, &[u8])> {
    let rest = payload.strip_prefix(br#"{"seq":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let (number, rest) = rest.split_at(digits);
    if number.is_empty() || (number.len() > 1 && number[0] == b'0') {
        return None;
    }
    let reply = rest.strip_prefix(br#","reply":"#)?.strip_suffix(b"}")?;
    Some((std::str::from_utf8(number).ok()?.parse().ok()?, reply))
}

/// A payload shortened for a report line.
pub fn show(payload: &[u8]) -> String {
    const SHOWN: usize = 120;
    let text = String::from_utf8_lossy(&payload[..payload.len().min(SHOWN)]);
    if payload.len() > SHOWN {
        format!("{text}… ({} bytes)", payload.len())
    } else {
        text.into_owned()
    }
}

/// How the ten columns of a length line are padded.
#[derive(Debug, Clone, Copy)]
pub enum Padding {
    /// `"        38\r\n"`, what every writer in this project sends.
    Spaces,
    /// `"0000000038\r\n"`.
    Zeros,
    /// `"   0000038\r\n"`: spaces, then zeros.
    Mixed,
}

/// A frame with its length line padded as asked. The line comes from the SDK's writer; only its padding
/// bytes are swapped, so the number is always the SDK's.
pub fn frame(payload: &[u8], padding: Padding) -> Vec<u8> {
    let mut line = length_line(payload.len()).expect("probes are far below the largest length");
    let pad = line.iter().take_while(|&&b| b == b' ').count();
    let zeros_from = match padding {
        Padding::Spaces => pad,
        Padding::Zeros => 0,
        Padding::Mixed => pad.min(3),
    };
    line[zeros_from..pad].fill(b'0');
    let mut bytes = Vec::with_capacity(LENGTH_LINE_LEN + payload.len());
    bytes.extend_from_slice(&line);
    bytes.extend_from_slice(payload);
    bytes
}

/// Frames for several probes, back to back, as one write would carry them.
pub fn frames(probes: &[Probe]) -> Vec<u8> {
    probes
        .iter()
        .flat_map(|p| frame(&p.payload(), Padding::Spaces))
        .collect()
}

/// A request of exactly `size` bytes: a probe for an unknown method whose `data` string fills the rest.
pub fn sized_request(size: usize) -> Vec<u8> {
    let head = format!(r#"{{"head":{{"method":"{UNKNOWN_METHOD}"}},"data":""#);
    let fill = size.saturating_sub(head.len() + 2);
    let mut payload = Vec::with_capacity(size);
    payload.extend_from_slice(head.as_bytes());
    payload.resize(head.len() + fill, b'x');
    payload.extend_from_slice(b"\"}");
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use modproxy_sdk::frame::{parse_length_line, DEFAULT_MAX_FRAME};

    #[test]
    fn every_padding_carries_the_same_number() {
        let payload = Probe::Unknown.payload();
        for (padding, want) in [
            (Padding::Spaces, "        57\r\n"),
            (Padding::Zeros, "0000000057\r\n"),
            (Padding::Mixed, "   0000057\r\n"),
        ] {
            let bytes = frame(&payload, padding);
            assert_eq!(&bytes[..12], want.as_bytes());
            let line: [u8; 12] = bytes[..12].try_into().unwrap();
            assert_eq!(parse_length_line(&line, DEFAULT_MAX_FRAME).unwrap(), payload.len());
        }
    }

    #[test]
    fn replies_match_by_value_not_by_bytes() {
        assert!(matches(Expect::Pong, b"{ \"pong\" : true }").is_ok());
        assert!(matches(Expect::Pong, br#"{"pong":false}"#).is_err());
        let error = br#"{"error":{"message":"no","code":"method_not_found"}}"#;
        assert!(matches(Expect::Error("method_not_found"), error).is_ok());
        assert_eq!(
            matches(Expect::Error("bad_request"), error).unwrap_err(),
            String::from_utf8_lossy(error)
        );
        assert!(matches(Expect::Pong, b"pong").unwrap_err().ends_with("(not JSON)"));
    }

    #[test]
    fn the_error_shape_allows_no_extra_keys() {
        assert_eq!(error_shape(br#"{"error":{"code":"x","message":"m"}}"#).unwrap(), "x");
        for wrong in [
            &br#"{"error":"method_not_found"}"#[..],
            br#"{"error":{"code":"x"}}"#,
            br#"{"error":{"code":1,"message":"m"}}"#,
            br#"{"error":{"code":"x","message":"m"},"ok":false}"#,
            br#"{"error":{"code":"x","message":"m","status":1}}"#,
            br#"{"code":"x","message":"m"}"#,
            b"[]",
        ] {
            assert!(error_shape(wrong).is_err(), "{}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn sequenced_replies_are_read_byte_exactly() {
        assert_eq!(
            sequenced(br#"{"seq":12,"reply":{"a":1}}"#),
            Some((12, &br#"{"a":1}"#[..]))
        );
        assert_eq!(sequenced(br#"{"seq":1,"reply":null}"#), Some((1, &b"null"[..])));
        for wrong in [
            &br#"{"seq": 1,"reply":null}"#[..],
            br#"{"seq":01,"reply":null}"#,
            br#"{"reply":null,"seq":1}"#,
            br#"{"seq":1,"reply":null} "#,
            br#"{"seq":,"reply":null}"#,
        ] {
            assert_eq!(sequenced(wrong), None, "{}", String::from_utf8_lossy(wrong));
        }
    }

    #[test]
    fn a_sized_request_is_exactly_that_size_and_valid_json() {
        for size in [100, 4096] {
            let payload = sized_request(size);
            assert_eq!(payload.len(), size);
            serde_json::from_slice::<Value>(&payload).unwrap();
        }
    }
}
