//! Request shaping for socket modules: the browser cannot be trusted to fill `head`, so a module may
//! declare fields that the proxy sets itself (overwriting what the client sent) before framing.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::config::HeadSource;
use crate::request_context::RequestContext;

/// Sets the declared `head` fields of an envelope and re-serialises it. `payload` is already known to be
/// JSON; it must be an object whose `head`, if present, is an object. A field whose header is absent is
/// removed, so a client cannot supply it.
pub fn shape(
    payload: &[u8],
    rules: &[(String, HeadSource)],
    headers: &HeaderMap,
    context: &RequestContext,
) -> Result<Bytes, String> {
    let mut envelope: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let Some(object) = envelope.as_object_mut() else {
        return Err("the request must be a JSON object {\"head\": {…}, \"data\": …}".into());
    };
    let head = object.entry("head").or_insert_with(|| Value::Object(Map::new()));
    let Some(head) = head.as_object_mut() else {
        return Err("\"head\" must be a JSON object".into());
    };
    for (field, source) in rules {
        let value = match source {
            HeadSource::Header(name) => headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned),
            HeadSource::RemoteAddr => Some(context.peer.ip().to_string()),
            HeadSource::RequestId => Some(context.id.to_string()),
        };
        match value {
            Some(value) => head.insert(field.clone(), Value::String(value)),
            None => head.remove(field),
        };
    }
    Ok(Bytes::from(
        serde_json::to_vec(&envelope).expect("a Value always serialises"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use serde_json::json;

    fn context() -> RequestContext {
        RequestContext {
            peer: "192.0.2.7:5555".parse().unwrap(),
            id: "rid-1".into(),
        }
    }

    fn rules() -> Vec<(String, HeadSource)> {
        vec![
            ("token".into(), HeadSource::Header(http::header::AUTHORIZATION)),
            ("client_ip".into(), HeadSource::RemoteAddr),
            ("request_id".into(), HeadSource::RequestId),
        ]
    }

    #[test]
    fn overwrites_what_the_client_sent() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Bearer real"));
        let body = br#"{"head":{"method":"add","token":"forged","client_ip":"1.2.3.4","trace":9},"data":[1]}"#;
        let shaped: Value = serde_json::from_slice(&shape(body, &rules(), &headers, &context()).unwrap()).unwrap();
        assert_eq!(
            shaped,
            json!({"head": {"method": "add", "token": "Bearer real", "client_ip": "192.0.2.7",
                            "request_id": "rid-1", "trace": 9}, "data": [1]})
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
}
