//! The length-line decoder on arbitrary bytes, split into arbitrary chunks.
//!
//! Input layout: 4 bytes of `max_frame` (little-endian u32), 1 byte of chunk size (0 = all at once),
//! then the bytes on the wire. Checked for every input:
//! - no panic, and no frame larger than `max_frame`;
//! - the core's `StreamDecoder` fed in chunks, fed everything at once, and the blocking `read_frame` agree
//!   on the frames and on whether (and why) the stream fails;
//! - the decoder's buffer never grows towards an announced length that has not arrived;
//! - `parse_length_line` on the first 12 bytes agrees with a naive reading of the spec.
//!
//! Shared by the fuzz target and by the replay tests of the normal suite (`#[path]` includes), so
//! both check exactly the same things.

use modproxy_sdk::frame::{parse_length_line, read_frame, LENGTH_LINE_LEN};
use modproxy_sdk::StreamDecoder;

/// What a reader made of a whole stream: the frames, then the error kind that ended it (if any).
type Outcome = (Vec<Vec<u8>>, Option<&'static str>);

fn codec_outcome(wire: &[u8], max_frame: usize, chunk: usize) -> Outcome {
    let mut decoder = StreamDecoder::new(max_frame);
    let chunk = if chunk == 0 { wire.len().max(1) } else { chunk };
    for (fed, piece) in wire.chunks(chunk).enumerate() {
        if !decoder.feed(piece) {
            break;
        }
        // Reserving ahead is capped: the buffer stays near what actually arrived.
        let arrived = (fed + 1) * chunk;
        assert!(
            decoder.buffered_capacity() <= 4 * (arrived + 64 * 1024 + LENGTH_LINE_LEN),
            "capacity {} after {arrived} bytes",
            decoder.buffered_capacity()
        );
    }
    let decoded = decoder.finish();
    for frame in &decoded.frames {
        assert!(frame.len() <= max_frame, "frame of {} > max {max_frame}", frame.len());
    }
    let frames = decoded.frames.iter().map(|frame| frame.to_vec()).collect();
    (frames, decoded.error.map(|e| e.kind()))
}

fn blocking_outcome(mut wire: &[u8], max_frame: usize) -> Outcome {
    let mut frames = Vec::new();
    loop {
        match read_frame(&mut wire, max_frame) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e.kind())),
        }
    }
}

/// The spec, read literally: `\r\n` last; then leading spaces/zeros; then only digits; not all blank.
fn naive_parse(line: &[u8], max_frame: usize) -> Result<usize, &'static str> {
    if &line[10..] != b"\r\n" {
        return Err("missing_crlf");
    }
    let text = std::str::from_utf8(&line[..10]).map_err(|_| "bad_digit")?;
    let digits = text.trim_start_matches([' ', '0']);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad_digit");
    }
    if text.trim_start_matches(' ').is_empty() {
        return Err("empty");
    }
    let len: usize = if digits.is_empty() {
        0
    } else {
        digits.parse().expect("at most ten digits")
    };
    if len > max_frame {
        return Err("too_large");
    }
    Ok(len)
}

/// Runs one input; panics (which the fuzzer reports as a crash) when an invariant above fails.
pub fn check(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let max_frame = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let chunk = usize::from(data[4]);
    let wire = &data[5..];

    if let Some(line) = wire.get(..LENGTH_LINE_LEN) {
        let line: &[u8; LENGTH_LINE_LEN] = line.try_into().unwrap();
        let parsed = parse_length_line(line, max_frame).map_err(|e| e.kind());
        assert_eq!(
            parsed,
            naive_parse(line, max_frame),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }

    let whole = codec_outcome(wire, max_frame, 0);
    assert_eq!(codec_outcome(wire, max_frame, chunk), whole, "chunks of {chunk}");
    assert_eq!(codec_outcome(wire, max_frame, 1), whole, "one byte at a time");
    assert_eq!(blocking_outcome(wire, max_frame), whole, "blocking reader");
}
