//! `Config::parse` on arbitrary UTF-8: it returns `Ok` or `Err`, never panics, and an error names the file.
//!
//! Shared by the fuzz target and by the replay tests of the normal suite (`#[path]` includes), so
//! both check exactly the same things.

use std::path::Path;

use modproxy::config::Config;

/// Runs one input; panics (which the fuzzer reports as a crash) when an invariant above fails.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz.toml"), Path::new("/home/modproxy")) {
        Ok(config) => {
            assert!(config.server.root_path.is_absolute());
            for module in config.modules.values() {
                if let modproxy::config::Module::Html { path } = module {
                    assert!(path.is_absolute(), "{}", path.display());
                }
            }
        }
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
    }
}
