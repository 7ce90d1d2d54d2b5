//! Fuzz target: see `checks/config_parse.rs` for what is checked.
#![no_main]

#[path = "../checks/config_parse.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
