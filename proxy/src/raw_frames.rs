//! `[server] raw_frames`: one port, two protocols. A connection to the HTTP port whose first 12 bytes form
//! a length line is a socket-protocol client: each frame's `head.module` names a `module_socket`, the
//! payload goes to that module's nodes through the same gateway as an HTTP `POST` (balancer, pool,
//! timeouts), and the reply frame is the backend's reply. Anything else is handed to hyper untouched.
//!
//! Each frame then enters the app by the same door as an HTTP request
//! ([`App::handle_frame`](crate::app::App::handle_frame)): this file is only the connection, and what a
//! frame asks is read by [`FrameRequest`].
//!
//! Telling the two apart never consumes a byte (the stream is peeked) and never delays HTTP: a request
//! line starts with a letter, and a length line only with padding or digits, so the first byte that is
//! neither decides for HTTP at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use http_body::Frame;
use http_body_util::StreamBody;
use modproxy_sdk::frame::{parse_length_line, LENGTH_LINE_LEN};
use modproxy_sdk::{FrameError, LengthLineCodec, MethodError};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::app::LiveApp;
use crate::body_budget::BodyPermit;
use crate::frame_request::{self, FrameRequest};
use crate::request_body::{self, BodyError};
use crate::send_timeout::SendTimeout;

/// How long the rest of a length line may take once its first bytes have arrived. Clients write the line
/// and the payload at once, so this only matters on a congested link; an HTTP client never waits on it.
const REST_OF_LINE_WAIT: Duration = Duration::from_secs(1);

/// How often a partial length line is peeked again (a peeked socket stays readable, so waiting for
/// readiness would spin).
const PEEK_INTERVAL: Duration = Duration::from_millis(5);

/// The most bytes of a frame's payload read at once.
const READ_CHUNK: usize = 64 * 1024;

/// A raw-frame connection that sends no frame for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// A length line: the socket protocol.
    Frames,
    /// Anything else: HTTP (or garbage, which hyper answers).
    Http,
    /// Too few bytes to tell, and they could still begin a length line.
    Undecided,
}

/// Classifies the bytes seen so far at the start of a connection. Pure, so it can be tested with
/// hostile inputs.
pub fn sniff(prefix: &[u8]) -> Sniffed {
    if let Some(line) = prefix.get(..LENGTH_LINE_LEN) {
        let line: &[u8; LENGTH_LINE_LEN] = line.try_into().expect("slice of LENGTH_LINE_LEN");
        // Size limits are the codec's business: an oversized frame is still a raw-frame client, and is
        // told so in its own protocol.
        return match parse_length_line(line, usize::MAX) {
            Ok(_) => Sniffed::Frames,
            Err(_) => Sniffed::Http,
        };
    }
    let could_be_line = prefix.iter().enumerate().all(|(column, &byte)| match column {
        0..=9 => byte == b' ' || byte.is_ascii_digit(),
        10 => byte == b'\r',
        _ => byte == b'\n',
    });
    if could_be_line {
        Sniffed::Undecided
    } else {
        Sniffed::Http
    }
}

/// Serves `stream` here if `[server] raw_frames` is on and it opens with a length line; otherwise gives it
/// back, unread, for HTTP. `None` means the connection was served (or closed) here.
pub async fn serve_if_raw(
    stream: TcpStream,
    peer: SocketAddr,
    live: &LiveApp,
    stopping: &CancellationToken,
) -> Option<TcpStream> {
    let (enabled, first_byte_wait, max_body, send_timeout) = {
        let app = live.load();
        let server = &app.config().server;
        (
            server.raw_frames,
            server.header_timeout,
            server.max_body,
            server.send_timeout,
        )
    };
    if !enabled {
        return Some(stream);
    }
    let verdict = tokio::select! {
        () = stopping.cancelled() => return Some(stream),
        verdict = peek_verdict(&stream, first_byte_wait) => verdict,
    };
    match verdict {
        Some(Sniffed::Frames) => {
            tracing::debug!(%peer, "raw-frame client");
            serve(stream, peer, live, (max_body, send_timeout), stopping).await;
            None
        }
        Some(_) => Some(stream),
        None => {
            tracing::debug!(%peer, "connection closed: nothing sent within header_timeout");
            None
        }
    }
}

/// Peeks until the first bytes decide. `None` when the peer sent nothing within `first_byte_wait` or went
/// away; HTTP when a partial length line stalls.
async fn peek_verdict(stream: &TcpStream, first_byte_wait: Duration) -> Option<Sniffed> {
    let mut line = [0u8; LENGTH_LINE_LEN];
    // A client may connect early and speak later (browsers pre-connect): it gets as long as hyper gives
    // for a request head.
    let got = match tokio::time::timeout(first_byte_wait, stream.peek(&mut line)).await {
        Ok(Ok(got)) if got > 0 => got,
        _ => return None,
    };
    let mut got = got;
    let deadline = Instant::now() + REST_OF_LINE_WAIT;
    loop {
        match sniff(&line[..got]) {
            Sniffed::Undecided if Instant::now() < deadline => {}
            Sniffed::Undecided => return Some(Sniffed::Http),
            decided => return Some(decided),
        }
        tokio::time::sleep(PEEK_INTERVAL).await;
        got = match stream.peek(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(got) => got,
        };
    }
}

/// Reads frames and answers each in turn until the client leaves, breaks the framing, idles out, stalls
/// mid-frame, or the server stops. A frame being answered when the server stops is answered first.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    live: &LiveApp,
    (max_body, send_timeout): (u64, Duration),
    stopping: &CancellationToken,
) {
    let max_frame = usize::try_from(max_body).unwrap_or(usize::MAX);
    let (mut reader, writer) = stream.into_split();
    // A client that stops reading its replies is cut off (`send_timeout`).
    let mut writer = FramedWrite::new(SendTimeout::new(writer, send_timeout), LengthLineCodec::new(max_frame));
    loop {
        // A frame's bytes are held against `[server] body_memory` until it is answered.
        let (payload, _permit) = match read_frame(&mut reader, max_frame, live, stopping).await {
            Ok(frame) => frame,
            Err(Ended::Quietly) => return,
            Err(Ended::Refused(refusal)) => {
                let _ = writer.send(Bytes::from(refusal.to_reply())).await;
                return;
            }
        };
        let reply = match FrameRequest::parse(payload) {
            Ok(request) => live.load_full().handle_frame(request, peer).await,
            Err(error) => frame_request::refuse(peer, error),
        };
        match writer.send(reply).await {
            Ok(()) => {}
            Err(_) => {
                tracing::debug!(%peer, "raw-frame client did not take its reply; closed");
                return;
            }
        }
    }
}

/// How a raw-frame connection ends when no frame comes.
enum Ended {
    /// Closed, idle, stopping, or broken framing: nothing more to say.
    Quietly,
    /// Told why in the protocol, then closed (the rest of the stream cannot be trusted).
    Refused(MethodError),
}

/// Reads one frame: its length line within `IDLE_TIMEOUT` of the last one, then its payload as an HTTP
/// body is read (`max_body`, `body_chunk_timeout`, `body_timeout`, `body_memory`).
async fn read_frame(
    reader: &mut OwnedReadHalf,
    max_frame: usize,
    live: &LiveApp,
    stopping: &CancellationToken,
) -> Result<(Bytes, BodyPermit), Ended> {
    let peer = reader.peer_addr().ok();
    let mut line = [0u8; LENGTH_LINE_LEN];
    let first = tokio::select! {
        () = stopping.cancelled() => return Err(Ended::Quietly),
        first = tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut line[..1])) => first,
    };
    match first {
        Err(_) => {
            tracing::debug!(?peer, "raw-frame connection idle; closed");
            return Err(Ended::Quietly);
        }
        Ok(Ok(0)) | Ok(Err(_)) => return Err(Ended::Quietly),
        Ok(Ok(_)) => {}
    }
    let limits = live.load().body_limits().clone();
    match tokio::time::timeout(limits.chunk_timeout, reader.read_exact(&mut line[1..])).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(Ended::Quietly),
        Err(_) => {
            tracing::debug!(?peer, "raw-frame client stalled in a length line; closed");
            return Err(Ended::Quietly);
        }
    }
    let len = match parse_length_line(&line, max_frame) {
        Ok(len) => len,
        Err(FrameError::TooLarge { len, max }) => {
            tracing::warn!(?peer, len, max, "raw frame over [server] max_body; connection closed");
            return Err(Ended::Refused(MethodError::new(
                "payload_too_large",
                format!("a frame of {len} bytes is over the limit of {max} bytes (server.max_body)"),
            )));
        }
        Err(error) => {
            tracing::warn!(?peer, %error, "raw-frame client broke the framing; connection closed");
            return Err(Ended::Quietly);
        }
    };
    let payload = futures_util::stream::unfold((reader, len), |(reader, left)| async move {
        if left == 0 {
            return None;
        }
        let mut chunk = BytesMut::with_capacity(left.min(READ_CHUNK));
        match reader.read_buf(&mut chunk).await {
            Ok(0) => Some((Err(io::Error::from(io::ErrorKind::UnexpectedEof)), (reader, 0))),
            Ok(got) => Some((Ok(Frame::data(chunk.freeze())), (reader, left - got))),
            Err(error) => Some((Err(error), (reader, 0))),
        }
    });
    let payload = StreamBody::new(Box::pin(payload));
    match request_body::read_whole(payload, Some(len as u64), &limits).await {
        Ok(frame) => Ok(frame),
        Err(error @ BodyError::OverBudget(_)) => {
            tracing::warn!(?peer, %error, "raw frame not read; connection closed");
            Err(Ended::Refused(MethodError::new(
                "service_unavailable",
                error.to_string(),
            )))
        }
        Err(error @ BodyError::Stalled(_)) => {
            tracing::warn!(?peer, %error, "raw-frame client stalled mid-frame; connection closed");
            Err(Ended::Quietly)
        }
        Err(error) => {
            tracing::debug!(?peer, %error, "raw-frame client left mid-frame");
            Err(Ended::Quietly)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_lines_are_frames_and_request_lines_are_http() {
        for line in ["        42\r\n", "0000000042\r\n", "   0000042\r\n", "9999999999\r\n"] {
            assert_eq!(sniff(line.as_bytes()), Sniffed::Frames, "{line:?}");
        }
        let with_payload = [&b"         2\r\n"[..], b"{}"].concat();
        assert_eq!(sniff(&with_payload), Sniffed::Frames);
        for start in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /s3/ HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"G",
            b"hello world\r\n",
        ] {
            assert_eq!(sniff(start), Sniffed::Http, "{:?}", String::from_utf8_lossy(start));
        }
    }

    #[test]
    fn near_misses_are_http() {
        for line in [
            "          \r\n", // blank: no number
            "        42\n\r",
            "       -42\r\n",
            "      4 2 \r\n",
            "        42\r\r",
            "42        \r\n",
        ] {
            assert_eq!(sniff(line.as_bytes()), Sniffed::Http, "{line:?}");
        }
    }

    #[test]
    fn partial_lines_wait_only_while_they_could_still_be_one() {
        for partial in [&b""[..], b" ", b"   00", b"        42", b"        42\r"] {
            assert_eq!(sniff(partial), Sniffed::Undecided, "{partial:?}");
        }
        for partial in [&b"  x"[..], b"        42\n", b"        4\r", b"        42\rx"] {
            assert_eq!(sniff(partial), Sniffed::Http, "{partial:?}");
        }
    }
}
