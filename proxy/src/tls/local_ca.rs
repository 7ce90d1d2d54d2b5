//! `modproxy cert local`: a certificate authority of this machine's own, so that `https://localhost`
//! is trusted in the developer's browser. The CA is made once (`HOME/certs/local-ca.pem` and its key,
//! 0600), added to the trust stores it can reach, and signs a certificate for localhost that the
//! `[tls]` section serves. Running it again reuses the CA and renews the localhost certificate.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The names the localhost certificate covers unless told otherwise.
pub const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The CA's name; fixed, so that a CA made before signs again with the same issuer name.
const CA_NAME: &str = "modproxy local development CA";

/// `modproxy cert local`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// The names (and IP addresses) the certificate covers.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_NAMES.map(String::from))]
    pub names: Vec<String>,
    /// The HTTPS port written into the config when it has no `[tls]` section yet.
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Make the files only: do not add the CA to the system's or the browsers' trust stores.
    #[arg(long)]
    pub no_trust: bool,
}

/// What `run` did, for the person who ran it.
#[derive(Debug)]
pub struct Report {
    /// Lines to print.
    pub lines: Vec<String>,
}

/// Why the local CA could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused the certificate or the key.
    #[error("{0}")]
    Certificate(#[from] rcgen::Error),
    /// The configuration with HTTPS added would not load.
    #[error("the config with [tls] added does not load: {0}")]
    Config(String),
}

/// Files under `HOME/certs/`.
struct Files {
    ca_cert: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn under(home: &Path) -> Files {
        let dir = home.join("certs");
        Files {
            ca_cert: dir.join("local-ca.pem"),
            ca_key: dir.join("local-ca.key"),
            cert: dir.join("localhost.pem"),
            key: dir.join("localhost.key"),
        }
    }
}

/// Makes (or reuses) the CA, issues the localhost certificate, trusts the CA unless `no_trust`, and adds
/// a `[tls]` section serving it to `config` when it has none.
pub fn run(home: &Path, config: &Path, args: &LocalArgs) -> Result<Report, LocalCaError> {
    let files = Files::under(home);
    let dir = home.join("certs");
    std::fs::create_dir_all(&dir).map_err(|source| LocalCaError::File { path: dir, source })?;
    let mut lines = Vec::new();
    let ca_key = match std::fs::read_to_string(&files.ca_key) {
        Ok(pem) if files.ca_cert.exists() => {
            lines.push(format!("using the local CA in {}", files.ca_cert.display()));
            KeyPair::from_pem(&pem)?
        }
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params(this_year()).self_signed(&key)?;
            write_private(&files.ca_key, &key.serialize_pem())?;
            write_private(&files.ca_cert, &cert.pem())?;
            lines.push(format!("made a local CA: {}", files.ca_cert.display()));
            key
        }
    };
    let issuer = Issuer::new(ca_params(this_year()), ca_key);
    let key = KeyPair::generate()?;
    let cert = leaf_params(&args.names, this_year())?.signed_by(&key, &issuer)?;
    write_private(&files.key, &key.serialize_pem())?;
    write_private(&files.cert, &cert.pem())?;
    lines.push(format!(
        "issued {} for {} (valid two years)",
        files.cert.display(),
        args.names.join(", ")
    ));
    if args.no_trust {
        lines.push("not added to any trust store (--no-trust)".into());
    } else {
        lines.extend(trust(&files.ca_cert));
    }
    lines.push(add_tls_section(config, home, args)?);
    Ok(Report { lines })
}

/// The CA's parameters; the same every year but for the validity, so that the issuer name is stable.
fn ca_params(year: i32) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name.push(DnType::OrganizationName, "modproxy");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
    params
}

/// A server certificate for `names` (DNS names or IP addresses), valid for about two years.
fn leaf_params(names: &[String], year: i32) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().map_or("localhost", String::as_str));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = date_time_ymd(year - 1, 12, 1);
    params.not_after = date_time_ymd(year + 2, 1, 1);
    Ok(params)
}

fn this_year() -> i32 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    1970 + (seconds / 31_556_952) as i32
}

/// Writes a file only its owner may read (keys, and the certificates beside them).
fn write_private(path: &Path, text: &str) -> Result<(), LocalCaError> {
    let file_error = |source| LocalCaError::File {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_error)?;
    file.write_all(text.as_bytes()).map_err(file_error)
}

/// Adds the CA to the trust stores within reach: the system's (Debian's `update-ca-certificates`, which
/// curl and most tools read) and the browsers' NSS database (`certutil`, for Chromium and Firefox).
fn trust(ca_cert: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let system = Path::new("/usr/local/share/ca-certificates");
    if system.is_dir() {
        let target = system.join("modproxy-local-ca.crt");
        let done = std::fs::copy(ca_cert, &target).is_ok()
            && Command::new("update-ca-certificates")
                .output()
                .is_ok_and(|out| out.status.success());
        lines.push(if done {
            "trusted by the system (update-ca-certificates)".into()
        } else {
            format!(
                "not trusted by the system: run as root, or copy {} to {} and run update-ca-certificates",
                ca_cert.display(),
                target.display()
            )
        });
    }
    let nssdb = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pki/nssdb"));
    let certutil = |args: &[&str]| {
        Command::new("certutil")
            .args(args)
            .output()
            .is_ok_and(|out| out.status.success())
    };
    match nssdb {
        Some(db) if Command::new("certutil").arg("-H").output().is_ok() => {
            let _ = std::fs::create_dir_all(&db);
            let db = format!("sql:{}", db.display());
            if !Path::new(&db[4..]).join("cert9.db").exists() {
                certutil(&["-N", "-d", &db, "--empty-password"]);
            }
            let ca = ca_cert.display().to_string();
            lines.push(if certutil(&["-A", "-d", &db, "-t", "C,,", "-n", CA_NAME, "-i", &ca]) {
                format!("trusted by Chromium and Firefox ({db})")
            } else {
                format!("certutil could not add the CA to {db}")
            });
        }
        _ => lines.push(format!(
            "browsers: install certutil (Debian: libnss3-tools) and run again, or import {} as an authority",
            ca_cert.display()
        )),
    }
    lines
}

/// The `[tls]` section serving the localhost certificate.
fn tls_section(port: u16) -> String {
    format!(
        "\n# Added by `modproxy cert local`: https://localhost:{port}/ with the local CA's certificate.\n\
         [tls]\nport = {port}\n\n[[tls.certificate]]\ncert = \"certs/localhost.pem\"\nkey = \"certs/localhost.key\"\n"
    )
}

/// Appends [`tls_section`] to `config` when it has no `[tls]`; says what it did.
fn add_tls_section(config: &Path, home: &Path, args: &LocalArgs) -> Result<String, LocalCaError> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(LocalCaError::File {
                path: config.to_owned(),
                source,
            })
        }
    };
    let has_tls = text
        .parse::<toml::Table>()
        .map(|table| table.contains_key("tls"))
        .unwrap_or(false);
    if has_tls {
        return Ok(format!(
            "{} already has [tls]: serve certs/localhost.pem and certs/localhost.key from it",
            config.display()
        ));
    }
    let updated = format!("{}{}", text, tls_section(args.port));
    crate::config::Config::parse(&updated, config, home).map_err(|error| LocalCaError::Config(error.to_string()))?;
    if let Some(dir) = config.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LocalCaError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(config, updated).map_err(|source| LocalCaError::File {
        path: config.to_owned(),
        source,
    })?;
    Ok(format!(
        "added [tls] on port {} to {}: restart modproxy (or start it) and open https://localhost:{}/",
        args.port,
        config.display(),
        args.port
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_it_adds_is_a_valid_tls_config() {
        let home = Path::new("/home/mp");
        let config = crate::config::Config::parse(&tls_section(9443), Path::new("conf/default.toml"), home).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.listen.port(), 9443);
        assert_eq!(tls.certificates[0].cert, home.join("certs/localhost.pem"));
    }
}
