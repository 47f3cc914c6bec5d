//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it:
//! `host:port:database:user:password` lines, `*` matching anything, `\` escaping `:` and `\`,
//! and a file that others may read ignored with a warning.

use std::path::Path;

/// What to look a password up for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup<'a> {
    pub host: &'a str,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The outcome of reading the file: a password, or nothing (with a warning when the file was
/// there but could not be used).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub password: Option<String>,
    pub warning: Option<String>,
}

/// Looks the password up in `path`. A missing file is no error, as in libpq.
pub fn lookup(path: &Path, shown: &str, want: &Lookup) -> Found {
    let Ok(meta) = std::fs::metadata(path) else {
        return Found::default();
    };
    if !meta.is_file() {
        return Found {
            password: None,
            warning: Some(format!("password file {shown} is not a plain file")),
        };
    }
    if let Some(warning) = permission_warning(&meta, shown) {
        return Found {
            password: None,
            warning: Some(warning),
        };
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Found {
            password: find(&text, want),
            warning: None,
        },
        Err(err) => Found {
            password: None,
            warning: Some(format!("cannot read password file {shown}: {err}")),
        },
    }
}

/// libpq's check: any group or world permission and the file is not used.
fn permission_warning(meta: &std::fs::Metadata, shown: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "password file {shown} has group or world access ({:04o}); it is ignored: \
             permissions should be u=rw (0600) or less",
            mode & 0o777
        )
    })
}

/// The password of the first line that matches.
pub fn find(text: &str, want: &Lookup) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields = split_fields(line.trim_end_matches('\r'))?;
            let wanted = [want.host, want.port, want.dbname, want.user];
            fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field.as_deref() == Some(value) || field.is_none())
                .then(|| fields[4].clone().unwrap_or_else(|| "*".to_owned()))
        })
        .next()
}

/// Five fields, each `None` for a bare `*`; a line with fewer fields is skipped.
fn split_fields(line: &str) -> Option<[Option<String>; 5]> {
    let mut fields: Vec<(String, bool)> = vec![(String::new(), false)];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == ':' && fields.len() < 5 {
            fields.push((String::new(), false));
            continue;
        }
        let (field, escaped) = fields.last_mut()?;
        if c == '\\' {
            field.extend(chars.next());
            *escaped = true;
        } else {
            field.push(c);
        }
    }
    if fields.len() < 5 {
        return None;
    }
    let mut out: [Option<String>; 5] = Default::default();
    for (slot, (text, escaped)) in out.iter_mut().zip(fields) {
        *slot = (escaped || text != "*").then_some(text);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const WANT: Lookup = Lookup {
        host: "db",
        port: "5432",
        dbname: "app",
        user: "bob",
    };

    #[test]
    fn first_matching_line_wins_with_wildcards() {
        let text = "# comment\nother:5432:app:bob:no\ndb:*:app:bob:yes\n*:*:*:*:late\n";
        assert_eq!(find(text, &WANT).as_deref(), Some("yes"));
        assert_eq!(
            find("*:*:*:*:any", &Lookup { host: "x", ..WANT }).as_deref(),
            Some("any")
        );
        assert_eq!(find("db:5432:app:alice:x", &WANT), None);
    }

    #[test]
    fn backslash_escapes_colon_and_backslash() {
        let text = r"db:5432:app:bob:pa\:ss\\word:tail";
        assert_eq!(find(text, &WANT).as_deref(), Some(r"pa:ss\word:tail"));
        // An escaped star is a literal star, not a wildcard.
        assert_eq!(find(r"\*:5432:app:bob:x", &WANT), None);
        assert_eq!(find("db:5432:app", &WANT), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let found = lookup(&path, "~/.pgpass", &WANT);
        assert_eq!(found.password, None);
        assert!(found.warning.unwrap().contains("0600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let found = lookup(&path, "~/.pgpass", &WANT);
        assert_eq!(found.password.as_deref(), Some("secret"));
        assert_eq!(
            lookup(&dir.path().join("none"), "x", &WANT),
            Found::default()
        );
    }
}
