//! Row 7a's second peer: a length-line server written by hand on tokio and serde, without the SDK, that
//! does what the SDK does with a request — parse the envelope, dispatch on `head.method`, call `echo`,
//! serialise its result as the reply (an unknown method or a malformed envelope gets the protocol's error
//! reply). `tokio-echo` is the floor (no dispatch); this is what a user would write instead of the SDK.
//!
//! `tokio-dispatch 127.0.0.1:PORT`

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The request envelope (docs/PROTOCOL.md, section 2.1); other keys are ignored.
#[derive(Deserialize)]
struct Envelope {
    head: Head,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct Head {
    method: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21248".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = serve(stream).await;
        });
    }
}

fn echo(data: Value) -> Value {
    data
}

/// The reply to one request payload: the method's result, or an error reply (section 2.3).
fn dispatch(payload: &[u8]) -> Value {
    match serde_json::from_slice::<Envelope>(payload) {
        Ok(envelope) => match envelope.head.method.as_str() {
            "echo" => echo(envelope.data),
            other => error("method_not_found", &format!("no method named '{other}'")),
        },
        Err(e) => error("bad_request", &e.to_string()),
    }
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

async fn serve(stream: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = [0u8; 12];
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        if reader.read_exact(&mut line).await.is_err() {
            return Ok(());
        }
        let len: usize = std::str::from_utf8(&line[..10])
            .ok()
            .and_then(|digits| digits.trim_start().parse().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad length line"))?;
        payload.resize(len, 0);
        reader.read_exact(&mut payload).await?;
        out.clear();
        out.extend_from_slice(b"          \r\n");
        serde_json::to_writer(&mut out, &dispatch(&payload)).expect("a Value serialises");
        let digits = (out.len() - 12).to_string();
        out[10 - digits.len()..10].copy_from_slice(digits.as_bytes());
        writer.write_all(&out).await?;
    }
}
