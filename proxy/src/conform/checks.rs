//! The conformance checks, one function each, in the order they run. Each opens its own connections, so
//! that one failure does not spill into the next check; the SIGTERM check stops the backend and runs last.

use std::time::{Duration, Instant};

use modproxy_sdk::frame::LENGTH_LINE_LEN;

use super::outcome::Outcome;
use super::peer::{Peer, Received};
use super::probe::{self, error_shape, frame, frames, matches, sequenced, show, Padding, Probe};
use super::target::Target;

/// A named check.
pub struct Check {
    /// The name a report line starts with; stable, so that scripts can grep for it.
    pub name: &'static str,
    /// Runs it against the backend.
    pub run: fn(&Target) -> Outcome,
}

/// Every check, in the order they run.
pub const ALL: &[Check] = &[
    Check {
        name: "space_padding",
        run: space_padding,
    },
    Check {
        name: "zero_padding",
        run: zero_padding,
    },
    Check {
        name: "split_length_line",
        run: split_length_line,
    },
    Check {
        name: "merged_frames",
        run: merged_frames,
    },
    Check {
        name: "pipelined_in_order",
        run: pipelined_in_order,
    },
    Check {
        name: "error_reply_shape",
        run: error_reply_shape,
    },
    Check {
        name: "unknown_method",
        run: unknown_method,
    },
    Check {
        name: "invalid_json",
        run: invalid_json,
    },
    Check {
        name: "not_an_envelope",
        run: not_an_envelope,
    },
    Check {
        name: "huge_length",
        run: huge_length,
    },
    Check {
        name: "max_payload",
        run: max_payload,
    },
    Check {
        name: "ping",
        run: ping,
    },
    Check {
        name: "describe",
        run: describe,
    },
    Check {
        name: "concurrent_connections",
        run: concurrent_connections,
    },
    Check {
        name: "half_close",
        run: half_close,
    },
    Check {
        name: "pipeline_negotiation",
        run: pipeline_negotiation,
    },
    Check {
        name: "sigterm_while_busy",
        run: sigterm_while_busy,
    },
];

/// Waits for one reply per probe, in order; `Err` names the first that differs.
fn expect_replies(peer: &mut Peer, probes: &[Probe]) -> Result<(), String> {
    for (i, probe) in probes.iter().enumerate() {
        let reply = peer
            .reply()
            .map_err(|got| format!("reply {} of {}: {got}", i + 1, probes.len()))?;
        matches(probe.expect(), &reply)
            .map_err(|got| format!("reply {} of {} (to {probe:?}): {got}", i + 1, probes.len()))?;
    }
    Ok(())
}

/// Sends each probe on its own and checks its reply; then the connection must still answer.
fn one_by_one(target: &Target, payloads: &[&[u8]], expect: probe::Expect) -> Result<String, String> {
    let mut peer = target.connect()?;
    for payload in payloads {
        let reply = peer
            .call(payload)
            .map_err(|got| format!("to {}: {got}", show(payload)))?;
        matches(expect, &reply).map_err(|got| format!("to {}: {got}", show(payload)))?;
    }
    let after = peer
        .call(&Probe::Unknown.payload())
        .map_err(|got| format!("the next request on that connection: {got}"))?;
    matches(Probe::Unknown.expect(), &after).map_err(|got| format!("the next request on that connection: {got}"))?;
    Ok(format!("{} replies, and the connection lived on", payloads.len()))
}

fn space_padding(target: &Target) -> Outcome {
    let expected = "a method_not_found reply to a request with a space-padded length line (\"        57\\r\\n\")";
    Outcome::from_steps(expected, padded(target, &[Padding::Spaces]))
}

fn zero_padding(target: &Target) -> Outcome {
    let expected =
        "method_not_found replies to zero-padded and mixed length lines (\"0000000057\\r\\n\", \"   0000057\\r\\n\")";
    Outcome::from_steps(expected, padded(target, &[Padding::Zeros, Padding::Mixed]))
}

fn padded(target: &Target, paddings: &[Padding]) -> Result<String, String> {
    let mut peer = target.connect()?;
    for &padding in paddings {
        let bytes = frame(&Probe::Unknown.payload(), padding);
        let line = String::from_utf8_lossy(&bytes[..LENGTH_LINE_LEN]).replace("\r\n", "\\r\\n");
        peer.write(&bytes)?;
        let reply = peer.reply().map_err(|got| format!("to \"{line}\": {got}"))?;
        matches(Probe::Unknown.expect(), &reply).map_err(|got| format!("to \"{line}\": {got}"))?;
    }
    Ok("the same".into())
}

fn split_length_line(target: &Target) -> Outcome {
    let expected =
        "a reply to a frame written in pieces of 3, 5, 3 and 1 bytes of length line, then the payload in two";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            let bytes = frame(&Probe::Unknown.payload(), Padding::Spaces);
            let half = LENGTH_LINE_LEN + (bytes.len() - LENGTH_LINE_LEN) / 2;
            for range in [0..3, 3..8, 8..11, 11..12, 12..half, half..bytes.len()] {
                peer.write(&bytes[range])?;
                std::thread::sleep(Duration::from_millis(30));
            }
            let reply = peer.reply()?;
            matches(Probe::Unknown.expect(), &reply)?;
            Ok("it".into())
        })(),
    )
}

fn merged_frames(target: &Target) -> Outcome {
    let probes = [Probe::Unknown, Probe::Unknown, Probe::Unknown];
    let expected = "3 replies to 3 frames sent in one write";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            peer.write(&frames(&probes))?;
            expect_replies(&mut peer, &probes)?;
            Ok("3 replies".into())
        })(),
    )
}

/// An irregular mix of two reply kinds, so that any reordering shows.
const PIPELINED: [Probe; 16] = {
    use Probe::{NotJson as B, Unknown as U};
    [U, B, B, U, U, U, B, U, B, B, B, B, U, B, U, U]
};

fn pipelined_in_order(target: &Target) -> Outcome {
    let expected = "16 requests sent without waiting (in 4 writes) answered in the order sent";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            for chunk in PIPELINED.chunks(4) {
                peer.write(&frames(chunk))?;
                std::thread::sleep(Duration::from_millis(10));
            }
            expect_replies(&mut peer, &PIPELINED)?;
            Ok("16 replies in order".into())
        })(),
    )
}

fn error_reply_shape(target: &Target) -> Outcome {
    let expected = r#"{"error":{"code":"method_not_found","message":"…"}} and no other keys"#;
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            let reply = peer.call(&Probe::Unknown.payload())?;
            let code = error_shape(&reply)?;
            if code != "method_not_found" {
                return Err(format!("{} (code {code:?})", show(&reply)));
            }
            Ok(show(&reply))
        })(),
    )
}

fn unknown_method(target: &Target) -> Outcome {
    let expected = "method_not_found for an unknown name, an unused reserved one (_conform) and one with no data, and the connection lives on";
    let payloads: [&[u8]; 3] = [
        br#"{"head":{"method":"conform_no_such_method"},"data":{"x":1}}"#,
        br#"{"head":{"method":"_conform"},"data":null}"#,
        br#"{"head":{"method":"conform_no_such_method","other":[1]},"extra":true}"#,
    ];
    Outcome::from_steps(
        expected,
        one_by_one(target, &payloads, probe::Expect::Error("method_not_found")),
    )
}

fn invalid_json(target: &Target) -> Outcome {
    let expected = "bad_request for payloads that are not JSON (one empty), and the connection lives on";
    let payloads: [&[u8]; 4] = [br#"{"head":"#, b"", b"{\"head\":{\"method\":\"x\"}}}", b"\xff\xfe"];
    Outcome::from_steps(
        expected,
        one_by_one(target, &payloads, probe::Expect::Error("bad_request")),
    )
}

fn not_an_envelope(target: &Target) -> Outcome {
    let expected = "bad_request for JSON that is not an envelope, and the connection lives on";
    let payloads: [&[u8]; 5] = [
        b"[1,2,3]",
        b"\"_ping\"",
        br#"{"data":1}"#,
        br#"{"head":{"method":5}}"#,
        br#"{"head":"_ping"}"#,
    ];
    Outcome::from_steps(
        expected,
        one_by_one(target, &payloads, probe::Expect::Error("bad_request")),
    )
}

fn huge_length(target: &Target) -> Outcome {
    let expected = "\"9999999999\\r\\n\" refused at once: at most a bad_request reply, then the connection closed; other connections still served";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            peer.write(b"9999999999\r\n")?;
            let got = match peer.receive() {
                Received::Frame(reply) => {
                    matches(probe::Expect::Error("bad_request"), &reply).map_err(|got| format!("the reply {got}"))?;
                    match peer.receive() {
                        Received::Closed | Received::Broken(_) => "a bad_request reply, then the connection closed",
                        Received::Silent => return Err("a bad_request reply, but the connection stayed open".into()),
                        Received::Frame(more) => {
                            return Err(format!("a bad_request reply, then another reply {}", show(&more)))
                        }
                    }
                }
                Received::Closed | Received::Broken(_) => "the connection closed",
                Received::Silent => {
                    return Err(format!(
                        "no reply and the connection still open after {} s: it waits for the payload",
                        target.patience.as_secs_f32()
                    ))
                }
            };
            let mut other = target.connect().map_err(|e| format!("{got}; then {e}"))?;
            let reply = other
                .call(&Probe::Unknown.payload())
                .map_err(|e| format!("{got}; then a new connection got {e}"))?;
            matches(Probe::Unknown.expect(), &reply).map_err(|e| format!("{got}; then a new connection got {e}"))?;
            Ok(format!("{got}; other connections still served"))
        })(),
    )
}

fn max_payload(target: &Target) -> Outcome {
    let expected = format!(
        "a method_not_found reply to a request of exactly {} bytes (--max-frame)",
        target.max_frame
    );
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            // A big payload takes a while to parse in some languages.
            peer.patience(target.patience * 6);
            let reply = peer.call(&probe::sized_request(target.max_frame))?;
            matches(Probe::Unknown.expect(), &reply)?;
            Ok("it".into())
        })(),
    )
}

fn ping(target: &Target) -> Outcome {
    Outcome::from_steps(
        r#"{"pong":true} to _ping"#,
        (|| {
            let mut peer = target.connect()?;
            let reply = peer.call(&Probe::Ping.payload())?;
            matches(probe::Expect::Pong, &reply)?;
            Ok(show(&reply))
        })(),
    )
}

/// `_describe` is optional (PROTOCOL.md 5.1): `method_not_found` passes, any other answer must be the
/// document, checked by the SDK's one definition of its shape.
fn describe(target: &Target) -> Outcome {
    let expected =
        "the _describe document ({\"methods\":[{name, doc, data, result}] in name order), or method_not_found";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            let reply = peer.call(br#"{"head":{"method":"_describe"}}"#)?;
            if matches(probe::Expect::Error("method_not_found"), &reply).is_ok() {
                return Ok("method_not_found (not described)".to_owned());
            }
            let value: serde_json::Value =
                serde_json::from_slice(&reply).map_err(|_| format!("{} (not JSON)", show(&reply)))?;
            modproxy_sdk::describe::check_document(&value).map_err(|why| format!("{} ({why})", show(&reply)))?;
            let count = value["methods"].as_array().map_or(0, Vec::len);
            Ok(format!("{count} methods described"))
        })(),
    )
}

fn concurrent_connections(target: &Target) -> Outcome {
    let expected = "a connection answered while another holds half a frame, and 8 connections at once all answered";
    Outcome::from_steps(
        expected,
        (|| {
            let bytes = frame(&Probe::Unknown.payload(), Padding::Spaces);
            let mut stalled = target.connect()?;
            stalled.write(&bytes[..LENGTH_LINE_LEN + 5])?;
            std::thread::sleep(Duration::from_millis(50));
            let mut other = target.connect()?;
            let reply = other
                .call(&Probe::Unknown.payload())
                .map_err(|got| format!("while another connection held half a frame: {got}"))?;
            matches(Probe::Unknown.expect(), &reply)?;
            stalled.write(&bytes[LENGTH_LINE_LEN + 5..])?;
            let reply = stalled
                .reply()
                .map_err(|got| format!("the rest of the held frame: {got}"))?;
            matches(Probe::Unknown.expect(), &reply)?;

            let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut peer = target.connect()?;
                            for _ in 0..5 {
                                let reply = peer.call(&Probe::Unknown.payload())?;
                                matches(Probe::Unknown.expect(), &reply)?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().unwrap_or(Err("a worker panicked".into())))
                    .collect()
            });
            let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            if let Some(first) = failed.first() {
                return Err(format!(
                    "{} of 8 concurrent connections failed, the first with {first}",
                    failed.len()
                ));
            }
            Ok("both".into())
        })(),
    )
}

fn half_close(target: &Target) -> Outcome {
    let probes = [Probe::Unknown, Probe::NotJson, Probe::Unknown];
    let expected = "3 replies to 3 requests sent before a half-close, then end of stream";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            peer.write(&frames(&probes))?;
            peer.half_close()?;
            expect_replies(&mut peer, &probes)?;
            match peer.receive() {
                Received::Closed => Ok("3 replies, then end of stream".into()),
                other => Err(format!("3 replies, then {}", other.describe())),
            }
        })(),
    )
}

fn pipeline_negotiation(target: &Target) -> Outcome {
    let expected = "_pipeline as a first frame either refused with an error reply (then replies unwrapped and in order) or accepted with {\"pipeline\":1} (then byte-exact {\"seq\":S,\"reply\":R} for each request)";
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            let reply = peer.call(br#"{"head":{"method":"_pipeline"},"data":{"version":1,"depth":4}}"#)?;
            let value: serde_json::Value =
                serde_json::from_slice(&reply).map_err(|_| format!("{} (not JSON)", show(&reply)))?;
            let probes = [Probe::Unknown, Probe::NotJson, Probe::Ping, Probe::Unknown];
            if value.get("pipeline") == Some(&serde_json::json!(1)) {
                peer.write(&frames(&probes))?;
                let mut seen = [false; 4];
                for _ in 0..probes.len() {
                    let reply = peer.reply()?;
                    let (seq, inner) = sequenced(&reply)
                        .ok_or_else(|| format!("accepted, then {} (not a byte-exact envelope)", show(&reply)))?;
                    let index = usize::try_from(seq)
                        .ok()
                        .filter(|s| (1..=probes.len()).contains(s))
                        .ok_or_else(|| format!("accepted, then seq {seq} for 4 requests"))?
                        - 1;
                    if std::mem::replace(&mut seen[index], true) {
                        return Err(format!("accepted, then seq {seq} twice"));
                    }
                    matches(probes[index].expect(), inner)
                        .map_err(|got| format!("accepted, then seq {seq} (a {:?}) answered {got}", probes[index]))?;
                }
                return Ok("accepted, and 4 sequenced replies".into());
            }
            if value
                .pointer("/error/code")
                .and_then(serde_json::Value::as_str)
                .is_none()
            {
                return Err(format!(
                    "{} (neither {{\"pipeline\":1}} nor an error reply)",
                    show(&reply)
                ));
            }
            peer.write(&frames(&probes))?;
            expect_replies(&mut peer, &probes).map_err(|got| format!("refused, then {got}"))?;
            Ok(format!("refused with {}, then 4 plain replies in order", show(&reply)))
        })(),
    )
}

/// How many pings the SIGTERM check keeps the backend busy with.
const BUSY_PINGS: usize = 200;

/// How long a backend may take to finish and exit after SIGTERM (the SDKs' grace is 10 s).
const EXIT_GRACE: Duration = Duration::from_secs(15);

fn sigterm_while_busy(target: &Target) -> Outcome {
    let expected = format!("SIGTERM during {BUSY_PINGS} pipelined _pings: the pings it read answered whole and in order (at least the one in hand), then exit 0 within {} s", EXIT_GRACE.as_secs());
    if !target.has_process() {
        return Outcome::skip(
            expected,
            "conform did not start the backend (give `-- COMMAND {addr}` to run it)",
        );
    }
    Outcome::from_steps(
        expected,
        (|| {
            let mut peer = target.connect()?;
            peer.write(&frames(&[Probe::Ping; BUSY_PINGS]))?;
            let first = peer.reply().map_err(|got| format!("before the signal, {got}"))?;
            matches(probe::Expect::Pong, &first).map_err(|got| format!("before the signal, {got}"))?;
            // The pings behind the first are in the backend's hands or its socket: it is busy.
            target.terminate()?;
            let signalled = Instant::now();
            let mut answered = 1;
            let ending = loop {
                match peer.receive() {
                    Received::Frame(reply) => {
                        matches(probe::Expect::Pong, &reply)
                            .map_err(|got| format!("reply {} after the signal: {got}", answered + 1))?;
                        answered += 1;
                    }
                    Received::Silent if signalled.elapsed() < EXIT_GRACE => {}
                    other => break other,
                }
            };
            let ending = match ending {
                Received::Closed => "end of stream".into(),
                Received::Silent => {
                    return Err(format!(
                        "{answered} replies, then the connection stayed open {} s after the signal",
                        EXIT_GRACE.as_secs()
                    ))
                }
                other => other.describe(),
            };
            if answered < 2 {
                return Err(format!(
                    "only the reply it sent before the signal, then {ending}: the request in hand was dropped"
                ));
            }
            let status = target
                .wait_exit(EXIT_GRACE.saturating_sub(signalled.elapsed()))
                .ok_or_else(|| {
                    format!(
                        "{answered} replies, then {ending}, but still running {} s after the signal",
                        EXIT_GRACE.as_secs()
                    )
                })?;
            if !status.success() {
                return Err(format!(
                    "{answered} replies, then {ending}, then it exited with {status}"
                ));
            }
            Ok(format!(
                "{answered} replies, then {ending}, then exit 0 after {:.1} s",
                signalled.elapsed().as_secs_f32()
            ))
        })(),
    )
}
