//! `HOME/logs/modproxy.pid`: the running server writes its pid there, and `modproxy reload` and
//! `modproxy stop` find it there, so an operator never looks a pid up by hand.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

/// Where the pid file of the server with this HOME lives.
pub fn path(home: &Path) -> PathBuf {
    home.join("logs/modproxy.pid")
}

/// The running server's pid file; removed when dropped, that is at a clean exit.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to HOME's pid file, replacing whatever was there.
    pub fn create(home: &Path) -> std::io::Result<PidFile> {
        let path = path(home);
        let pid = std::process::id();
        std::fs::write(&path, format!("{pid}\n"))?;
        Ok(PidFile { path, pid })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a second server started on this HOME may have written its pid since.
        if read_pid(&self.path).ok() == Some(self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why there is no running server to signal, in words for the operator.
#[derive(Debug, thiserror::Error)]
pub enum NotRunning {
    /// No pid file.
    #[error("not running: there is no pid file {0} (is HOME right? see --home)")]
    NoPidFile(PathBuf),
    /// A pid file that does not hold a pid.
    #[error("cannot read a pid from {0}: {1}")]
    Unreadable(PathBuf, String),
    /// The process is gone; the pid file was left by a server that did not exit cleanly.
    #[error("not running: pid {pid} in {path} is not a running process (a stale pid file, now removed)")]
    Stale {
        /// The pid the file held.
        pid: u32,
        /// The pid file.
        path: PathBuf,
    },
    /// The pid now belongs to another program.
    #[error("not running: pid {pid} in {path} is now {name:?}, not modproxy (a stale pid file, now removed)")]
    NotModproxy {
        /// The pid the file held.
        pid: u32,
        /// The pid file.
        path: PathBuf,
        /// That process's name.
        name: String,
    },
}

/// The server running with this HOME, found through its pid file. A stale pid file is removed.
pub fn find_running(home: &Path) -> Result<u32, NotRunning> {
    let path = path(home);
    let pid = match read_pid(&path) {
        Ok(pid) => pid,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(NotRunning::NoPidFile(path)),
        Err(error) => return Err(NotRunning::Unreadable(path, error.to_string())),
    };
    if !is_alive(pid) {
        let _ = std::fs::remove_file(&path);
        return Err(NotRunning::Stale { pid, path });
    }
    // Where the process name is readable (Linux), make sure the pid was not reused by another program.
    if let Ok(name) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        let name = name.trim_end().to_owned();
        if name != "modproxy" {
            let _ = std::fs::remove_file(&path);
            return Err(NotRunning::NotModproxy { pid, path, name });
        }
    }
    Ok(pid)
}

/// Sends SIGHUP: the server re-reads its configuration.
pub fn send_reload(pid: u32) -> std::io::Result<()> {
    send(pid, Signal::HUP)
}

/// Sends SIGTERM and waits up to `patience` for the process to exit. Returns whether it did.
pub fn send_stop(pid: u32, patience: Duration) -> std::io::Result<bool> {
    send(pid, Signal::TERM)?;
    let deadline = Instant::now() + patience;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(true)
}

fn send(pid: u32, signal: Signal) -> std::io::Result<()> {
    rustix::process::kill_process(to_pid(pid)?, signal).map_err(std::io::Error::from)
}

fn to_pid(pid: u32) -> std::io::Result<Pid> {
    i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{pid} is not a pid")))
}

fn read_pid(path: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{:?} is not a pid", text.trim()),
        )
    })
}

/// Whether `pid` is a process that has not exited. A zombie (exited, not yet reaped by its parent)
/// counts as exited: it serves nothing and takes no signals.
fn is_alive(pid: u32) -> bool {
    let Ok(pid_value) = to_pid(pid) else {
        return false;
    };
    match rustix::process::test_kill_process(pid_value) {
        // EPERM: it exists but belongs to someone else.
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(_) => return false,
    }
    // `/proc/PID/stat` is "pid (name) STATE ..."; the name may hold spaces and parentheses.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_itself_and_removes_a_stale_file() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join("logs")).unwrap();
        assert!(matches!(find_running(home.path()), Err(NotRunning::NoPidFile(_))));

        // A pid that no process has: Linux pids stay below 2^22.
        std::fs::write(path(home.path()), "4194303\n").unwrap();
        let error = find_running(home.path()).unwrap_err();
        assert!(matches!(error, NotRunning::Stale { pid: 4194303, .. }), "{error}");
        assert!(!path(home.path()).exists(), "the stale pid file is removed");

        // This test process is alive, but it is not modproxy.
        let file = PidFile::create(home.path()).unwrap();
        let error = find_running(home.path()).unwrap_err();
        assert!(matches!(error, NotRunning::NotModproxy { .. }), "{error}");
        drop(file);

        let file = PidFile::create(home.path()).unwrap();
        assert_eq!(read_pid(&path(home.path())).unwrap(), std::process::id());
        drop(file);
        assert!(!path(home.path()).exists(), "dropping the pid file removes it");
    }
}
