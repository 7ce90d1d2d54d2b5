//! SIGHUP re-reads the configuration. A valid one replaces the running [`App`] for new requests (requests
//! in flight finish on the old one); an invalid one is refused with a log line, and the old one serves on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::signal::unix::Signal;

use crate::app::{App, LiveApp};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::tls::certificates::Certificates;

/// Reloads on each of `hangups` (SIGHUP, registered by the caller before any port was bound) for as long
/// as the returned future runs. The HTTPS listener's `certificates` are re-read too, from the new
/// configuration's list (or the old one's, when the new one was refused).
pub async fn on_sighup(
    mut hangups: Signal,
    live: LiveApp,
    metrics: Arc<Metrics>,
    config_path: PathBuf,
    home: PathBuf,
    certificates: Option<Arc<Certificates>>,
) {
    while hangups.recv().await.is_some() {
        let ok = reload(&live, &metrics, &config_path, &home);
        metrics.reloaded(ok);
        if let Some(certificates) = &certificates {
            let files = live.load().config().tls.as_ref().map(|tls| tls.certificates.clone());
            match files {
                Some(files) => {
                    let failures = certificates.reload(&files);
                    metrics.tls_certificate_errors.inc_by(failures as u64);
                }
                None => {
                    tracing::warn!("[tls] was removed: HTTPS stops only on restart, with its certificates as they are")
                }
            }
        }
    }
}

/// Loads `path` and, if it is valid, makes it the running configuration. Returns whether it did.
pub fn reload(live: &LiveApp, metrics: &Arc<Metrics>, path: &Path, home: &Path) -> bool {
    let config = match Config::load(path, home) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "reload refused; still serving the previous configuration");
            return false;
        }
    };
    let old = live.load();
    let (before, after) = (&old.config().server, &config.server);
    if (
        before.listen,
        before.port,
        before.max_connections,
        before.header_timeout,
    ) != (after.listen, after.port, after.max_connections, after.header_timeout)
    {
        tracing::warn!("listen, port, max_connections and header_timeout take effect only on restart");
    }
    if old.config().log_level != config.log_level {
        tracing::warn!("[log] level takes effect only on restart");
    }
    if old.config().access_log != config.access_log {
        tracing::warn!("[log] access and access_format take effect only on restart");
    }
    if old.config().tls.as_ref().map(|tls| tls.listen) != config.tls.as_ref().map(|tls| tls.listen) {
        tracing::warn!("[tls] listen and port, and adding [tls], take effect only on restart");
    }
    if old.config().streams != config.streams {
        tracing::warn!("[[stream]] sections take effect only on restart");
    }
    let modules = config.modules.len();
    live.store(Arc::new(App::new(config, home, Arc::clone(metrics), Some(&old))));
    tracing::info!(config = %path.display(), modules, "configuration reloaded");
    true
}
