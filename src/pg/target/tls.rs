//! TLS: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, through OpenSSL
//! (postgres-openssl). The postgres crate itself knows only disable/prefer/require and no
//! certificates, so these keys are applied to the connector here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use postgres::config::SslMode as WireSslMode;
use postgres::{Client, Config, NoTls};
use postgres_openssl::MakeTlsConnector;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("invalid sslmode '{0}': use disable, prefer, require, verify-ca or verify-full")]
    Mode(String),
    #[error(
        "sslmode {0} needs a root certificate: give sslrootcert in the DSN or --sslrootcert FILE"
    )]
    NoRootCert(SslMode),
    #[error("cannot use root certificate {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error("cannot use client certificate {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// libpq's sslmode values (`allow` is taken as `prefer`: pgstress never starts without TLS
/// to retry with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise (libpq's default).
    #[default]
    #[value(alias = "allow")]
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, certificate chain verified against the root certificate.
    VerifyCa,
    /// TLS, chain and host name verified.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = TlsError;

    fn from_str(text: &str) -> Result<Self, TlsError> {
        match text {
            "disable" => Ok(SslMode::Disable),
            "prefer" | "allow" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(TlsError::Mode(other.to_owned())),
        }
    }
}

crate::deserialize_from_str!(SslMode);

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// The TLS settings of a target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
    /// The client certificate (libpq's `sslcert`) and its private key (`sslkey`).
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// Opens connections with or without TLS, as the options say.
#[derive(Clone)]
pub enum Connector {
    Plain,
    Tls(MakeTlsConnector),
}

impl Connector {
    pub fn build(options: &TlsOptions) -> Result<Self, TlsError> {
        let Some(ssl) = ssl_connector(options)? else {
            return Ok(Connector::Plain);
        };
        let mut connector = MakeTlsConnector::new(ssl);
        if options.mode != SslMode::VerifyFull {
            connector.set_callback(|ssl, _| {
                ssl.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(Connector::Tls(connector))
    }

    /// The wire-level mode the postgres crate enforces (verification is the connector's).
    pub fn wire_mode(mode: SslMode) -> WireSslMode {
        match mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        }
    }

    pub fn connect(&self, config: &Config) -> Result<Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(NoTls),
            Connector::Tls(tls) => config.connect(tls.clone()),
        }
    }
}

/// OpenSSL's environment variable naming its default CA bundle.
const CA_FILE_VAR: &str = "SSL_CERT_FILE";
/// Its value as pgstress found it, once `skip_system_ca_bundle` pointed it away.
static CA_FILE_FOUND: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();

/// pgstress trusts only the root certificate file it is given, as libpq does (never the
/// system's CAs), yet OpenSSL's connector builder loads the system's CA bundle in every
/// process: 220 KB of PEM, about 60 ms of CPU, half of a one-request run's (perf). Pointing
/// OpenSSL's default file at an empty one skips that parse; the certificates pgstress checks
/// against are set on each connector. Call it first in `main`, while the process has one
/// thread (the environment is not safe to change once others may read it).
pub fn skip_system_ca_bundle() {
    if CA_FILE_FOUND.set(std::env::var_os(CA_FILE_VAR)).is_ok() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var(CA_FILE_VAR, "/dev/null") };
    }
}

/// Gives a child process (the server, a pooler pgstress starts) OpenSSL's CA bundle as
/// pgstress found it in its environment: theirs to use.
pub fn restore_ca_bundle(command: &mut std::process::Command) {
    match CA_FILE_FOUND.get() {
        Some(Some(found)) => command.env(CA_FILE_VAR, found),
        Some(None) => command.env_remove(CA_FILE_VAR),
        None => command,
    };
}

/// The OpenSSL connector `sslmode` asks for, as libpq builds it (the chain checked under
/// verify-ca and verify-full, and under require when a root certificate is given; a client
/// certificate when one is set); None for `disable`. The `postgres` crate's connector and the
/// lean connection's both come from here.
pub fn ssl_connector(options: &TlsOptions) -> Result<Option<SslConnector>, TlsError> {
    if options.mode == SslMode::Disable {
        return Ok(None);
    }
    // Built once per set of options in the process: OpenSSL's connector builder loads the
    // system's CA bundle every time (about a third of a short run's CPU, perf), and the setup
    // connection, the requests and the lean connection all ask for the same one.
    static BUILT: Mutex<Vec<(TlsOptions, SslConnector)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, connector)) = built.iter().find(|(o, _)| o == options) {
        return Ok(Some(connector.clone()));
    }
    let connector = build_ssl_connector(options)?;
    built.push((options.clone(), connector.clone()));
    Ok(Some(connector))
}

fn build_ssl_connector(options: &TlsOptions) -> Result<SslConnector, TlsError> {
    let setup = |err: openssl::error::ErrorStack| TlsError::Setup(err.to_string());
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
    // libpq: with a root certificate, require checks the chain as verify-ca does.
    let verify = matches!(options.mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (options.mode == SslMode::Require && options.root_cert.is_some());
    match (&options.root_cert, verify) {
        // The file's certificates alone, as libpq trusts them: the connector's builder has
        // already loaded the system's CAs, which `set_ca_file` would only add to.
        (Some(path), _) => builder.set_cert_store(root_store(path)?),
        (None, true) => return Err(TlsError::NoRootCert(options.mode)),
        (None, false) => {}
    }
    if let Some(cert) = &options.client_cert {
        use_client_cert(&mut builder, cert, options.client_key.as_deref())?;
    }
    builder.set_verify(if verify {
        SslVerifyMode::PEER
    } else {
        SslVerifyMode::NONE
    });
    Ok(builder.build())
}

/// The client certificate and its key (libpq's default: the certificate's name with `.key`),
/// the key refused, as libpq refuses it, when others may read it.
fn use_client_cert(
    builder: &mut openssl::ssl::SslConnectorBuilder,
    cert: &Path,
    key: Option<&Path>,
) -> Result<(), TlsError> {
    let key = key.map_or_else(|| cert.with_extension("key"), Path::to_path_buf);
    let fail = |path: &Path, reason: String| TlsError::ClientCert {
        path: path.to_path_buf(),
        reason,
    };
    check_key_mode(&key).map_err(|reason| fail(&key, reason))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|err| fail(cert, err.to_string()))?;
    builder
        .set_private_key_file(&key, openssl::ssl::SslFiletype::PEM)
        .map_err(|err| fail(&key, format!("key {}: {err}", key.display())))?;
    builder
        .check_private_key()
        .map_err(|err| fail(cert, format!("the key does not match it: {err}")))
}

/// libpq's rule: 0600 or less when the key is the user's, 0640 or less when root's.
fn check_key_mode(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|err| format!("key {}: {err}", key.display()))?;
    let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
    if meta.mode() & 0o777 & !allowed != 0 {
        return Err(format!(
            "private key {} has group or world access; it must be u=rw (0600) or less, \
             or u=rw,g=r (0640) or less when owned by root",
            key.display()
        ));
    }
    Ok(())
}

/// A store holding the root certificates of `path` and nothing else.
fn root_store(path: &Path) -> Result<X509Store, TlsError> {
    let unusable = |reason: String| TlsError::RootCert {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|err| unusable(err.to_string()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|err| unusable(err.to_string()))?;
    if certs.is_empty() {
        return Err(unusable("no PEM certificate in it".to_owned()));
    }
    let mut store = X509StoreBuilder::new().map_err(|err| unusable(err.to_string()))?;
    for cert in certs {
        store
            .add_cert(cert)
            .map_err(|err| unusable(err.to_string()))?;
    }
    Ok(store.build())
}

/// Whether a file exists: for a clear error before OpenSSL's own.
pub fn check_root_cert(path: &Path) -> Result<(), TlsError> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|err| TlsError::RootCert {
            path: path.to_owned(),
            reason: format!("{err}; check the path given as sslrootcert"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print_as_libpq_names() {
        for name in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(name.parse::<SslMode>().unwrap().to_string(), name);
        }
        assert!(
            "verify"
                .parse::<SslMode>()
                .unwrap_err()
                .to_string()
                .contains("'verify'")
        );
    }

    /// A self-signed certificate in PEM, made here.
    fn self_signed_pem() -> Vec<u8> {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509::X509Name};
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_text("CN", "pgstress test root")
            .unwrap();
        let name = name.build();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        cert.set_subject_name(&name).unwrap();
        cert.set_issuer_name(&name).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        cert.build().to_pem().unwrap()
    }

    #[test]
    fn a_root_certificate_is_trusted_alone_as_libpq_trusts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.crt");
        std::fs::write(&path, self_signed_pem()).unwrap();
        let options = TlsOptions {
            mode: SslMode::VerifyFull,
            root_cert: Some(path.clone()),
            ..TlsOptions::default()
        };
        let connector = build_ssl_connector(&options).unwrap();
        let trusted = connector.context().cert_store().all_certificates();
        assert_eq!(trusted.len(), 1, "the system's CAs are not the server's");
        let subject = trusted[0].subject_name().entries().next().unwrap();
        assert_eq!(subject.data().to_string().unwrap(), "pgstress test root");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(
            build_ssl_connector(&options),
            Err(TlsError::RootCert { .. })
        ));
    }

    #[test]
    fn verification_without_a_root_certificate_is_refused() {
        let options = TlsOptions {
            mode: SslMode::VerifyFull,
            ..TlsOptions::default()
        };
        assert!(matches!(
            Connector::build(&options),
            Err(TlsError::NoRootCert(_))
        ));
    }
}
