//! The connection service file: `[name]` groups of `keyword=value` lines, looked up in
//! `PGSERVICEFILE` (else `~/.pg_service.conf`), then in `PGSYSCONFDIR/pg_service.conf`.

use std::path::{Path, PathBuf};

use super::LibpqError;
use super::params::check_keyword;

/// libpq's system-wide folder on Debian and Ubuntu, when `PGSYSCONFDIR` is not set.
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// A service found: its settings and the file (as shown) that held them.
#[derive(Debug, PartialEq, Eq)]
pub struct Service {
    pub settings: Vec<(&'static str, String)>,
    pub file: PathBuf,
}

/// The files to search, in order: the user's, then the system's.
pub fn candidates(
    service_file: Option<&str>,
    sysconfdir: Option<&str>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match service_file {
        Some(file) => files.push(PathBuf::from(file)),
        None => files.extend(home.map(|home| home.join(".pg_service.conf"))),
    }
    files.push(Path::new(sysconfdir.unwrap_or(DEFAULT_SYSCONFDIR)).join("pg_service.conf"));
    files
}

/// The service `name` from the first file that defines it.
pub fn find(name: &str, files: &[PathBuf]) -> Result<Service, LibpqError> {
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        if let Some(settings) = parse_group(&text, name, file)? {
            return Ok(Service {
                settings,
                file: file.clone(),
            });
        }
    }
    Err(LibpqError::NoService {
        name: name.to_owned(),
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The settings of group `name` in one file's text, if the file has that group.
fn parse_group(
    text: &str,
    name: &str,
    file: &Path,
) -> Result<Option<Vec<(&'static str, String)>>, LibpqError> {
    let mut settings = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if settings.is_some() {
                break;
            }
            if group == name {
                settings = Some(Vec::new());
            }
            continue;
        }
        let Some(found) = settings.as_mut() else {
            continue;
        };
        let place = format!("service file {} line {}", file.display(), number + 1);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| LibpqError::Syntax(format!("no \"=\" in {place}")))?;
        let key = check_keyword(key.trim(), &place)?;
        if key == "service" {
            return Err(LibpqError::Syntax(format!("nested service in {place}")));
        }
        found.push((key, value.trim().to_owned()));
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_group_from_the_first_file_that_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.conf");
        let system = dir.path().join("pg_service.conf");
        std::fs::write(&user, "# mine\n[other]\nport=1\n").unwrap();
        std::fs::write(&system, "[lab]\nhost = db\nport=5433\n\n[next]\nport=9\n").unwrap();
        let files = candidates(
            Some(user.to_str().unwrap()),
            Some(dir.path().to_str().unwrap()),
            None,
        );
        let service = find("lab", &files).unwrap();
        assert_eq!(
            service.settings,
            vec![("host", "db".to_owned()), ("port", "5433".to_owned())]
        );
        assert_eq!(service.file, system);
        let err = find("gone", &files).unwrap_err().to_string();
        assert!(
            err.contains("\"gone\"") && err.contains("user.conf"),
            "{err}"
        );
    }

    #[test]
    fn home_file_when_no_pgservicefile_and_keywords_checked() {
        let dir = tempfile::tempdir().unwrap();
        let files = candidates(None, Some("/nonexistent"), Some(dir.path()));
        assert_eq!(files[0], dir.path().join(".pg_service.conf"));
        std::fs::write(&files[0], "[lab]\nsslcrl=/x\n").unwrap();
        let err = find("lab", &files).unwrap_err().to_string();
        assert!(err.contains("sslcrl") && err.contains("line 2"), "{err}");
    }
}
