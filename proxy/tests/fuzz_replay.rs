//! The request-path and config fuzz targets' checks (`fuzz/checks/`), replayed in the normal test suite
//! on the inputs kept in `fuzz/seeds/` and on the shipped `conf/default.toml`. `make fuzz` explores; this
//! keeps what it taught us.

#[path = "../../fuzz/checks/config_parse.rs"]
mod config_parse;
#[path = "../../fuzz/checks/request_path.rs"]
mod request_path;

use std::path::{Path, PathBuf};

fn kept_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let inputs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            (path, input)
        })
        .collect();
    assert!(!inputs.is_empty(), "no inputs kept for {target}");
    inputs
}

#[test]
fn the_kept_request_paths_pass_the_fuzz_checks() {
    for (path, input) in kept_inputs("request_path") {
        let outcome = std::panic::catch_unwind(|| request_path::check(&input));
        assert!(outcome.is_ok(), "{} fails the fuzz checks", path.display());
    }
}

/// Every short path spelled from the pieces that have tried to leave a site's root (up to 200,000 of
/// them) passes the same site path checks as the fuzzer's inputs.
#[test]
fn hostile_spellings_never_leave_the_site_root() {
    let alphabet = [
        "/", "..", ".", "%2e", "%2f", "%5c", "%00", "a", "%", "%2", "\\", ":", "C:",
    ];
    let mut raw = String::new();
    for i in 0..200_000u64 {
        raw.clear();
        let mut n = i;
        while n > 0 {
            raw.push_str(alphabet[(n % alphabet.len() as u64) as usize]);
            n /= alphabet.len() as u64;
        }
        request_path::check_site_path(&raw);
    }
}

#[test]
fn the_kept_configs_and_the_default_config_pass_the_fuzz_checks() {
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/default.toml");
    let mut inputs = kept_inputs("config_parse");
    inputs.push((default.clone(), std::fs::read(&default).unwrap()));
    for (path, input) in inputs {
        let outcome = std::panic::catch_unwind(|| config_parse::check(&input));
        assert!(outcome.is_ok(), "{} fails the fuzz checks", path.display());
    }
}
