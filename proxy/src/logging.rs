//! Logs to the console and to `HOME/logs/modproxy.log`, rotated by size (10 MB, 5 files kept); the
//! access log, when on, to its own file rotated alike ([`crate::access_log`]).
//!
//! All go through tracing-appender's non-blocking writer, so neither a slow disk nor a slow terminal
//! stalls a request: the request path only formats the line and queues it.

use std::io::IsTerminal;
use std::path::Path;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::access_log;
use crate::config::{AccessLogConfig, LogLevel};

/// Size at which the log file is rotated.
const ROTATE_BYTES: usize = 10 * 1024 * 1024;
/// Rotated files kept beside the current one.
const ROTATED_FILES: usize = 5;

/// Access lines queued for the file at most; more are dropped (and counted by tracing-appender) rather
/// than make a request wait for the disk.
const ACCESS_QUEUE_LINES: usize = 64 * 1024;

/// Bytes of access lines gathered into one write to the file.
const ACCESS_WRITE_BUFFER: usize = 64 * 1024;

/// Keeps the background log writers alive; logs still buffered are flushed when it drops.
#[must_use = "dropping the guard stops logging"]
pub struct LogGuard(#[allow(dead_code)] Vec<WorkerGuard>);

/// Installs the global subscriber (console plus rotated file under `logs_dir`) and, when `access` is
/// given, opens the access log.
pub fn init(level: LogLevel, logs_dir: &Path, access: Option<&AccessLogConfig>) -> std::io::Result<LogGuard> {
    std::fs::create_dir_all(logs_dir)?;
    let (writer, file_guard) = tracing_appender::non_blocking(rotated(&logs_dir.join("modproxy.log")));
    let mut guards = vec![file_guard];
    if let Some(access) = access {
        if let Some(dir) = access.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(ACCESS_QUEUE_LINES)
            .lossy(true)
            .thread_name("modproxy-access-log")
            // The writer thread flushes after each batch it drains: under load, many lines per write(2).
            .finish(std::io::BufWriter::with_capacity(
                ACCESS_WRITE_BUFFER,
                rotated(&access.path),
            ));
        access_log::install(writer, access.format);
        guards.push(guard);
    }
    let (console, console_guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = filter(level);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                // Colour only for a person at a terminal, not for a pipe or a file.
                .with_ansi(std::io::stdout().is_terminal())
                .with_writer(console),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(writer),
        )
        .init();
    guards.push(console_guard);
    Ok(LogGuard(guards))
}

/// What is logged at `level`. rustls's warnings all describe a peer (an IP address sent as SNI, an
/// alert it sent), one line per handshake a client controls (wrk sends an IP address as SNI), costing a
/// formatted line, two log threads woken and two writes each: 5 % of the CPU of a new HTTPS connection
/// and a disk a client can fill. A failed handshake is already counted
/// (`tls_handshake_failures`) and logged at debug. So rustls gets its errors, and everything at `debug`.
fn filter(level: LogLevel) -> Targets {
    let rustls = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Error | LogLevel::Warn | LogLevel::Info => LevelFilter::ERROR,
    };
    Targets::new()
        .with_default(LevelFilter::from_level(level.as_tracing()))
        .with_target("rustls", rustls)
}

/// `path`, rotated by size, the rotated files kept beside it.
fn rotated(path: &Path) -> FileRotate<AppendCount> {
    FileRotate::new(
        path,
        AppendCount::new(ROTATED_FILES),
        ContentLimit::BytesSurpassed(ROTATE_BYTES),
        Compression::None,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rustls_warnings_only_at_debug() {
        let warn = filter(LogLevel::Warn);
        assert!(!warn.would_enable("rustls::msgs::handshake", &Level::WARN));
        assert!(warn.would_enable("rustls::common_state", &Level::ERROR));
        assert!(warn.would_enable("modproxy::server", &Level::WARN));
        assert!(!warn.would_enable("modproxy::server", &Level::INFO));
        let debug = filter(LogLevel::Debug);
        assert!(debug.would_enable("rustls::msgs::handshake", &Level::DEBUG));
        assert!(debug.would_enable("modproxy::server", &Level::DEBUG));
        assert!(!filter(LogLevel::Error).would_enable("modproxy::server", &Level::WARN));
    }
}
