//! The peer behind nginx in row 4, and the `module_http` upstream in row 3: a plain hyper 1 server.
//!
//! `POST` (any path): the body is a request envelope; the reply is its `data`, as JSON — the same work
//! the SDK echo backends do. `GET` (any path): a fixed 100-byte JSON document.
//!
//! `hyper-echo 127.0.0.1:PORT`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// What `GET` returns: 100 bytes, the size of the POST bodies.
const GET_BODY: &[u8] =
    br#"{"user":"ada","id":12345,"tags":["bench","modproxy","upstream"],"text":"a fixed upstream reply."}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21241".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() != Method::POST {
        return Ok(json(StatusCode::OK, Bytes::from_static(GET_BODY)));
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}"))),
    };
    Ok(match serde_json::from_slice::<Value>(&body) {
        Ok(mut envelope) => {
            let data = envelope.get_mut("data").map(Value::take).unwrap_or(Value::Null);
            json(
                StatusCode::OK,
                serde_json::to_vec(&data).expect("a Value serialises").into(),
            )
        }
        Err(_) => json(StatusCode::BAD_REQUEST, Bytes::from_static(b"{}")),
    })
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
