//! libpq's connection keywords and their environment variables, and the two shapes of a
//! connection string (key=value and postgres:// URL) parsed into keyword/value pairs. Errors
//! never repeat a value: a malformed string may hold a password anywhere.

use super::LibpqError;

/// The keywords pgstress honours, each with the variable libpq reads when the keyword is
/// missing.
pub const SUPPORTED: [(&str, Option<&str>); 21] = [
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("dbname", Some("PGDATABASE")),
    ("service", Some("PGSERVICE")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
];

/// libpq's keywords pgstress cannot honour, with their variables: refused in a string, and a
/// variable set in the environment is named in a warning rather than ignored in silence.
pub const UNSUPPORTED: [(&str, Option<&str>); 23] = [
    ("require_auth", Some("PGREQUIREAUTH")),
    ("sslpassword", None),
    ("sslcertmode", None),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
    ("replication", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("min_protocol_version", Some("PGMINPROTOCOLVERSION")),
    ("max_protocol_version", Some("PGMAXPROTOCOLVERSION")),
    ("requiressl", Some("PGREQUIRESSL")),
];

/// The keyword, checked: supported ones pass; the others get an error that names them.
pub fn check_keyword(key: &str, place: &str) -> Result<&'static str, LibpqError> {
    if let Some((known, _)) = SUPPORTED.iter().find(|(k, _)| *k == key) {
        return Ok(known);
    }
    let reason = if UNSUPPORTED.iter().any(|(k, _)| *k == key) {
        "libpq knows it, but pgstress does not support it"
    } else {
        "not a libpq connection keyword"
    };
    Err(LibpqError::Keyword {
        keyword: key.to_owned(),
        place: place.to_owned(),
        reason,
    })
}

/// A connection string of either shape.
pub fn parse(dsn: &str, place: &str) -> Result<Vec<(&'static str, String)>, LibpqError> {
    let pairs = match url_body(dsn) {
        Some(body) => parse_url(body)?,
        None => parse_key_values(dsn)?,
    };
    pairs
        .into_iter()
        .map(|(key, value)| Ok((check_keyword(&key, place)?, value)))
        .collect()
}

fn url_body(dsn: &str) -> Option<&str> {
    let dsn = dsn.trim();
    dsn.strip_prefix("postgresql://")
        .or_else(|| dsn.strip_prefix("postgres://"))
}

fn bad(reason: &str) -> LibpqError {
    LibpqError::Syntax(reason.to_owned())
}

/// libpq's key=value string: spaces around `=` allowed, values quoted with `'`, `\` escaping.
pub fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, LibpqError> {
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad("a keyword without \"=\" after it"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                c if !quoted && c.is_whitespace() => break,
                c => value.push(c),
            }
        }
        if !closed {
            return Err(bad("a quoted value without its closing quote"));
        }
        pairs.push((key, value));
    }
}

/// `postgres://[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`. The user
/// part ends at the last `@`, so a password with an unencoded `@` stays a password.
fn parse_url(body: &str) -> Result<Vec<(String, String)>, LibpqError> {
    let mut pairs = Vec::new();
    let rest = match body.rfind('@') {
        Some(at) => {
            let (user, password) = match body[..at].split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (&body[..at], None),
            };
            if !user.is_empty() {
                pairs.push(("user".to_owned(), decode(user, "user name")?));
            }
            if let Some(password) = password {
                pairs.push(("password".to_owned(), decode(password, "password")?));
            }
            &body[at + 1..]
        }
        None => body,
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, dbname) = rest.split_once('/').unwrap_or((rest, ""));
    pairs.extend(url_hosts(hosts)?);
    if !dbname.is_empty() {
        pairs.push(("dbname".to_owned(), decode(dbname, "database name")?));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| bad("a URL parameter without \"=\""))?;
        let key = decode(key, "parameter name")?;
        let value = decode(value, "parameter value")?;
        // libpq's own alias, kept for JDBC-style URLs.
        match (key.as_str(), value.as_str()) {
            ("ssl", "true") => pairs.push(("sslmode".to_owned(), "require".to_owned())),
            _ => pairs.push((key, value)),
        }
    }
    Ok(pairs)
}

/// `host[:port],host[:port]`, IPv6 addresses in brackets, into `host` and `port` lists.
fn url_hosts(list: &str) -> Result<Vec<(String, String)>, LibpqError> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for item in list.split(',') {
        let (host, port) = match item.strip_prefix('[') {
            Some(inner) => {
                let (host, after) = inner
                    .split_once(']')
                    .ok_or_else(|| bad("an IPv6 host without its closing \"]\""))?;
                (host, after.strip_prefix(':').unwrap_or(after))
            }
            None => item.split_once(':').unwrap_or((item, "")),
        };
        hosts.push(decode(host, "host")?);
        ports.push(decode(port, "port")?);
    }
    let mut pairs = vec![("host".to_owned(), hosts.join(","))];
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_owned(), ports.join(",")));
    }
    Ok(pairs)
}

/// Percent-decoding; the error names the part of the URL, never its text.
fn decode(text: &str, part: &str) -> Result<String, LibpqError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad(&format!("a bad %-escape in the URL's {part}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad(&format!("the URL's {part} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(pairs: &'a [(&str, String)], key: &str) -> Option<&'a str> {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn key_values_with_quotes_and_escapes() {
        let pairs = parse(r"host = h  password='a b\'c' dbname=d\ x", "the DSN").unwrap();
        assert_eq!(get(&pairs, "host"), Some("h"));
        assert_eq!(get(&pairs, "password"), Some("a b'c"));
        assert_eq!(get(&pairs, "dbname"), Some("d x"));
    }

    #[test]
    fn url_with_an_unencoded_at_keeps_the_password_whole() {
        let pairs = parse("postgres://u:p@ss@db.example.com:5433/app", "the DSN").unwrap();
        assert_eq!(get(&pairs, "user"), Some("u"));
        assert_eq!(get(&pairs, "password"), Some("p@ss"));
        assert_eq!(get(&pairs, "host"), Some("db.example.com"));
        assert_eq!(get(&pairs, "port"), Some("5433"));
        assert_eq!(get(&pairs, "dbname"), Some("app"));
    }

    #[test]
    fn url_hosts_ports_and_parameters() {
        let pairs = parse(
            "postgresql://[::1]:5,h2/d?sslmode=verify-full&application_name=a%20b",
            "x",
        )
        .unwrap();
        assert_eq!(get(&pairs, "host"), Some("::1,h2"));
        assert_eq!(get(&pairs, "port"), Some("5,"));
        assert_eq!(get(&pairs, "application_name"), Some("a b"));
    }

    #[test]
    fn unsupported_and_unknown_keywords_are_named() {
        let err = parse("host=h sslcrl=/x", "the DSN")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslcrl") && err.contains("does not support"),
            "{err}"
        );
        let err = parse("postgres://h/d?bogus=1", "the DSN")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bogus") && err.contains("not a libpq"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_never_repeat_the_text() {
        for dsn in [
            "host=h password='s3cret",
            "host=h s3cret",
            "postgres://u:s3cr%zzet@h/d",
            "postgres://u:s3cret@[::1/d",
        ] {
            let err = parse(dsn, "the DSN").unwrap_err().to_string();
            assert!(!err.contains("s3cr"), "{err}");
        }
    }
}
