//! The certificates the HTTPS listener serves: loaded from PEM files, chosen per connection by SNI (the
//! exact name, then a wildcard, then the first certificate), and re-read when their files change or on
//! SIGHUP. A file that fails to load keeps its last good certificate serving, with a log line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::CertificateFiles;
use crate::metrics::Metrics;

/// How often the certificate files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why a certificate could not be loaded; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{0}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    /// The key file holds no usable private key.
    #[error("{path}: no usable private key in it (expected a PEM PRIVATE KEY): {why}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} does not match the certificate in {cert}: {why}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        why: rustls::Error,
    },
}

/// Server names to values: the exact name first, then `*.` and the name without its first label, then
/// the first entry. Pure, so that selection is tested on its own.
#[derive(Debug)]
pub struct SniTable<T> {
    exact: HashMap<String, T>,
    wildcard: HashMap<String, T>,
    default: Option<T>,
}

impl<T: Clone> SniTable<T> {
    /// A table of `(names, value)` entries; the first entry is the default, and an earlier entry wins a
    /// name that two entries list.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a [String], T)>) -> Self {
        let mut table = SniTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        };
        for (names, value) in entries {
            table.default.get_or_insert_with(|| value.clone());
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.entry(parent.to_owned()),
                    None => table.exact.entry(name),
                }
                .or_insert_with(|| value.clone());
            }
        }
        table
    }

    /// The value for a client that asked for `server_name` (or named none).
    pub fn select(&self, server_name: Option<&str>) -> Option<&T> {
        let Some(name) = server_name else {
            return self.default.as_ref();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.exact
            .get(&name)
            .or_else(|| name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
            .or(self.default.as_ref())
    }
}

/// Reads a certificate chain and its key, and checks that they belong together.
pub fn load_pair(files: &CertificateFiles) -> Result<CertifiedKey, CertificateError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| CertificateError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| CertificateError::NoCertificate(files.cert.clone()))?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| CertificateError::Key {
        path: files.key.clone(),
        why: error.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).map_err(|why| match why {
        rustls::Error::InconsistentKeys(_) => CertificateError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            why,
        },
        other => CertificateError::Key {
            path: files.key.clone(),
            why: other.to_string(),
        },
    })
}

/// What a file looked like when it was read: a change in either means read it again.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(files: &CertificateFiles) -> Stamp {
    let look = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    let ((cert_time, cert_len), (key_time, key_len)) = (look(&files.cert)?, look(&files.key)?);
    Some((cert_time, cert_len, key_time, key_len))
}

struct Loaded {
    files: CertificateFiles,
    stamp: Stamp,
    /// The last good certificate from these files; `None` when they never loaded.
    key: Option<Arc<CertifiedKey>>,
}

/// The served certificates: the SNI resolver the TLS configuration asks at every handshake.
pub struct Certificates {
    table: ArcSwap<SniTable<Arc<CertifiedKey>>>,
    loaded: Mutex<Vec<Loaded>>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads every certificate; any failure is an error, since at start there is no last good one.
    pub fn load(files: &[CertificateFiles]) -> Result<Certificates, CertificateError> {
        let loaded = files
            .iter()
            .map(|files| {
                let stamp = stamp(files);
                let key = match load_pair(files) {
                    Ok(key) => Some(Arc::new(key)),
                    // ACME's certificate comes later; its files appearing makes the watcher load it.
                    Err(error) if files.managed => {
                        tracing::info!(%error, "no ACME certificate yet");
                        None
                    }
                    Err(error) => return Err(error),
                };
                Ok(Loaded {
                    key,
                    files: files.clone(),
                    stamp,
                })
            })
            .collect::<Result<Vec<_>, CertificateError>>()?;
        let certificates = Certificates {
            table: ArcSwap::from_pointee(table(&loaded)),
            loaded: Mutex::new(loaded),
        };
        Ok(certificates)
    }

    /// Re-reads every certificate in `files` and serves the result from the next handshake on. A pair
    /// that fails keeps the certificate last loaded from the same paths, if any. Returns the failures.
    pub fn reload(&self, files: &[CertificateFiles]) -> usize {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut failures = 0;
        let fresh: Vec<Loaded> = files
            .iter()
            .map(|files| {
                let stamp = stamp(files);
                let key = match load_pair(files) {
                    Ok(key) => Some(Arc::new(key)),
                    Err(_) if files.managed && stamp.is_none() && !loaded.iter().any(|old| old.files == *files && old.key.is_some()) => None,
                    Err(error) => {
                        failures += 1;
                        let last = loaded
                            .iter()
                            .find(|old| old.files.cert == files.cert && old.files.key == files.key)
                            .and_then(|old| old.key.clone());
                        if last.is_some() {
                            tracing::error!(%error, "certificate reload failed; serving the last good certificate from these files");
                        } else {
                            tracing::error!(%error, "certificate not loaded; its names get the default certificate");
                        }
                        last
                    }
                };
                Loaded {
                    files: files.clone(),
                    stamp,
                    key,
                }
            })
            .collect();
        *loaded = fresh;
        self.table.store(Arc::new(table(&loaded)));
        if failures == 0 {
            tracing::info!(certificates = files.len(), "certificates reloaded");
        }
        failures
    }

    /// Whether `files` differ from what was last loaded: other files, or the same ones changed on disk.
    pub fn changed(&self, files: &[CertificateFiles]) -> bool {
        let loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        loaded.len() != files.len()
            || loaded
                .iter()
                .zip(files)
                .any(|(old, files)| old.files != *files || old.stamp != stamp(files))
    }

    /// Re-reads the certificates whenever `current()` (the running configuration's list) differs from
    /// what was last loaded, checking every [`WATCH_EVERY`]; runs for as long as the future is polled.
    pub async fn watch(self: Arc<Self>, current: impl Fn() -> Vec<CertificateFiles>, metrics: Arc<Metrics>) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let files = current();
            let certificates = Arc::clone(&self);
            // File reads and key parsing block; keep them off the runtime's worker threads.
            let failures = tokio::task::spawn_blocking(move || {
                if certificates.changed(&files) {
                    certificates.reload(&files)
                } else {
                    0
                }
            })
            .await
            .unwrap_or(0);
            metrics.tls_certificate_errors.inc_by(failures as u64);
        }
    }
}

fn table(loaded: &[Loaded]) -> SniTable<Arc<CertifiedKey>> {
    SniTable::new(
        loaded
            .iter()
            .filter_map(|entry| Some((entry.files.names.as_slice(), Arc::clone(entry.key.as_ref()?)))),
    )
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.table.load().select(client_hello.server_name()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (default, shop, wild, api) = (
            names(&[]),
            names(&["shop.example"]),
            names(&["*.example"]),
            names(&["api.example"]),
        );
        let table = SniTable::new([
            (default.as_slice(), "default"),
            (shop.as_slice(), "shop"),
            (wild.as_slice(), "wild"),
            (api.as_slice(), "api"),
        ]);
        let pick = |name: Option<&str>| table.select(name).copied();
        assert_eq!(pick(Some("shop.example")), Some("shop"));
        assert_eq!(pick(Some("SHOP.Example.")), Some("shop"));
        assert_eq!(pick(Some("api.example")), Some("api"), "an exact name beats a wildcard");
        assert_eq!(pick(Some("blog.example")), Some("wild"));
        assert_eq!(
            pick(Some("a.blog.example")),
            Some("default"),
            "a wildcard covers one label only"
        );
        assert_eq!(
            pick(Some("example")),
            Some("default"),
            "a wildcard does not cover its parent"
        );
        assert_eq!(pick(Some("other.test")), Some("default"));
        assert_eq!(pick(None), Some("default"));
    }

    #[test]
    fn the_first_listing_of_a_name_wins_and_an_empty_table_has_nothing() {
        let (a, b) = (names(&["x.test"]), names(&["x.test", "y.test"]));
        let table = SniTable::new([(a.as_slice(), 1), (b.as_slice(), 2)]);
        assert_eq!(
            (table.select(Some("x.test")), table.select(Some("y.test"))),
            (Some(&1), Some(&2))
        );
        let empty = SniTable::<u8>::new([]);
        assert_eq!(empty.select(Some("x.test")), None);
    }
}
