//! `modproxy conform`: runs the socket protocol's conformance checks (docs/PROTOCOL.md) against any
//! backend, in any language, and prints one line per check with what was expected and what came back.
//!
//! The checks speak only what the protocol fixes for every backend (`_ping`, reserved names, payloads
//! that are not envelopes), so they need to know nothing of the backend's own methods. Framing goes through
//! the SDK's reader and writer, the project's one implementation of the format.

mod checks;
mod outcome;
mod peer;
mod probe;
mod target;

use std::time::Duration;

use modproxy_sdk::frame::DEFAULT_MAX_FRAME;

pub use checks::{Check, ALL};
pub use outcome::{Outcome, Verdict};
pub use target::Target;

/// The arguments of `modproxy conform`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  modproxy conform 127.0.0.1:21230\n  modproxy conform -- python3 app.py {addr}\n\nWith `-- COMMAND`, conform starts the backend on a free loopback port (each {addr} in its arguments), which also runs the SIGTERM check; with ADDR that check is skipped. Exits non-zero when any check fails."
)]
pub struct ConformArgs {
    /// The address of a backend that is already running (HOST:PORT).
    #[arg(required_unless_present = "command", conflicts_with = "command")]
    pub addr: Option<String>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// The backend's maximum request payload in bytes: a request of exactly this size must be answered.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
    /// Seconds to wait for a started backend to listen.
    #[arg(long, default_value_t = 30)]
    pub startup: u64,
    /// Run only the checks with these names (repeatable).
    #[arg(long = "check", value_name = "NAME")]
    pub only: Vec<String>,
    /// Start the backend with this command; `{addr}` in it becomes the address to listen on.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Runs the checks and prints the report; an error when any check failed or the backend cannot start.
pub fn run(args: &ConformArgs) -> anyhow::Result<()> {
    let unknown: Vec<&str> = args
        .only
        .iter()
        .filter(|name| !ALL.iter().any(|c| c.name == name.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let names: Vec<&str> = ALL.iter().map(|c| c.name).collect();
        anyhow::bail!(
            "no check named {}; the checks are {}",
            unknown.join(", "),
            names.join(", ")
        );
    }
    let patience = Duration::from_secs(args.timeout);
    let target = match &args.addr {
        Some(addr) => Target::running(addr, patience, args.max_frame)?,
        None => Target::start(
            &args.command,
            patience,
            args.max_frame,
            Duration::from_secs(args.startup),
        )?,
    };
    println!("conform: checking the backend at {}", target.addr);
    let mut outcomes = Vec::new();
    for check in ALL
        .iter()
        .filter(|c| args.only.is_empty() || args.only.iter().any(|n| n == c.name))
    {
        let outcome = (check.run)(&target);
        println!(
            "{}",
            outcome::Line {
                name: check.name,
                outcome: &outcome
            }
        );
        outcomes.push(outcome);
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    println!("conform: {}", outcome::summary(&all));
    let failed = outcomes.iter().filter(|o| o.verdict == Verdict::Fail).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", outcomes.len());
    }
    Ok(())
}
