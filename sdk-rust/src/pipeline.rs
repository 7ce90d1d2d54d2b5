//! Pipelining negotiation and the sequenced reply envelope (issue 18).
//!
//! A peer that means to send requests before their replies have come first sends the reserved request
//! `_pipeline`; a backend that agrees answers `{"pipeline":1}`, and from then on writes every reply on that
//! connection as `{"seq":S,"reply":R}`, where S numbers the request it answers (1 for the first request
//! after `_pipeline`) and R is the reply exactly as it would have been sent bare. So a reply can only ever
//! reach the request it answers. The envelope is bytes around bytes: it is written and opened by slicing,
//! never by parsing or re-serialising R.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::Encoder;

use crate::codec::LengthLineCodec;
use crate::envelope::method_of;
use crate::frame::{decimal, length_line, FrameError, LENGTH_LINE_LEN, MAX_DECIMAL_DIGITS};

/// The reserved method that asks a backend for sequenced replies.
pub const PIPELINE_METHOD: &str = "_pipeline";

/// The version of the envelope this crate speaks.
pub const PIPELINE_VERSION: u64 = 1;

/// A backend's answer to `_pipeline`: the connection is in sequenced mode from the next reply on.
pub const PIPELINE_ACCEPTED: &[u8] = br#"{"pipeline":1}"#;

const SEQ_PREFIX: &[u8] = br#"{"seq":"#;
const REPLY_PREFIX: &[u8] = br#","reply":"#;
const CLOSING: u8 = b'}';

/// The request that opens a pipelined connection, asking for up to `depth` requests in flight.
///
/// ```
/// assert_eq!(
///     modproxy_sdk::pipeline::negotiation_request(16),
///     br#"{"head":{"method":"_pipeline"},"data":{"version":1,"depth":16}}"#
/// );
/// ```
pub fn negotiation_request(depth: usize) -> Vec<u8> {
    format!(r#"{{"head":{{"method":"{PIPELINE_METHOD}"}},"data":{{"version":{PIPELINE_VERSION},"depth":{depth}}}}}"#)
        .into_bytes()
}

/// Whether a request payload is `_pipeline`. Reads `head.method` only; everything else is skipped.
pub fn is_negotiation(payload: &[u8]) -> bool {
    method_of(payload).is_some_and(|method| method == PIPELINE_METHOD)
}

/// Whether a backend's answer to `_pipeline` accepts it: a JSON object with `"pipeline": 1`. Anything else
/// (an error reply, other JSON, not JSON) means the backend does not pipeline.
pub fn accepts_pipelining(reply: &[u8]) -> bool {
    // A map, not a derived struct: serde would also read a struct from an array such as `[1]`.
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(reply)
        .is_ok_and(|answer| answer.get("pipeline").and_then(serde_json::Value::as_u64) == Some(PIPELINE_VERSION))
}

/// One reply and the number of the request it answers: `{"seq":S,"reply":R}` on the wire.
///
/// ```
/// use modproxy_sdk::pipeline::Sequenced;
///
/// let sealed = Sequenced { seq: 7, reply: br#"{"ok":true}"# }.to_vec();
/// assert_eq!(sealed, br#"{"seq":7,"reply":{"ok":true}}"#);
/// let opened = Sequenced::open(&sealed).unwrap();
/// assert_eq!((opened.seq, opened.reply), (7, &br#"{"ok":true}"#[..]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced<R> {
    /// The 1-based number of the request this answers, counted after `_pipeline`.
    pub seq: u64,
    /// The reply's JSON bytes, exactly as they would be sent bare.
    pub reply: R,
}

impl<R: AsRef<[u8]>> Sequenced<R> {
    /// The envelope's length in bytes.
    pub fn encoded_len(&self) -> usize {
        let mut digits = [0; MAX_DECIMAL_DIGITS];
        SEQ_PREFIX.len() + decimal(self.seq, &mut digits).len() + REPLY_PREFIX.len() + self.reply.as_ref().len() + 1
    }

    /// Appends the envelope to `dst`.
    pub fn write_to(&self, dst: &mut impl BufMut) {
        let mut digits = [0; MAX_DECIMAL_DIGITS];
        dst.put_slice(SEQ_PREFIX);
        dst.put_slice(decimal(self.seq, &mut digits));
        dst.put_slice(REPLY_PREFIX);
        dst.put_slice(self.reply.as_ref());
        dst.put_u8(CLOSING);
    }

    /// The envelope as one payload.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut payload = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut payload);
        payload
    }
}

impl<'a> Sequenced<&'a [u8]> {
    /// Opens an envelope by slicing: the prefix, the digits (no sign, no leading zero), the reply's prefix,
    /// and `}` as the last byte; `None` for anything else. The reply bytes are not looked into.
    pub fn open(payload: &'a [u8]) -> Option<Self> {
        let rest = payload.strip_prefix(SEQ_PREFIX)?;
        let rest = rest.strip_suffix(&[CLOSING])?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, rest) = rest.split_at(digits);
        if number.is_empty() || number.len() > MAX_DECIMAL_DIGITS || (number[0] == b'0' && number.len() > 1) {
            return None;
        }
        let seq = number
            .iter()
            .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
        let reply = rest.strip_prefix(REPLY_PREFIX)?;
        (!reply.is_empty()).then_some(Sequenced { seq, reply })
    }
}

/// Frames the envelope straight into the write buffer: the reply's bytes are copied once, as a bare reply's
/// are.
impl<R: AsRef<[u8]>> Encoder<Sequenced<R>> for LengthLineCodec {
    type Error = FrameError;

    fn encode(&mut self, sequenced: Sequenced<R>, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = sequenced.encoded_len();
        let line = length_line(len)?;
        dst.reserve(LENGTH_LINE_LEN + len);
        dst.put_slice(&line);
        sequenced.write_to(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimal() {
        let mut buf = [0; MAX_DECIMAL_DIGITS];
        for (n, text) in [
            (0, "0"),
            (1, "1"),
            (10, "10"),
            (907, "907"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(decimal(n, &mut buf), text.as_bytes());
        }
    }

    #[test]
    fn the_envelope_is_byte_exact_and_frames_with_its_length() {
        let reply = br#"{"error":{"code":"x","message":"y"}}"#;
        let sealed = Sequenced { seq: 12, reply }.to_vec();
        let expected = [&br#"{"seq":12,"reply":"#[..], reply, b"}"].concat();
        assert_eq!(sealed, expected);
        assert_eq!(Sequenced { seq: 12, reply }.encoded_len(), expected.len());
        let mut wire = BytesMut::new();
        LengthLineCodec::default()
            .encode(Sequenced { seq: 12, reply }, &mut wire)
            .unwrap();
        assert_eq!(&wire[..LENGTH_LINE_LEN], &length_line(expected.len()).unwrap());
        assert_eq!(&wire[LENGTH_LINE_LEN..], &expected[..]);
    }

    #[test]
    fn opening_takes_back_exactly_what_sealing_put_in() {
        for (seq, reply) in [(1, &b"1"[..]), (u64::MAX, b"\"}\""), (40, br#"{"seq":2,"reply":3}"#)] {
            let sealed = Sequenced { seq, reply }.to_vec();
            assert_eq!(Sequenced::open(&sealed), Some(Sequenced { seq, reply }));
        }
    }

    #[test]
    fn opening_refuses_anything_but_the_exact_envelope() {
        let hostile: [&[u8]; 14] = [
            b"",
            b"{}",
            br#"{"pipeline":1}"#,
            br#"{"seq":1,"reply":}"#,
            br#"{"seq":,"reply":1}"#,
            br#"{"seq":01,"reply":1}"#,
            br#"{"seq":-1,"reply":1}"#,
            br#"{"seq":+1,"reply":1}"#,
            br#"{"seq": 1,"reply":1}"#,
            br#"{"seq":1, "reply":1}"#,
            br#"{"reply":1,"seq":1}"#,
            br#"{"seq":1,"reply":1} "#,
            br#"{"seq":18446744073709551616,"reply":1}"#,
            br#"{"seq":1.5,"reply":1}"#,
        ];
        for payload in hostile {
            assert_eq!(Sequenced::open(payload), None, "{}", String::from_utf8_lossy(payload));
        }
        assert_eq!(Sequenced::open(br#"{"seq":0,"reply":1}"#).map(|s| s.seq), Some(0));
    }

    #[test]
    fn the_negotiation_is_recognised_by_its_method_only() {
        assert!(is_negotiation(&negotiation_request(4)));
        assert!(is_negotiation(
            br#"{"data":null,"head":{"token":"t","method":"\u005fpipeline"}}"#
        ));
        for other in [
            &br#"{"head":{"method":"_ping"}}"#[..],
            br#"{"head":{}}"#,
            b"[",
            br#"{"_pipeline":1}"#,
        ] {
            assert!(!is_negotiation(other), "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn only_pipeline_one_accepts() {
        assert!(accepts_pipelining(PIPELINE_ACCEPTED));
        assert!(accepts_pipelining(br#"{"other":true,"pipeline":1}"#));
        for refusal in [
            &br#"{"error":{"code":"method_not_found","message":"no method named '_pipeline'"}}"#[..],
            br#"{"pipeline":2}"#,
            br#"{"pipeline":"1"}"#,
            br#"[1]"#,
            b"",
        ] {
            assert!(!accepts_pipelining(refusal), "{}", String::from_utf8_lossy(refusal));
        }
    }
}
