//! The target as libpq resolves it: each keyword from the connection string, else the service
//! file, else its `PG*` variable, else libpq's default; the password, when none is given, from
//! the password file. Pure functions of their inputs (the environment is a map), so that they
//! are tested with temporary files.

pub mod params;
pub mod pgpass;
pub mod service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LibpqError {
    #[error("connection keyword \"{keyword}\" in {place}: {reason}")]
    Keyword {
        keyword: String,
        place: String,
        reason: &'static str,
    },
    // The text is never repeated: it may hold a password.
    #[error("invalid connection string: {0}; give a key=value string or a postgres:// URL")]
    Syntax(String),
    #[error("definition of service \"{name}\" not found (searched {searched})")]
    NoService { name: String, searched: String },
}

/// The variables that are not keywords but say where the service files are.
const FILE_VARS: [&str; 2] = ["PGSERVICEFILE", "PGSYSCONFDIR"];

/// What the resolution depends on: the connection string, the environment, the home folder.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The connection string and where it came from (`--dsn`, `DATABASE_URL`, ...).
    pub dsn: Option<(String, String)>,
    pub env: BTreeMap<String, String>,
    pub home: Option<PathBuf>,
    /// libpq's default user: the OS user's name.
    pub os_user: String,
    /// libpq's default host: the Unix socket folder.
    pub socket_dir: String,
}

impl Inputs {
    /// This process's environment (the libpq variables only, empty ones left out).
    pub fn from_process(dsn: Option<(String, String)>) -> Self {
        let names = params::SUPPORTED
            .iter()
            .chain(params::UNSUPPORTED.iter())
            .filter_map(|(_, var)| *var)
            .chain(FILE_VARS);
        let env = names
            .filter_map(|name| {
                let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
                Some((name.to_owned(), value))
            })
            .collect();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| user.as_ref().map(|u| u.dir.clone()));
        let socket_dir = ["/var/run/postgresql", "/tmp"]
            .into_iter()
            .find(|dir| Path::new(dir).is_dir())
            .unwrap_or("/tmp");
        Inputs {
            dsn,
            env,
            home,
            os_user: user.map_or_else(|| "postgres".to_owned(), |u| u.name),
            socket_dir: socket_dir.to_owned(),
        }
    }

    /// Whether a target is named in any form: a connection string or any libpq connection
    /// variable. Without one, pgstress starts its throwaway server.
    pub fn names_a_target(&self) -> bool {
        self.dsn.is_some()
            || params::SUPPORTED
                .iter()
                .filter_map(|(_, var)| *var)
                .any(|var| self.env.contains_key(var))
    }

    /// A path as shown to the user: under the home folder, with `~`.
    fn show(&self, path: &Path) -> String {
        match self
            .home
            .as_ref()
            .and_then(|home| path.strip_prefix(home).ok())
        {
            Some(rest) => format!("~/{}", rest.display()),
            None => path.display().to_string(),
        }
    }
}

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Given,
    Service,
    Env(&'static str),
    PassFile,
    Default,
}

/// The resolved keywords, where they came from, and what the user should be told.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    values: BTreeMap<&'static str, (String, Source)>,
    /// "from PGSERVICE=lab in ~/.pg_service.conf, PGPORT; password from ~/.pgpass".
    pub origin: String,
    pub warnings: Vec<String>,
}

impl Resolved {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(value, _)| value.as_str())
    }

    fn fill(&mut self, key: &'static str, value: String, source: Source) {
        self.values.entry(key).or_insert((value, source));
    }

    fn keys_from(&self, wanted: &Source) -> Vec<&'static str> {
        let from = self
            .values
            .iter()
            .filter(|(_, (_, source))| source == wanted);
        from.map(|(key, _)| *key).collect()
    }
}

/// Resolves the target as libpq would.
pub fn resolve(inputs: &Inputs) -> Result<Resolved, LibpqError> {
    let mut resolved = Resolved::default();
    let mut origin = Vec::new();
    if let Some((text, label)) = &inputs.dsn {
        for (key, value) in params::parse(text, label)? {
            // Within one string the last occurrence wins, as in libpq.
            resolved.values.insert(key, (value, Source::Given));
        }
        origin.push(label.clone());
    }
    origin.extend(apply_service(&mut resolved, inputs)?);
    apply_env(&mut resolved, inputs, &mut origin);
    apply_defaults(&mut resolved, inputs);
    check_lists(&resolved, inputs)?;
    let mut text = format!("from {}", origin.join(", "));
    if origin.is_empty() {
        text = "from libpq's defaults".to_owned();
    }
    if let Some(file) = apply_passfile(&mut resolved, inputs) {
        text.push_str(&format!("; password from {file}"));
    }
    let defaults = resolved.keys_from(&Source::Default);
    if !defaults.is_empty() && !origin.is_empty() {
        text.push_str(&format!("; libpq's defaults for {}", defaults.join(", ")));
    }
    resolved.origin = text;
    Ok(resolved)
}

/// Addresses no connection can ever use, refused before any attempt: port 0, or lists that
/// do not pair (libpq fails these only when it connects).
fn check_lists(resolved: &Resolved, inputs: &Inputs) -> Result<(), LibpqError> {
    let count = |key| resolved.get(key).map_or(0, |list| list.split(',').count());
    let (hosts, addrs) = (count("host"), count("hostaddr"));
    let ports = resolved.get("port").unwrap_or_default().split(',');
    let (keyword, reason) = if ports
        .clone()
        .any(|port| port.trim().parse::<u64>() == Ok(0))
    {
        (
            "port",
            "port 0 is no server's port: give the port it listens on (5432 by default)",
        )
    } else if count("port") > 1 && count("port") != hosts.max(addrs) {
        (
            "port",
            "a list of ports needs one port per host (or a single port for all)",
        )
    } else if (hosts > 0 && addrs > 0 && hosts != addrs) || (hosts == 0 && addrs > 1) {
        // libpq counts a missing host as one: several hostaddr need as many hosts.
        ("hostaddr", "a list of hostaddr needs one address per host")
    } else {
        return Ok(());
    };
    let place = match resolved.values.get(keyword).map(|(_, source)| source) {
        Some(Source::Env(var)) => (*var).to_owned(),
        Some(Source::Given) => inputs
            .dsn
            .as_ref()
            .map_or("the DSN", |(_, label)| label)
            .to_owned(),
        _ => "the service file".to_owned(),
    };
    Err(LibpqError::Keyword {
        keyword: keyword.to_owned(),
        place,
        reason,
    })
}

/// The service's settings for the keywords still missing; the text for the origin.
fn apply_service(resolved: &mut Resolved, inputs: &Inputs) -> Result<Option<String>, LibpqError> {
    let (name, named_by) = match (resolved.get("service"), inputs.env.get("PGSERVICE")) {
        (Some(name), _) => (name.to_owned(), "service"),
        (None, Some(name)) => (name.clone(), "PGSERVICE"),
        (None, None) => return Ok(None),
    };
    let files = service::candidates(
        inputs.env.get("PGSERVICEFILE").map(String::as_str),
        inputs.env.get("PGSYSCONFDIR").map(String::as_str),
        inputs.home.as_deref(),
    );
    let found = service::find(&name, &files)?;
    for (key, value) in found.settings {
        resolved.fill(key, value, Source::Service);
    }
    resolved.fill("service", name.clone(), Source::Service);
    Ok(Some(format!(
        "{named_by}={name} in {}",
        inputs.show(&found.file)
    )))
}

/// The `PG*` variables for the keywords still missing; unsupported ones are warned about.
fn apply_env(resolved: &mut Resolved, inputs: &Inputs, origin: &mut Vec<String>) {
    for (key, var) in params::SUPPORTED {
        let Some(var) = var else { continue };
        if var == "PGSERVICE" {
            continue;
        }
        if let Some(value) = inputs.env.get(var)
            && resolved.get(key).is_none()
        {
            resolved.fill(key, value.clone(), Source::Env(var));
            origin.push(var.to_owned());
        }
    }
    for (key, var) in params::UNSUPPORTED {
        if let Some(var) = var.filter(|var| inputs.env.contains_key(*var)) {
            resolved.warnings.push(format!(
                "{var} is ignored: pgstress does not support libpq's {key}"
            ));
        }
    }
}

/// libpq's defaults: the socket folder, the OS user, a database named after the user, and the
/// certificates under `~/.postgresql` when they exist.
fn apply_defaults(resolved: &mut Resolved, inputs: &Inputs) {
    if resolved.get("host").is_none() && resolved.get("hostaddr").is_none() {
        resolved.fill("host", inputs.socket_dir.clone(), Source::Default);
    }
    resolved.fill("user", inputs.os_user.clone(), Source::Default);
    let user = resolved.get("user").unwrap_or_default().to_owned();
    resolved.fill("dbname", user, Source::Default);
    let Some(dir) = inputs.home.as_ref().map(|home| home.join(".postgresql")) else {
        return;
    };
    for (key, file) in [
        ("sslrootcert", "root.crt"),
        ("sslcert", "postgresql.crt"),
        ("sslkey", "postgresql.key"),
    ] {
        let path = dir.join(file);
        if resolved.get(key).is_none() && path.is_file() {
            resolved.fill(key, path.display().to_string(), Source::Default);
        }
    }
}

/// The password from the password file when none was given; the file as shown, if used.
fn apply_passfile(resolved: &mut Resolved, inputs: &Inputs) -> Option<String> {
    if resolved.get("password").is_some() {
        return None;
    }
    let path = match resolved.get("passfile") {
        Some(file) => PathBuf::from(file),
        None => inputs.home.as_ref()?.join(".pgpass"),
    };
    let shown = inputs.show(&path);
    let first = |key: &str| {
        let list = resolved.get(key).unwrap_or_default();
        list.split(',').next().unwrap_or_default().to_owned()
    };
    let mut host = first("host");
    if host.is_empty() {
        host = first("hostaddr");
    }
    if host.is_empty() || host.starts_with('/') {
        host = "localhost".to_owned();
    }
    let port = Some(first("port")).filter(|p| !p.is_empty());
    let (dbname, user) = (first("dbname"), first("user"));
    let want = pgpass::Lookup {
        host: &host,
        port: port.as_deref().unwrap_or("5432"),
        dbname: &dbname,
        user: &user,
    };
    let found = pgpass::lookup(&path, &shown, &want);
    resolved.warnings.extend(found.warning);
    let password = found.password?;
    resolved.fill("password", password, Source::PassFile);
    Some(shown)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
