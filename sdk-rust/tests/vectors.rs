//! The shared length-line vectors (`tests/vectors/*.json`, format in its README) against every reader
//! this crate has: the stream decoder fed in every chunking, the blocking `read_frame`, and a real server.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use modproxy_sdk::frame::{read_frame, DEFAULT_MAX_FRAME};
use modproxy_sdk::pipeline::Sequenced;
use modproxy_sdk::{decode_stream, Router, Server};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Deserialize)]
struct Vector {
    description: String,
    input: String,
    max_frame: Option<usize>,
    frames: Vec<String>,
    error: Option<String>,
}

impl Vector {
    fn max_frame(&self) -> usize {
        self.max_frame.unwrap_or(DEFAULT_MAX_FRAME)
    }

    /// What a correct reader delivers: the frames, then the error kind if any.
    fn expected(&self) -> Outcome {
        Outcome {
            frames: self.frames.iter().map(|f| f.as_bytes().to_vec()).collect(),
            error: self.error.clone(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Vec<u8>>,
    error: Option<String>,
}

fn vectors() -> Vec<(String, Vector)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut vectors: Vec<(String, Vector)> = std::fs::read_dir(&dir)
        .expect("tests/vectors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let vector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.file_name().unwrap().to_string_lossy().into_owned(), vector)
        })
        .collect();
    vectors.sort_by(|a, b| a.0.cmp(&b.0));
    // Guards against a moved directory making every test below vacuous.
    assert!(
        vectors.len() >= 20,
        "only {} vectors found in {}",
        vectors.len(),
        dir.display()
    );
    vectors
}

/// Feeds `chunks` to a fresh decoder as a socket would deliver them, then signals end of stream.
fn decode_chunks(max_frame: usize, chunks: &[&[u8]]) -> Outcome {
    let decoded = decode_stream(max_frame, chunks);
    Outcome {
        frames: decoded.frames.iter().map(|frame| frame.to_vec()).collect(),
        error: decoded.error.map(|e| e.kind().to_owned()),
    }
}

/// Reads frames with the blocking reader until a clean end or an error.
fn read_blocking(max_frame: usize, mut reader: impl Read) -> Outcome {
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut reader, max_frame) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return Outcome { frames, error: None },
            Err(e) => {
                return Outcome {
                    frames,
                    error: Some(e.kind().to_owned()),
                }
            }
        }
    }
}

/// A reader that hands out one byte per `read`, like the slowest possible socket.
struct OneByteAtATime<'a>(&'a [u8]);

impl Read for OneByteAtATime<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&byte, rest)), Some(slot)) => {
                *slot = byte;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn codec_in_one_chunk() {
    for (name, v) in vectors() {
        let got = decode_chunks(v.max_frame(), &[v.input.as_bytes()]);
        assert_eq!(got, v.expected(), "{name}: {}", v.description);
    }
}

#[test]
fn codec_one_byte_at_a_time() {
    for (name, v) in vectors() {
        let bytes: Vec<&[u8]> = v.input.as_bytes().chunks(1).collect();
        let got = decode_chunks(v.max_frame(), &bytes);
        assert_eq!(got, v.expected(), "{name}: {}", v.description);
    }
}

#[test]
fn codec_split_at_every_position() {
    for (name, v) in vectors() {
        let input = v.input.as_bytes();
        for i in 0..=input.len() {
            let got = decode_chunks(v.max_frame(), &[&input[..i], &input[i..]]);
            assert_eq!(got, v.expected(), "{name} split at {i}: {}", v.description);
        }
    }
}

#[test]
fn codec_split_at_every_pair_of_positions() {
    for (name, v) in vectors() {
        let input = v.input.as_bytes();
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = decode_chunks(v.max_frame(), &[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(got, v.expected(), "{name} split at {i} and {j}: {}", v.description);
            }
        }
    }
}

#[test]
fn blocking_reader_in_one_read() {
    for (name, v) in vectors() {
        let got = read_blocking(v.max_frame(), v.input.as_bytes());
        assert_eq!(got, v.expected(), "{name}: {}", v.description);
    }
}

#[test]
fn blocking_reader_one_byte_at_a_time() {
    for (name, v) in vectors() {
        let got = read_blocking(v.max_frame(), OneByteAtATime(v.input.as_bytes()));
        assert_eq!(got, v.expected(), "{name}: {}", v.description);
    }
}

/// The server's side of each vector over real TCP: one reply per delivered frame (these payloads are
/// not request envelopes, so each reply is a `bad_request`), one more `bad_request` for a bad stream,
/// and the connection closes exactly when the stream went bad.
#[tokio::test]
async fn server_answers_every_vector_frame_and_closes_on_errors() {
    for (name, v) in vectors() {
        let server = Server::bind("127.0.0.1:0").await.unwrap().max_frame(v.max_frame());
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve_with_shutdown(Router::new(), async {
            let _ = stopped.await;
        }));

        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(v.input.as_bytes()).await.unwrap();
        // Half-close so that a truncated frame is seen as truncated rather than as slow.
        stream.shutdown().await.unwrap();
        let mut wire = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut wire))
            .await
            .unwrap_or_else(|_| panic!("{name}: the server neither replied nor closed"))
            .unwrap();

        let replies = read_blocking(DEFAULT_MAX_FRAME, wire.as_slice());
        assert_eq!(replies.error, None, "{name}: the server's own framing is valid");
        let expected = v.frames.len() + usize::from(v.error.is_some());
        assert_eq!(replies.frames.len(), expected, "{name}: {}", v.description);
        for reply in &replies.frames {
            let reply: serde_json::Value = serde_json::from_slice(reply).unwrap();
            assert_eq!(reply["error"]["code"], "bad_request", "{name}: {reply}");
        }
        if v.error.is_some() {
            let last: serde_json::Value = serde_json::from_slice(replies.frames.last().unwrap()).unwrap();
            let message = last["error"]["message"].as_str().unwrap();
            assert!(message.starts_with("bad frame"), "{name}: {message}");
        }

        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    }
}

#[derive(Debug, Deserialize)]
struct EnvelopeVector {
    description: String,
    payload: String,
    seq: Option<u64>,
    reply: Option<String>,
}

/// The sequenced reply envelopes in `tests/vectors/envelope/`: opened by slicing, and written back byte
/// for byte.
#[test]
fn envelope_vectors_open_and_seal() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/envelope");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/vectors/envelope exists") {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let v: EnvelopeVector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.file_name().unwrap().to_string_lossy();
        let opened = Sequenced::open(v.payload.as_bytes()).map(|s| (s.seq, s.reply.to_vec()));
        let expected = v.seq.zip(v.reply.as_ref().map(|r| r.as_bytes().to_vec()));
        assert_eq!(opened, expected, "{name}: {}", v.description);
        if let Some((seq, reply)) = expected {
            assert_eq!(
                Sequenced { seq, reply }.to_vec(),
                v.payload.as_bytes(),
                "{name}: written back"
            );
        }
        count += 1;
    }
    assert!(count >= 10, "only {count} envelope vectors in {}", dir.display());
}
