//! One connection to the backend under test: blocking, with a deadline on every read, framed by the SDK's
//! reader.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use modproxy_sdk::frame::{read_frame, FrameError};

/// What came back when conform waited for a reply.
#[derive(Debug)]
pub enum Received {
    /// A whole reply frame.
    Frame(Vec<u8>),
    /// The backend closed the connection between frames.
    Closed,
    /// Nothing, or not a whole frame, within the deadline.
    Silent,
    /// The connection failed or carried a bad frame; the text says how.
    Broken(String),
}

impl Received {
    /// In words for a report line.
    pub fn describe(&self) -> String {
        match self {
            Received::Frame(payload) => super::probe::show(payload),
            Received::Closed => "the connection closed".into(),
            Received::Silent => "no reply in time".into(),
            Received::Broken(why) => why.clone(),
        }
    }
}

/// A connection to the backend under test.
pub struct Peer {
    stream: TcpStream,
    max_frame: usize,
}

impl Peer {
    /// Connects; each later read waits at most `patience`.
    pub fn connect(addr: SocketAddr, patience: Duration, max_frame: usize) -> Result<Peer, String> {
        let stream =
            TcpStream::connect_timeout(&addr, patience).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        // Each write goes out as its own segments, so that split lines really arrive split.
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(patience))
            .map_err(|e| format!("cannot set a read timeout: {e}"))?;
        Ok(Peer { stream, max_frame })
    }

    /// Writes bytes as they are: frames, pieces of frames, or several frames at once.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(|e| format!("the write failed: {e}"))
    }

    /// Waits for the next reply.
    pub fn receive(&mut self) -> Received {
        match read_frame(&mut self.stream, self.max_frame) {
            Ok(Some(payload)) => Received::Frame(payload),
            Ok(None) => Received::Closed,
            Err(FrameError::Io(e)) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Received::Silent
            }
            Err(FrameError::Io(e)) => Received::Broken(format!("the connection failed: {e}")),
            Err(e) => Received::Broken(format!("a bad reply frame: {e}")),
        }
    }

    /// Waits for a reply and returns its payload; anything else is an error in words.
    pub fn reply(&mut self) -> Result<Vec<u8>, String> {
        match self.receive() {
            Received::Frame(payload) => Ok(payload),
            other => Err(other.describe()),
        }
    }

    /// Sends one request (space-padded) and waits for its reply.
    pub fn call(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.write(&super::probe::frame(payload, super::probe::Padding::Spaces))?;
        self.reply()
    }

    /// Changes how long reads wait.
    pub fn patience(&mut self, patience: Duration) {
        let _ = self.stream.set_read_timeout(Some(patience));
    }

    /// Shuts down the writing side: a TCP half-close.
    pub fn half_close(&mut self) -> Result<(), String> {
        self.stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("cannot half-close: {e}"))
    }
}
