//! The backend under test: an address, and the process when conform started it.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::peer::Peer;

/// The backend conform checks.
pub struct Target {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How long a reply may take.
    pub patience: Duration,
    /// The backend's maximum request payload, which it must accept.
    pub max_frame: usize,
    /// The process, when conform started it; needed to send SIGTERM.
    process: Option<Mutex<Child>>,
}

impl Target {
    /// A backend already running at `addr`.
    pub fn running(addr: &str, patience: Duration, max_frame: usize) -> anyhow::Result<Target> {
        let addr = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to no address"))?;
        Ok(Target {
            addr,
            patience,
            max_frame,
            process: None,
        })
    }

    /// Starts `command` with every `{addr}` in its arguments replaced by a free loopback address, and
    /// waits up to `startup` for it to accept connections.
    pub fn start(
        command: &[String],
        patience: Duration,
        max_frame: usize,
        startup: Duration,
    ) -> anyhow::Result<Target> {
        let (program, args) = command.split_first().context("no command to start after `--`")?;
        let addr = free_loopback_addr()?;
        let text = addr.to_string();
        let mut child = Command::new(program)
            .args(args.iter().map(|a| a.replace("{addr}", &text)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let deadline = Instant::now() + startup;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{program} exited ({status}) before it listened on {addr}");
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("{program} did not listen on {addr} within {} s", startup.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Target {
            addr,
            patience,
            max_frame,
            process: Some(Mutex::new(child)),
        })
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Peer, String> {
        Peer::connect(self.addr, self.patience, self.max_frame)
    }

    /// Whether conform started the process (and so can signal it).
    pub fn has_process(&self) -> bool {
        self.process.is_some()
    }

    /// Sends SIGTERM to the process conform started.
    pub fn terminate(&self) -> Result<(), String> {
        let process = self.process.as_ref().ok_or("no process to signal")?;
        let pid = process.lock().unwrap_or_else(|p| p.into_inner()).id();
        let pid = rustix::process::Pid::from_raw(pid as i32).ok_or("no such process")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| format!("cannot send SIGTERM: {e}"))
    }

    /// Waits up to `patience` for the process to exit.
    pub fn wait_exit(&self, patience: Duration) -> Option<ExitStatus> {
        let process = self.process.as_ref()?;
        let deadline = Instant::now() + patience;
        loop {
            let mut child = process.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            drop(child);
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(process) = &self.process {
            let mut child = process.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// A loopback port free now; the backend binds it a moment later.
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}
