//! HOME: the directory that holds `conf/` and `html/`, and where `logs/` goes.

use std::path::{Path, PathBuf};

/// Picks HOME: the `--home` flag, else the current directory when it holds `conf/default.toml`, else the
/// parent of the directory holding the binary (the release layout `HOME/bin/modproxy`).
pub fn resolve(flag: Option<&Path>, cwd: &Path, exe: Option<&Path>) -> PathBuf {
    if let Some(home) = flag {
        return absolute(home, cwd);
    }
    if cwd.join("conf/default.toml").is_file() {
        return cwd.to_owned();
    }
    exe.and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_else(|| cwd.to_owned())
}

/// `path` made absolute against `base`.
pub fn absolute(path: &Path, base: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_cwd_then_binary_parent() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        assert_eq!(resolve(Some(Path::new("x")), cwd, None), cwd.join("x"));
        assert_eq!(
            resolve(None, cwd, Some(Path::new("/opt/mp/bin/modproxy"))),
            Path::new("/opt/mp")
        );
        std::fs::create_dir(cwd.join("conf")).unwrap();
        std::fs::write(cwd.join("conf/default.toml"), "").unwrap();
        assert_eq!(resolve(None, cwd, Some(Path::new("/opt/mp/bin/modproxy"))), cwd);
    }
}
