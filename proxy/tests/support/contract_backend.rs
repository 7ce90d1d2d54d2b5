//! A keep-alive socket backend that answers `_describe` with a fixed contract document (or, without one,
//! `method_not_found`, as a backend that predates contracts does), echoes every other method's `data`, and
//! records each request it reads, so a test can tell what reached it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The fixture's document: `add` takes two integers, `tag` an enum and an optional note, `any` anything.
pub fn fixture_document() -> Value {
    serde_json::from_str(include_str!("../fixtures/contract/todo.json")).unwrap()
}

pub struct ContractBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    document: Arc<Mutex<Option<Value>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl ContractBackend {
    /// Answers `_describe` with `document`, or with `method_not_found` when it is `None`.
    pub fn start(document: Option<Value>) -> ContractBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let document = Arc::new(Mutex::new(document));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (recorded, described, held) = (seen.clone(), document.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                held.lock().unwrap().push(stream.try_clone().unwrap());
                let (seen, document) = (recorded.clone(), described.clone());
                std::thread::spawn(move || serve(stream, &document, &seen));
            }
        });
        ContractBackend {
            addr,
            seen,
            document,
            open,
        }
    }

    /// Acts out a redeploy: answers `_describe` with `document` from now on and closes every connection
    /// it holds, as a restarted backend's would be.
    pub fn redeploy(&self, document: Value) {
        *self.document.lock().unwrap() = Some(document);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Every request read so far, in order.
    pub fn seen(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }

    /// How many requests of `method` it has read.
    pub fn count(&self, method: &str) -> usize {
        self.seen().iter().filter(|r| r["head"]["method"] == method).count()
    }
}

fn serve(stream: TcpStream, document: &Mutex<Option<Value>>, seen: &Mutex<Vec<Value>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(payload) = super::read_frame(&mut reader) {
        let request: Value = serde_json::from_slice(&payload).unwrap();
        seen.lock().unwrap().push(request.clone());
        let method = request["head"]["method"].as_str().unwrap_or("");
        let reply = match (method, document.lock().unwrap().as_ref()) {
            ("_describe", Some(document)) => document.clone(),
            ("_pipeline", _) | ("_describe", None) => not_found(method),
            _ => json!({ "ok": request["data"] }),
        };
        let reply = serde_json::to_vec(&reply).unwrap();
        if writer.write_all(&super::frame(&reply)).is_err() {
            return;
        }
    }
}

fn not_found(method: &str) -> Value {
    json!({ "error": { "code": "method_not_found", "message": format!("no method named '{method}'") } })
}
