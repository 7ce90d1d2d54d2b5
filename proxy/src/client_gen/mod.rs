//! `modproxy client`: a typed client generated from a socket module's contract (`_describe`): for the
//! browser (TypeScript or JavaScript), or for another backend (Python or Node, over the SDK's `Client`).
//!
//! [`shape`] reads what a schema says a value is, once for every language; [`types`] maps that to
//! TypeScript types and [`emit`] writes the browser clients; [`py_types`] and [`py`] do the same for
//! Python, [`node`] writes the Node client with [`types`]' types. All are pure; this file picks the
//! writer for a [`Lang`] and fetches the document, from a proxy or straight from a backend.

pub mod emit;
pub mod node;
pub mod py;
pub mod py_types;
pub mod shape;
pub mod types;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

/// The language of the generated client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A browser client in TypeScript.
    Ts,
    /// A browser client in JavaScript (an ES module) with JSDoc types.
    Js,
    /// A Python module for backend-to-backend calls: `TypedDict`s and a class wrapping
    /// `modproxy_sdk.Client` (and its twin for `AsyncClient`); mypy --strict and ruff clean.
    Py,
    /// A CommonJS module with JSDoc types for backend-to-backend calls: a class wrapping the Node SDK's
    /// `Client`, for `require` as it is.
    Node,
}

/// The client's source for `module` in `lang`, or why the document cannot give one.
pub fn client(document: &Value, module: &str, lang: Lang) -> Result<String, String> {
    match lang {
        Lang::Ts => emit::browser(document, module, true),
        Lang::Js => emit::browser(document, module, false),
        Lang::Py => py::client(document, module),
        Lang::Node => node::client(document, module),
    }
}

/// `modproxy client` arguments.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The socket module the client calls (`/<module>/`).
    #[arg(long)]
    pub module: String,
    /// What to write: a browser client (`ts`, `js`: an ES module that calls `fetch`), or a client for
    /// another backend (`py`, `node`: calls through the SDK's `Client`).
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// Where the document comes from: a proxy (`http://host:port`, or the full `…/<module>/_describe`
    /// URL) or a backend's `host:port`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub from: String,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Fetches the document and writes the client.
pub fn run(args: &ClientArgs) -> anyhow::Result<()> {
    let document = fetch_document(&args.from, &args.module)?;
    let source = client(&document, &args.module, args.lang).map_err(|why| anyhow::anyhow!("{}: {why}", args.from))?;
    std::fs::write(&args.out, source).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn fetch_document(from: &str, module: &str) -> anyhow::Result<Value> {
    let reply = match from.strip_prefix("http://") {
        Some(rest) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let path = if path.is_empty() {
                format!("/{module}/_describe")
            } else {
                format!("/{path}")
            };
            http_get(authority, &path)?
        }
        None if from.contains("://") => bail!("--from {from}: only http:// URLs or a backend's host:port"),
        None => describe_over_socket(from)?,
    };
    let document: Value = serde_json::from_slice(&reply).with_context(|| format!("{from}: the reply is not JSON"))?;
    if let Some(error) = document.get("error") {
        bail!("{from}: {error}");
    }
    Ok(document)
}

fn connect(address: &str) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// One HTTP/1.0 GET: the server closes after the body, so no chunking or keep-alive to handle.
fn http_get(authority: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut stream = connect(authority)?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the HTTP response has no end of head")?;
    let status_line = String::from_utf8_lossy(&response[..split])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let body = response[split + 4..].to_vec();
    if status_line.split(' ').nth(1) != Some("200") {
        bail!(
            "GET http://{authority}{path}: {status_line}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(body)
}

/// `_describe` as one frame straight to a backend.
fn describe_over_socket(address: &str) -> anyhow::Result<Vec<u8>> {
    let mut stream = connect(address)?;
    let request = crate::contract::DESCRIBE_REQUEST;
    stream.write_all(&modproxy_sdk::frame::length_line(request.len())?)?;
    stream.write_all(request)?;
    let mut line = [0u8; 12];
    stream.read_exact(&mut line)?;
    let len: usize = std::str::from_utf8(&line[..10])
        .ok()
        .and_then(|l| l.trim().parse().ok())
        .context("the backend's reply has no length line")?;
    let mut reply = vec![0u8; len];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_without_methods_is_refused() {
        for lang in [Lang::Ts, Lang::Js, Lang::Py, Lang::Node] {
            assert!(client(&serde_json::json!({}), "todo", lang).is_err(), "{lang:?}");
        }
    }
}
