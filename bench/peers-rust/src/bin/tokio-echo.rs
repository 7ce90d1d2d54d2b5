//! Row 7's Rust peer: a length-line echo server written by hand on tokio, without the SDK — what a
//! programmer would write in an afternoon. Each request frame's `data` comes back as the reply frame.
//!
//! `tokio-echo 127.0.0.1:PORT`

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21242".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = echo(stream).await;
        });
    }
}

async fn echo(stream: TcpStream) -> std::io::Result<()> {
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
        let data = match serde_json::from_slice::<Value>(&payload) {
            Ok(mut envelope) => envelope.get_mut("data").map(Value::take).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        out.clear();
        out.extend_from_slice(b"          \r\n");
        serde_json::to_writer(&mut out, &data).expect("a Value serialises");
        let digits = (out.len() - 12).to_string();
        out[10 - digits.len()..10].copy_from_slice(digits.as_bytes());
        writer.write_all(&out).await?;
    }
}
