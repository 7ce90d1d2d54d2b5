//! Request shaping for socket modules: the browser cannot be trusted to fill `head`, so a module may
//! declare fields that the proxy sets itself (overwriting what the client sent) before framing.
//!
//! Only `head` is rewritten. The new head is spliced into the client's bytes, so everything else (a
//! number no float can hold, spacing, key order) reaches the backend exactly as sent.

use bytes::Bytes;
use http::HeaderMap;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::HeadSource;
use crate::request_context::{self, RequestContext};

/// Sets the declared `head` fields of an envelope. `payload` is already known to be JSON; it must be an
/// object with at most one `head`, which, if present, is an object. A field whose header is absent is
/// removed, so a client cannot supply it.
pub fn shape(
    payload: &[u8],
    rules: &[(String, HeadSource)],
    headers: &HeaderMap,
    context: &RequestContext,
) -> Result<Bytes, String> {
    const NOT_AN_ENVELOPE: &str = "the request must be a JSON object {\"head\": {…}, \"data\": …}";
    let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
    let envelope = entries(text).map_err(|_| NOT_AN_ENVELOPE.to_owned())?;
    let mut heads = envelope.iter().filter(|(key, _)| key == "head").map(|(_, raw)| *raw);
    let old_head = heads.next();
    if heads.next().is_some() {
        return Err("the request has more than one \"head\"".into());
    }
    let mut head: Vec<(String, Box<RawValue>)> = match old_head {
        Some(raw) => entries(raw.get())
            .map_err(|_| "\"head\" must be a JSON object".to_owned())?
            .into_iter()
            .map(|(key, raw)| (key, raw.to_owned()))
            .collect(),
        None => Vec::new(),
    };
    for (field, source) in rules {
        let value = match source {
            HeadSource::Header(name) => headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned),
            HeadSource::RemoteAddr => Some(context.peer.ip().to_string()),
            // The request's own id, so the backend's matches the access log; fresh when the client chose
            // it, since a field the backend trusts must not be the client's.
            HeadSource::Generated if context.id.from_client() => Some(request_context::generate().to_string()),
            HeadSource::Generated => Some(context.id.to_string()),
        };
        head.retain(|(key, _)| key != field);
        if let Some(value) = value {
            let raw = serde_json::value::to_raw_value(&value).expect("a string always serialises");
            head.push((field.clone(), raw));
        }
    }
    let new_head = render(&head);
    let shaped = match old_head {
        Some(raw) => {
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            [&text[..start], &new_head, &text[start + raw.get().len()..]].concat()
        }
        None => {
            let open = text.find('{').expect("an object starts with '{'") + 1;
            let comma = if envelope.is_empty() { "" } else { "," };
            [&text[..open], "\"head\":", &new_head, comma, &text[open..]].concat()
        }
    };
    Ok(Bytes::from(shaped))
}

/// A JSON object's members in order, each value as the bytes it was sent as (borrowed from `text`, so
/// its position there is known).
fn entries(text: &str) -> serde_json::Result<Vec<(String, &RawValue)>> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut members = Vec::new();
            while let Some(member) = map.next_entry()? {
                members.push(member);
            }
            Ok(members)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let members = (&mut deserializer).deserialize_map(Members)?;
    deserializer.end()?;
    Ok(members)
}

/// `{"key":value,…}` from members whose values are already JSON.
fn render(members: &[(String, Box<RawValue>)]) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).expect("a string always serialises"));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::{json, Value};

    /// A context whose id the client chose (`X-Request-Id: rid-1`).
    fn context() -> RequestContext {
        let mut headers = HeaderMap::new();
        headers.insert(request_context::REQUEST_ID, HeaderValue::from_static("rid-1"));
        RequestContext {
            peer: "192.0.2.7:5555".parse().unwrap(),
            id: request_context::request_id(&headers),
        }
    }

    fn rules() -> Vec<(String, HeadSource)> {
        vec![
            ("token".into(), HeadSource::Header(http::header::AUTHORIZATION)),
            ("client_ip".into(), HeadSource::RemoteAddr),
            ("request_id".into(), HeadSource::Generated),
        ]
    }

    #[test]
    fn overwrites_what_the_client_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer real"));
        let body = br#"{"head":{"method":"add","token":"forged","client_ip":"1.2.3.4","trace":9},"data":[1]}"#;
        let mut shaped: Value = serde_json::from_slice(&shape(body, &rules(), &headers, &context()).unwrap()).unwrap();
        let id = shaped["head"].as_object_mut().unwrap().remove("request_id").unwrap();
        assert_eq!(id.as_str().unwrap().len(), 32, "a generated id: {id}");
        assert_eq!(
            shaped,
            json!({"head": {"method": "add", "token": "Bearer real", "client_ip": "192.0.2.7",
                            "trace": 9}, "data": [1]})
        );
    }

    #[test]
    fn an_absent_header_removes_the_field() {
        let body = br#"{"head":{"method":"add","token":"forged"}}"#;
        let shaped: Value =
            serde_json::from_slice(&shape(body, &rules(), &HeaderMap::new(), &context()).unwrap()).unwrap();
        assert_eq!(shaped["head"].get("token"), None);
        assert_eq!(shaped["head"]["method"], "add");
    }

    #[test]
    fn refuses_envelopes_it_cannot_shape() {
        for body in [&b"[1,2]"[..], br#"{"head": 3}"#, b"\"text\""] {
            assert!(shape(body, &rules(), &HeaderMap::new(), &context()).is_err());
        }
        let missing_head = shape(br#"{"data":1}"#, &rules(), &HeaderMap::new(), &context()).unwrap();
        assert!(serde_json::from_slice::<Value>(&missing_head).unwrap()["head"].is_object());
    }

    #[test]
    fn everything_but_the_ruled_fields_is_byte_exact() {
        // Numbers a float would round, spacing, key order and unruled head fields reach the backend as sent.
        let body = concat!(
            r#"{ "data" : {"big": 12345678901234567890123, "long": 0.10000000000000000000001, "e": 1E+2},"#,
            r#"  "head" : {"method":"add", "trace": 1.50, "token":"forged"} , "tail":[ 1.0 ] }"#
        );
        let shaped = shape(body.as_bytes(), &rules(), &HeaderMap::new(), &context()).unwrap();
        let shaped = std::str::from_utf8(&shaped).unwrap();
        let head_at = body.find(r#"{"method""#).unwrap();
        let head_end = body.find(" , \"tail\"").unwrap();
        assert_eq!(&shaped[..head_at], &body[..head_at], "{shaped}");
        assert!(shaped.ends_with(&body[head_end..]), "{shaped}");
        let head: Value = serde_json::from_str(&shaped[head_at..shaped.len() - (body.len() - head_end)]).unwrap();
        assert_eq!(head["trace"].to_string(), "1.5");
        assert!(
            shaped.contains(r#""trace":1.50"#),
            "an unruled head field keeps its bytes: {shaped}"
        );
        assert_eq!(head["client_ip"], "192.0.2.7");
        assert_eq!(head.get("token"), None);
    }

    #[test]
    fn a_missing_head_is_added_without_touching_the_rest() {
        let body = r#"{"data":12345678901234567890123}"#;
        let shaped = shape(body.as_bytes(), &rules(), &HeaderMap::new(), &context()).unwrap();
        let shaped = std::str::from_utf8(&shaped).unwrap();
        assert!(shaped.ends_with(r#","data":12345678901234567890123}"#), "{shaped}");
        assert!(serde_json::from_str::<Value>(shaped).unwrap()["head"].is_object());
        let empty = shape(b" {} ", &rules(), &HeaderMap::new(), &context()).unwrap();
        assert!(serde_json::from_slice::<Value>(&empty).unwrap()["head"].is_object());
    }

    #[test]
    fn generate_never_passes_the_clients_request_id() {
        // The context's id may be the client's own X-Request-Id: a field the backend trusts must not be.
        let body = br#"{"head":{"method":"add","request_id":"forged"}}"#;
        for _ in 0..3 {
            let shaped: Value =
                serde_json::from_slice(&shape(body, &rules(), &HeaderMap::new(), &context()).unwrap()).unwrap();
            let id = shaped["head"]["request_id"].as_str().unwrap().to_owned();
            assert_ne!(id, "rid-1");
            assert_ne!(id, "forged");
            assert_eq!(id.len(), 32, "{id}");
        }
    }

    #[test]
    fn generate_passes_the_id_the_proxy_made() {
        // The backend's id is the one in the access log and the response's X-Request-Id.
        let context = RequestContext {
            id: request_context::generate(),
            ..context()
        };
        let body = br#"{"head":{"method":"add","request_id":"forged"}}"#;
        let shaped: Value =
            serde_json::from_slice(&shape(body, &rules(), &HeaderMap::new(), &context).unwrap()).unwrap();
        assert_eq!(shaped["head"]["request_id"], &*context.id);
    }

    #[test]
    fn a_second_head_is_refused() {
        // Which of two `head`s a backend reads is its parser's choice: the proxy will not guess.
        let body = br#"{"head":{"method":"a"},"data":1,"head":{"method":"a","token":"forged"}}"#;
        assert!(shape(body, &rules(), &HeaderMap::new(), &context()).is_err());
    }
}
