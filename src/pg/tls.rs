//! TLS: libpq's `sslmode` and `sslrootcert`, through OpenSSL (postgres-openssl). The postgres
//! crate itself knows only disable/prefer/require and no root certificate, so these two keys
//! are taken out of the DSN here and applied to the connector.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
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
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, unverified; plain otherwise (libpq's default).
    #[default]
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
}

/// Opens connections with or without TLS, as the options say.
#[derive(Clone)]
pub enum Connector {
    Plain,
    Tls(MakeTlsConnector),
}

impl Connector {
    pub fn build(options: &TlsOptions) -> Result<Self, TlsError> {
        if options.mode == SslMode::Disable {
            return Ok(Connector::Plain);
        }
        let setup = |err: openssl::error::ErrorStack| TlsError::Setup(err.to_string());
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
        let verify = matches!(options.mode, SslMode::VerifyCa | SslMode::VerifyFull);
        match (&options.root_cert, verify) {
            (Some(path), _) => builder
                .set_ca_file(path)
                .map_err(|err| TlsError::RootCert {
                    path: path.clone(),
                    reason: err.to_string(),
                })?,
            (None, true) => return Err(TlsError::NoRootCert(options.mode)),
            (None, false) => {}
        }
        builder.set_verify(if verify {
            SslVerifyMode::PEER
        } else {
            SslVerifyMode::NONE
        });
        let mut connector = MakeTlsConnector::new(builder.build());
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

/// Takes `sslmode` and `sslrootcert` out of a DSN (key=value or URL), returning the rest of the
/// DSN untouched and the two values found.
pub fn split_dsn(dsn: &str) -> (String, Option<String>, Option<PathBuf>) {
    let is_tls_key = |key: &str| matches!(key, "sslmode" | "sslrootcert");
    let mut mode = None;
    let mut root = None;
    let mut keep = |key: &str, value: String| match key {
        "sslmode" => mode = Some(value),
        _ => root = Some(PathBuf::from(value)),
    };
    if let Some((base, query)) = dsn.split_once('?').filter(|_| dsn.contains("://")) {
        let mut rest = Vec::new();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some((key, value)) if is_tls_key(key) => keep(key, percent_decode(value)),
                _ => rest.push(pair),
            }
        }
        let dsn = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        return (dsn, mode, root);
    }
    let mut rest = String::new();
    for (key, value, raw) in key_value_pairs(dsn) {
        if is_tls_key(&key) {
            keep(&key, value);
        } else {
            rest.push_str(raw);
            rest.push(' ');
        }
    }
    (rest.trim_end().to_owned(), mode, root)
}

/// The pairs of a libpq key=value string: key, unquoted value, and the original text.
fn key_value_pairs(dsn: &str) -> Vec<(String, String, &str)> {
    let bytes = dsn.as_bytes();
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = dsn[start..i].to_owned();
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'=') {
            i += 1;
        }
        let mut value = String::new();
        let quoted = i < bytes.len() && bytes[i] == b'\'';
        if quoted {
            i += 1;
        }
        while i < bytes.len() {
            let c = dsn[i..].chars().next().unwrap_or(' ');
            if (quoted && c == '\'') || (!quoted && c.is_ascii_whitespace()) {
                break;
            }
            if c == '\\' && i + 1 < bytes.len() {
                i += 1;
                let escaped = dsn[i..].chars().next().unwrap_or('\\');
                value.push(escaped);
                i += escaped.len_utf8();
                continue;
            }
            value.push(c);
            i += c.len_utf8();
        }
        if quoted && i < bytes.len() {
            i += 1;
        }
        if !key.is_empty() {
            pairs.push((key, value, &dsn[start..i]));
        }
    }
    pairs
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    fn key_value_dsn_loses_only_the_tls_keys() {
        let (rest, mode, root) = split_dsn(
            "host=h sslmode=verify-full password='a b\\'c' sslrootcert = /tmp/ca.pem dbname=d",
        );
        assert_eq!(rest, "host=h password='a b\\'c' dbname=d");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root, Some(PathBuf::from("/tmp/ca.pem")));
    }

    #[test]
    fn url_dsn_loses_only_the_tls_parameters() {
        let (rest, mode, root) = split_dsn(
            "postgres://u:p@h:5432/d?sslmode=verify-ca&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u:p@h:5432/d?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(
            split_dsn("postgres://h/d?sslmode=require").0,
            "postgres://h/d"
        );
    }

    #[test]
    fn dsn_without_tls_keys_is_unchanged() {
        assert_eq!(split_dsn("host=h port=5432").0, "host=h port=5432");
        assert_eq!(split_dsn("postgres://h/d").0, "postgres://h/d");
    }

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

    #[test]
    fn verification_without_a_root_certificate_is_refused() {
        let options = TlsOptions {
            mode: SslMode::VerifyFull,
            root_cert: None,
        };
        assert!(matches!(
            Connector::build(&options),
            Err(TlsError::NoRootCert(_))
        ));
    }
}
