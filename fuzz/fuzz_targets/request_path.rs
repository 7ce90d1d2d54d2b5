//! Fuzz target: see `checks/request_path.rs` for what is checked.
#![no_main]

#[path = "../checks/request_path.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
