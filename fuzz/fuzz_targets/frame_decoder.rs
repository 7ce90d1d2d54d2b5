//! Fuzz target: see `checks/frame_decoder.rs` for what is checked.
#![no_main]

#[path = "../checks/frame_decoder.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
