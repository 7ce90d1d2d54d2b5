//! The frame-decoder fuzz target's checks (`fuzz/checks/frame_decoder.rs`), replayed in the normal test
//! suite on the shared vectors, split every way a small input allows, and on the inputs kept in
//! `fuzz/seeds/frame_decoder/`. `make fuzz` explores; this keeps what it taught us.

#[path = "../../fuzz/checks/frame_decoder.rs"]
mod frame_decoder;

use std::path::Path;

use modproxy_sdk::frame::DEFAULT_MAX_FRAME;

/// The fuzz input for `wire` read with `max_frame`, fed in chunks of `chunk` bytes (0: all at once).
fn fuzz_input(max_frame: u32, chunk: u8, wire: &[u8]) -> Vec<u8> {
    let mut input = max_frame.to_le_bytes().to_vec();
    input.push(chunk);
    input.extend_from_slice(wire);
    input
}

#[test]
fn every_shared_vector_passes_the_fuzz_checks_however_it_is_split() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let vector: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let wire = vector["input"].as_str().unwrap().as_bytes();
        let max_frame = vector["max_frame"].as_u64().unwrap_or(DEFAULT_MAX_FRAME as u64);
        for max_frame in [max_frame, 0, 1, 7, u64::from(u32::MAX)] {
            for chunk in 0..=wire.len().min(40) as u8 {
                frame_decoder::check(&fuzz_input(max_frame as u32, chunk, wire));
            }
        }
        count += 1;
    }
    assert!(count >= 20, "only {count} vectors found");
}

#[test]
fn the_kept_fuzz_inputs_pass_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/frame_decoder");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| frame_decoder::check(&input));
        assert!(outcome.is_ok(), "{} fails the fuzz checks", path.display());
        count += 1;
    }
    assert!(count > 0);
}
