//! `[tls] acme`: the certificate for `domains` obtained from an ACME server (HTTP-01 on the plain HTTP
//! port, or TLS-ALPN-01 on the HTTPS listener: see [`ChallengeResolver`]) and renewed in the background when it nears expiry. The account and the certificate live under
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
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{AcmeChallenge, AcmeConfig};
use crate::metrics::Metrics;
use crate::tls::redirect::ACME_CHALLENGE_PREFIX;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737): a handshake that asks for it is the ACME server's.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Challenges being solved: HTTP-01 answers waiting to be fetched (token → key authorization), and
/// TLS-ALPN-01 certificates waiting to be shown (domain → certificate).
#[derive(Debug, Default)]
pub struct Challenges {
    http: Mutex<HashMap<String, String>>,
    alpn: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// The answer to `GET path` on the plain HTTP port, when it is a challenge this process is solving.
    pub fn answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(ACME_CHALLENGE_PREFIX)?;
        self.lock().get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name`, while its challenge is being solved.
    pub fn alpn_certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.alpn).get(&name.to_ascii_lowercase()).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        lock(&self.http)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The HTTPS listener's certificates, but for a handshake asking for `acme-tls/1`: that one gets the
/// challenge certificate of the name it asks for, or no certificate (and no handshake) at all.
#[derive(Debug)]
pub struct ChallengeResolver {
    /// The certificates served otherwise.
    pub certificates: Arc<dyn ResolvesServerCert>,
    /// The challenges being solved.
    pub challenges: Arc<Challenges>,
}

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = client_hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|protocol| protocol == ACME_TLS_ALPN));
        if acme {
            return self.challenges.alpn_certificate(client_hello.server_name()?);
        }
        self.certificates.resolve(client_hello)
    }
}

/// The self-signed certificate TLS-ALPN-01 asks for: `domain` as its only name, and the SHA-256 of the
/// key authorization in the critical acmeIdentifier extension (RFC 8737, section 3).
fn alpn_certificate(domain: &str, digest: &[u8]) -> Result<CertifiedKey, AcmeError> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).map_err(|why| AcmeError::Order {
        domains: domain.to_owned(),
        why: why.to_owned(),
    })?;
    // Not `CertifiedKey::from_der`: its check that key and certificate match parses the certificate with
    // webpki, which refuses the critical acmeIdentifier extension it does not know.
    let provider = rustls::crypto::ring::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|why| AcmeError::Order {
            domains: domain.to_owned(),
            why: why.to_string(),
        })?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing_key))
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
    /// The TLS-ALPN-01 certificate could not be made.
    #[error("TLS-ALPN-01 certificate: {0}")]
    Certificate(#[from] rcgen::Error),
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

/// One order, start to finish: the account (made once and kept), the configured challenge for every
/// name, a new key and certificate written to `HOME/certs/acme/`.
async fn obtain(acme: &AcmeConfig, challenges: &Challenges) -> Result<(), AcmeError> {
    create_private_dir(&acme.dir)?;
    let account = account(acme).await?;
    let identifiers: Vec<Identifier> = acme.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut tokens = Vec::new();
    let mut names = Vec::new();
    let (kind, wanted) = match acme.challenge {
        AcmeChallenge::Http01 => (ChallengeType::Http01, "HTTP-01"),
        AcmeChallenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "TLS-ALPN-01"),
    };
    let solved = async {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            if authorization.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| AcmeError::Order {
                domains: acme.domains.join(","),
                why: format!("the server offers no {wanted} challenge"),
            })?;
            let key_authorization = challenge.key_authorization();
            if kind == ChallengeType::TlsAlpn01 {
                let Identifier::Dns(domain) = challenge.identifier().identifier.clone() else {
                    return Err(AcmeError::Order {
                        domains: acme.domains.join(","),
                        why: "TLS-ALPN-01 is asked for something other than a DNS name".into(),
                    });
                };
                let domain = domain.to_ascii_lowercase();
                let certificate = alpn_certificate(&domain, key_authorization.digest().as_ref())?;
                lock(&challenges.alpn).insert(domain.clone(), Arc::new(certificate));
                names.push(domain);
            } else {
                let token = challenge.token.clone();
                challenges
                    .lock()
                    .insert(token.clone(), key_authorization.as_str().to_owned());
                tokens.push(token);
            }
            challenge.set_ready().await?;
        }
        Ok::<_, AcmeError>(())
    }
    .await;
    let status = match solved {
        Ok(()) => order.poll_ready(&RetryPolicy::default()).await,
        Err(error) => {
            forget(challenges, &tokens, &names);
            return Err(error);
        }
    };
    forget(challenges, &tokens, &names);
    let status = status?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Order {
            domains: acme.domains.join(","),
            why: format!(
                "the order is {status:?}, not ready (a challenge failed: is the {} reachable from the ACME server as port {}?)",
                if kind == ChallengeType::TlsAlpn01 { "HTTPS port" } else { "HTTP port" },
                if kind == ChallengeType::TlsAlpn01 { 443 } else { 80 },
            ),
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

fn forget(challenges: &Challenges, tokens: &[String], names: &[String]) {
    let mut waiting = challenges.lock();
    for token in tokens {
        waiting.remove(token);
    }
    let mut shown = lock(&challenges.alpn);
    for name in names {
        shown.remove(name);
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
    fn the_tls_alpn_01_certificate_names_the_domain_and_carries_the_digest_critically() {
        let digest = [7u8; 32];
        let certificate = alpn_certificate("site.example", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(certificate.end_entity_cert().unwrap()).unwrap();
        let names = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", names.value.general_names),
            r#"[DNSName("site.example")]"#
        );
        let acme_identifier = x509_parser::oid_registry::Oid::from(&[1, 3, 6, 1, 5, 5, 7, 1, 31]).unwrap();
        let extension = cert
            .extensions()
            .iter()
            .find(|extension| extension.oid == acme_identifier)
            .expect("acmeIdentifier");
        assert!(extension.critical);
        // An OCTET STRING of 32 bytes (RFC 8737, section 3).
        assert_eq!(extension.value[..2], [0x04, 32]);
        assert_eq!(extension.value[2..], digest);
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
