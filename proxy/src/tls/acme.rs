//! `[tls] acme`: the certificate for `domains` obtained from an ACME server (HTTP-01 on the plain HTTP
//! port) and renewed in the background when it nears expiry. The account and the certificate live under
//! `HOME/certs/acme/` (0600); the certificate is written as files that the certificate watcher loads, so
//! a failed renewal simply leaves the old one serving, with a log line and
//! `modproxy_tls_acme_failures_total`.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use crate::config::AcmeConfig;
use crate::metrics::Metrics;
use crate::tls::redirect::ACME_CHALLENGE_PREFIX;

/// HTTP-01 answers waiting to be fetched: token → key authorization.
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<String, String>>);

impl Challenges {
    /// The answer to `GET path` on the plain HTTP port, when it is a challenge this process is solving.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PREFIX)?;
        self.lock().get(token).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why obtaining a certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The ACME server or the connection to it.
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    /// A file under `HOME/certs/acme`.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The order did not go as ACME says it should.
    #[error("ACME order for {domains}: {why}")]
    Order {
        /// The names ordered.
        domains: String,
        /// What happened.
        why: String,
    },
}

/// The certificate file and key file for `acme` (the managed entry of `[tls]`).
pub fn files(acme: &AcmeConfig) -> (PathBuf, PathBuf) {
    let stem = &acme.domains[0];
    (
        acme.dir.join(format!("{stem}.pem")),
        acme.dir.join(format!("{stem}.key")),
    )
}

/// Keeps the certificate current for as long as the future runs: checks every `check_every`, and
/// obtains a new certificate when there is none or it expires within `renew_before`. `obtained` is
/// called after each new certificate is written.
pub async fn keep_current(acme: AcmeConfig, challenges: Arc<Challenges>, metrics: Arc<Metrics>, obtained: impl Fn()) {
    loop {
        let (cert, _) = files(&acme);
        if renewal_due(&cert, acme.renew_before, SystemTime::now()) {
            match obtain(&acme, &challenges).await {
                Ok(()) => {
                    tracing::info!(domains = acme.domains.join(","), "ACME certificate obtained");
                    obtained();
                }
                Err(error) => {
                    metrics.tls_acme_failures.inc();
                    tracing::error!(%error, "ACME certificate not obtained; the current one (if any) serves on; retrying in check_every");
                }
            }
        }
        tokio::time::sleep(acme.check_every).await;
    }
}

/// Whether the certificate in `cert` is missing, unreadable, or expires within `renew_before` of `now`.
pub fn renewal_due(cert: &Path, renew_before: Duration, now: SystemTime) -> bool {
    let Ok(pem) = std::fs::read(cert) else {
        return true;
    };
    let Some(not_after) = not_after(&pem) else {
        return true;
    };
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    not_after - now < renew_before.as_secs() as i64
}

/// The expiry (Unix seconds) of the first certificate in `pem`.
fn not_after(pem: &[u8]) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// One order, start to finish: the account (made once and kept), HTTP-01 for every name, a new key and
/// certificate written to `HOME/certs/acme/`.
async fn obtain(acme: &AcmeConfig, challenges: &Challenges) -> Result<(), AcmeError> {
    create_private_dir(&acme.dir)?;
    let account = account(acme).await?;
    let identifiers: Vec<Identifier> = acme.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut tokens = Vec::new();
    let solved = async {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            if authorization.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| AcmeError::Order {
                    domains: acme.domains.join(","),
                    why: "the server offers no HTTP-01 challenge".into(),
                })?;
            let token = challenge.token.clone();
            let answer = challenge.key_authorization().as_str().to_owned();
            challenges.lock().insert(token.clone(), answer);
            tokens.push(token);
            challenge.set_ready().await?;
        }
        Ok::<_, AcmeError>(())
    }
    .await;
    let status = match solved {
        Ok(()) => order.poll_ready(&RetryPolicy::default()).await,
        Err(error) => {
            forget(challenges, &tokens);
            return Err(error);
        }
    };
    forget(challenges, &tokens);
    let status = status?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order {
            domains: acme.domains.join(","),
            why: format!("the order is {status:?}, not ready (a challenge failed: is the HTTP port reachable from the ACME server as port 80?)"),
        });
    }
    let key = order.finalize().await?;
    let chain = order.poll_certificate(&RetryPolicy::default()).await?;
    // Key first: the certificate watcher loads a pair when the certificate changes.
    let (cert_path, key_path) = files(acme);
    write_private(&key_path, &key)?;
    write_private(&cert_path, &chain)?;
    Ok(())
}

fn forget(challenges: &Challenges, tokens: &[String]) {
    let mut waiting = challenges.lock();
    for token in tokens {
        waiting.remove(token);
    }
}

/// The ACME account: from `account.json` when there is one for this directory, else a new one, saved.
async fn account(acme: &AcmeConfig) -> Result<Account, AcmeError> {
    let builder = || match &acme.ca_root {
        Some(root) => Account::builder_with_root(root),
        None => Account::builder(),
    };
    let saved = acme.dir.join("account.json");
    if let Some(credentials) = std::fs::read(&saved)
        .ok()
        .and_then(|json| serde_json::from_slice::<AccountCredentials>(&json).ok())
    {
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact = format!("mailto:{}", acme.email);
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &[&contact],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_string(&credentials).expect("credentials serialize");
    write_private(&saved, &json)?;
    Ok(account)
}

fn create_private_dir(dir: &Path) -> Result<(), AcmeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AcmeError::File {
            path: dir.to_owned(),
            source,
        })
}

/// Writes `text` to a temporary file (0600) beside `path` and renames it over `path`, so a reader never
/// sees half a file.
fn write_private(path: &Path, text: &str) -> Result<(), AcmeError> {
    let error = |source| AcmeError::File {
        path: path.to_owned(),
        source,
    };
    let partial = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&partial, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_answer_only_their_own_tokens() {
        let challenges = Challenges::default();
        challenges.lock().insert("tok".into(), "tok.thumb".into());
        assert_eq!(
            challenges.answer("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(challenges.answer("/.well-known/acme-challenge/other"), None);
        assert_eq!(challenges.answer("/tok"), None);
    }

    #[test]
    fn renewal_is_due_when_missing_unreadable_or_near_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        let day = Duration::from_secs(86_400);
        assert!(renewal_due(&path, day, SystemTime::now()), "missing");
        std::fs::write(&path, "junk").unwrap();
        assert!(renewal_due(&path, day, SystemTime::now()), "unreadable");
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        std::fs::write(&path, cert.pem()).unwrap();
        assert!(!renewal_due(&path, 30 * day, SystemTime::now()));
        let late_2099 = UNIX_EPOCH + Duration::from_secs(4_102_444_800 - 10 * 86_400);
        assert!(renewal_due(&path, 30 * day, late_2099), "within 30 days of expiry");
    }
}
