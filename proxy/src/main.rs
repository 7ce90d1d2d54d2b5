//! `modproxy`: runs the proxy, checks a configuration, or reloads or stops the running proxy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};

use modproxy::app::App;
use modproxy::config::Config;
use modproxy::metrics::Metrics;
use modproxy::tls::certificates::Certificates;
use modproxy::{home, logging, pid_file, reload, server, stream_forward, summary, tls};

// mimalloc: glibc's malloc cost a tenth of the proxy's time per forwarded request (bench/RESULTS.md).
// Without transparent huge pages, which would round its idle RSS up by megabytes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often memory freed to mimalloc is offered back to the system.
const GIVE_BACK_EVERY: Duration = Duration::from_secs(1);

/// mimalloc gives freed memory back to the system (purges it) a while after it is freed, but only when
/// its own code runs again: after a burst of large bodies, an idle proxy would keep their memory resident
/// for good. A thread of its own asks it regularly; the call is cheap when nothing is due.
fn give_back_freed_memory() {
    let spawned = std::thread::Builder::new().name("mi-collect".into()).spawn(|| loop {
        std::thread::sleep(GIVE_BACK_EVERY);
        // SAFETY: `mi_collect` has no preconditions; mimalloc is the global allocator.
        unsafe { libmimalloc_sys::mi_collect(false) };
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "could not start the thread that returns freed memory to the system");
    }
}

/// Module Proxy: static sites, HTTP reverse proxy and an HTTP → socket gateway, chosen per URL module.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// The directory that holds conf/ and html/ (default: the current directory when it holds
    /// conf/default.toml, else the parent of the binary's directory).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
    /// The configuration file (default: HOME/conf/default.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration and print a summary of its modules and nodes.
    Check {
        /// The configuration file (same as --config).
        file: Option<PathBuf>,
    },
    /// Make the running proxy (found through HOME/logs/modproxy.pid) re-read its configuration.
    Reload,
    /// Stop the running proxy (found through HOME/logs/modproxy.pid): requests in flight finish first.
    Stop {
        /// Seconds to wait for it to exit before giving up.
        #[arg(long, default_value_t = 15)]
        wait: u64,
    },
    /// Scaffold a new backend project in Rust, Python or Node, depending on this checkout's SDK.
    New(modproxy::scaffold::NewArgs),
    /// Certificates for the HTTPS listener.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Run the socket protocol's conformance checks against a backend (ADDR, or `-- COMMAND {addr}`).
    Conform(modproxy::conform::ConformArgs),
    /// Generate a typed client from a socket module's `_describe`: for the browser (TypeScript or
    /// JavaScript), or for another backend (Python or Node).
    Client(modproxy::client_gen::ClientArgs),
}

#[derive(Subcommand)]
enum CertCommand {
    /// A local CA trusted by this machine's browsers, and a certificate for https://localhost from it,
    /// served by a [tls] section added to the config (when it has none).
    Local(tls::local_ca::LocalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.home.as_deref(), cli.config.as_deref()),
        Some(Command::Check { file }) => check(cli.home.as_deref(), file.as_deref().or(cli.config.as_deref())),
        Some(Command::Reload) => reload_running(cli.home.as_deref()),
        Some(Command::Stop { wait }) => stop_running(cli.home.as_deref(), Duration::from_secs(wait)),
        Some(Command::New(args)) => modproxy::scaffold::run(&args).map_err(Into::into),
        Some(Command::Cert(CertCommand::Local(args))) => cert_local(cli.home.as_deref(), cli.config.as_deref(), &args),
        Some(Command::Conform(args)) => modproxy::conform::run(&args),
        Some(Command::Client(args)) => modproxy::client_gen::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("modproxy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// HOME and the config path, resolved.
fn locate(home_flag: Option<&Path>, config_flag: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let exe = std::env::current_exe().ok();
    let home = home::resolve(home_flag, &cwd, exe.as_deref());
    let config = match config_flag {
        Some(path) => home::absolute(path, &cwd),
        None => home.join("conf/default.toml"),
    };
    Ok((home, config))
}

fn check(home_flag: Option<&Path>, config_flag: Option<&Path>) -> anyhow::Result<()> {
    let (home, path) = locate(home_flag, config_flag)?;
    let config = Config::load(&path, &home)?;
    if let Some(tls) = &config.tls {
        Certificates::load(&tls.certificates).with_context(|| format!("config: {}: [tls]", path.display()))?;
    }
    print!("{}", summary::render(&config));
    print!("{}", modproxy::discovery::dns::resolved_now(&config));
    Ok(())
}

fn reload_running(home_flag: Option<&Path>) -> anyhow::Result<()> {
    let (home, _) = locate(home_flag, None)?;
    let pid = pid_file::find_running(&home)?;
    pid_file::send_reload(pid).with_context(|| format!("cannot signal modproxy (pid {pid})"))?;
    // The signal cannot carry an answer back: whether the new configuration was taken is in the log.
    println!(
        "modproxy (pid {pid}) is reloading its configuration; {} says whether it was taken",
        home.join("logs/modproxy.log").display()
    );
    Ok(())
}

fn stop_running(home_flag: Option<&Path>, patience: Duration) -> anyhow::Result<()> {
    let (home, _) = locate(home_flag, None)?;
    let pid = pid_file::find_running(&home)?;
    let stopped = pid_file::send_stop(pid, patience).with_context(|| format!("cannot signal modproxy (pid {pid})"))?;
    if !stopped {
        anyhow::bail!(
            "pid {pid} was sent SIGTERM but is still running after {} s (requests in flight may be slow to finish; try again, or kill -KILL {pid})",
            patience.as_secs()
        );
    }
    println!("modproxy (pid {pid}) stopped");
    Ok(())
}

fn cert_local(
    home_flag: Option<&Path>,
    config_flag: Option<&Path>,
    args: &tls::local_ca::LocalArgs,
) -> anyhow::Result<()> {
    let (home, path) = locate(home_flag, config_flag)?;
    let report = tls::local_ca::run(&home, &path, args).context("cert local")?;
    for line in report.lines {
        println!("{line}");
    }
    Ok(())
}

fn run(home_flag: Option<&Path>, config_flag: Option<&Path>) -> anyhow::Result<()> {
    let (home, path) = locate(home_flag, config_flag)?;
    // A bad config never binds the port.
    let config = Config::load(&path, &home)?;
    let _log_guard = logging::init(config.log_level, &home.join("logs"), config.access_log.as_ref())
        .with_context(|| format!("cannot create the log directory {}", home.join("logs").display()))?;
    // The process-wide default too, for any crate that asks for one: a second provider would panic.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certificates = match &config.tls {
        Some(tls) => Some(Arc::new(
            Certificates::load(&tls.certificates).with_context(|| format!("config: {}: [tls]", path.display()))?,
        )),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    give_back_freed_memory();
    runtime.block_on(async {
        // Signal handlers before any port is bound: a SIGHUP or SIGTERM sent as soon as a port answers
        // must find them, not the default action, which ends the process at once.
        let watch = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("cannot watch {name}"));
        let hangups = watch(SignalKind::hangup(), "SIGHUP")?;
        let (mut terminate, mut interrupt) =
            (watch(SignalKind::terminate(), "SIGTERM")?, watch(SignalKind::interrupt(), "SIGINT")?);
        // Streams first: once the HTTP port answers, every port does.
        let streams = stream_forward::bind(&config.streams)
            .await
            .with_context(|| path.display().to_string())?;
        // Shared by the plain port (HTTP-01) and the HTTPS listener (TLS-ALPN-01).
        let challenges = Arc::new(tls::acme::Challenges::default());
        // HTTPS before HTTP, for the same reason.
        let https = match (&config.tls, &certificates) {
            (Some(tls), Some(certificates)) => {
                let listener = tokio::net::TcpListener::bind(tls.listen).await.with_context(|| {
                    format!("cannot listen on {} ([tls] listen and port in {})", tls.listen, path.display())
                })?;
                let resolver = tls::acme::ChallengeResolver {
                    certificates: Arc::clone(certificates) as _,
                    challenges: Arc::clone(&challenges),
                };
                let acceptor = tls::acceptor::acceptor(Arc::new(resolver))?;
                tracing::info!(addr = %tls.listen, certificates = tls.certificates.len(), "HTTPS listening");
                Some((listener, acceptor))
            }
            _ => None,
        };
        let addr = std::net::SocketAddr::new(config.server.listen, config.server.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ([server] listen and port in {})", path.display()))?;
        // Written once every port is bound, so that a server that could not start leaves none behind.
        let _pid_file = pid_file::PidFile::create(&home)
            .with_context(|| format!("cannot write {}", pid_file::path(&home).display()))?;
        tracing::info!(%addr, home = %home.display(), config = %path.display(), modules = config.modules.len(), "modproxy listening");
        let metrics = Arc::new(Metrics::new());
        let live = Arc::new(ArcSwap::from_pointee(App::new(config, &home, Arc::clone(&metrics), None)));
        tokio::spawn(reload::on_sighup(
            hangups,
            Arc::clone(&live),
            Arc::clone(&metrics),
            path.clone(),
            home.clone(),
            certificates.clone(),
        ));
        let acme = live.load().config().tls.as_ref().and_then(|tls| tls.acme.clone());
        if let (Some(acme), Some(certificates)) = (acme, &certificates) {
            let (live, certificates) = (Arc::clone(&live), Arc::clone(certificates));
            // Loaded at once rather than at the watcher's next look.
            let obtained = move || {
                if let Some(tls) = &live.load().config().tls {
                    certificates.reload(&tls.certificates);
                }
            };
            tokio::spawn(tls::acme::keep_current(acme, Arc::clone(&challenges), Arc::clone(&metrics), obtained));
        }
        if let Some(certificates) = &certificates {
            let live = Arc::clone(&live);
            let current = move || live.load().config().tls.as_ref().map(|tls| tls.certificates.clone()).unwrap_or_default();
            tokio::spawn(Arc::clone(certificates).watch(current, Arc::clone(&metrics)));
        }
        let stopping = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let stopping = stopping.clone();
            async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                stopping.cancel();
            }
        });
        // The accept loops run as tasks on the runtime, not on this thread: a connection accepted on a
        // worker is spawned to that worker's own queue, where one accepted here had to be handed over and
        // the worker woken (a futex and two context switches per connection).
        let serve_https = https.map(|(listener, acceptor)| {
            let front = server::Front::Tls(acceptor);
            tokio::spawn(server::serve(Arc::clone(&live), Arc::clone(&metrics), listener, front, stopping.clone().cancelled_owned()))
        });
        let serve_http = tokio::spawn(server::serve(
            Arc::clone(&live),
            Arc::clone(&metrics),
            listener,
            server::Front::Plain(challenges),
            stopping.clone().cancelled_owned(),
        ));
        let serve_https = async {
            if let Some(serving) = serve_https {
                serving.await
            } else {
                Ok(())
            }
        };
        let (http, https, ()) = tokio::join!(serve_http, serve_https, stream_forward::serve(streams, &metrics, stopping.clone()));
        http.context("the HTTP listener's task")?;
        https.context("the HTTPS listener's task")?;
        tracing::info!("modproxy stopped");
        anyhow::Ok(())
    })
}
