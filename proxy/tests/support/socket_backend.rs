//! Socket backends in the seed's styles, written for tests: real TCP, one thread per connection.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// How a test backend behaves.
#[derive(Clone, Copy)]
pub enum Style {
    /// Java seed: `%010d` reply, then close.
    ZeroPaddedThenClose,
    /// Go-like keep-alive with `%10d` replies.
    SpaceKeepAlive,
    /// Reads the request, never answers.
    Hang,
    /// Speaks HTTP/1.1 with keep-alive instead of frames (an upstream for `module_http`): answers every
    /// request `200` with `{"port": <port>}`.
    Http,
    /// Answers a line that is not a length line.
    Garbage,
    /// Announces 100 bytes, sends 5, closes.
    Short,
    /// Announces a reply bigger than the proxy's max_frame.
    Huge,
    /// Reads the request, closes without a reply.
    CloseAfterRead,
    /// Keep-alive, but each reply takes this long.
    Slow(Duration),
    /// Like the SDKs: accepts `_pipeline`, then answers in sequenced envelopes (in order), each reply
    /// after this long.
    Sequenced(Duration),
    /// Replies once, then waits this long without reading and closes: a request sent meanwhile is reset.
    ReplyThenCloseUnread(Duration),
}

/// A backend on a free port; counts connections and requests.
pub struct Backend {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
    /// Clones of the open connections, so `kill` can reset them; removed when a connection ends.
    open: Arc<Mutex<HashMap<usize, TcpStream>>>,
}

impl Backend {
    pub fn start(style: Style) -> Backend {
        Backend::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), style)
    }

    pub fn start_on(listener: TcpListener, style: Style) -> Backend {
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(HashMap::new()));
        let (c, r, k, o) = (connections.clone(), requests.clone(), killed.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if k.load(Ordering::SeqCst) {
                    // Dropping the listener closes the port: connects are refused from now on.
                    return;
                }
                let Ok(stream) = stream else { continue };
                let id = c.fetch_add(1, Ordering::SeqCst);
                o.lock().unwrap().insert(id, stream.try_clone().unwrap());
                let (r, o) = (r.clone(), o.clone());
                std::thread::spawn(move || {
                    serve_connection(stream, style, &r);
                    o.lock().unwrap().remove(&id);
                });
            }
        });
        Backend {
            addr,
            connections,
            requests,
            killed,
            open,
        }
    }

    /// Dies like a crashed process: the port closes and every open connection is reset.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for (_, stream) in self.open.lock().unwrap().drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        std::thread::sleep(Duration::from_millis(50));
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Echoes `{"echo": <request>, "port": <backend port>}` in the given style.
fn serve_connection(stream: TcpStream, style: Style, requests: &AtomicUsize) {
    if let Style::Http = style {
        return serve_http(stream, requests);
    }
    let port = stream.local_addr().unwrap().port();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut sequenced: Option<u64> = None;
    while let Some(payload) = super::read_frame(&mut reader) {
        // The proxy's pipelining question (docs/PROTOCOL.md 4.2) is not a client's request; these
        // backends answer it as any other frame, which the proxy takes as a refusal.
        if modproxy_sdk::pipeline::is_negotiation(&payload) {
            if let (Style::Sequenced(_), None) = (style, sequenced) {
                let accepted = modproxy_sdk::pipeline::PIPELINE_ACCEPTED;
                let _ = writer.write_all(&super::frame(accepted));
                sequenced = Some(0);
                continue;
            }
        } else {
            requests.fetch_add(1, Ordering::SeqCst);
        }
        let request: Value = serde_json::from_slice(&payload).unwrap();
        let mut reply = serde_json::to_vec(&json!({ "echo": request, "port": port })).unwrap();
        if let Some(seq) = sequenced.as_mut() {
            *seq += 1;
            reply = modproxy_sdk::pipeline::Sequenced {
                seq: *seq,
                reply: &reply,
            }
            .to_vec();
        }
        let keep_alive_reply = [format!("{:>10}\r\n", reply.len()).as_bytes(), &reply].concat();
        let _ = match style {
            Style::ZeroPaddedThenClose => {
                let _ = writer.write_all(&[format!("{:010}\r\n", reply.len()).as_bytes(), &reply].concat());
                return;
            }
            Style::SpaceKeepAlive => writer.write_all(&keep_alive_reply),
            Style::Slow(delay) | Style::Sequenced(delay) => {
                std::thread::sleep(delay);
                writer.write_all(&keep_alive_reply)
            }
            Style::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Style::Garbage => writer.write_all(b"HTTP/1.1 200 OK\r\n\r\n"),
            Style::Short => writer.write_all(b"       100\r\n{\"a\":"),
            Style::Huge => writer.write_all(b"1000000000\r\n{}"),
            Style::CloseAfterRead => return,
            Style::ReplyThenCloseUnread(linger) => {
                let _ = writer.write_all(&keep_alive_reply);
                std::thread::sleep(linger);
                return;
            }
            Style::Http => unreachable!("served by serve_http"),
        };
        if !matches!(style, Style::SpaceKeepAlive | Style::Slow(_) | Style::Sequenced(_)) {
            return;
        }
    }
}

/// HTTP/1.1 keep-alive: reads each request head and its Content-Length body, answers with the port.
fn serve_http(stream: TcpStream, requests: &AtomicUsize) {
    let port = stream.local_addr().unwrap().port();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while super::read_request(&mut reader).is_some() {
        requests.fetch_add(1, Ordering::SeqCst);
        let reply = format!("{{\"port\":{port}}}");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A request payload.
pub fn envelope(method: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "head": { "method": method, "token": "t0" }, "data": data })).unwrap()
}
