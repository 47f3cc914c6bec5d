//! What the processes pgstress starts for a run (the server, the pooler) share: a private
//! file, a listener port, a start as the right OS user, the wait until they answer, the
//! loopback target that reaches them, and their log's last words for an error.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::User;

use crate::pg::target::ConnectTarget;
use crate::pg::target::tls::{SslMode, TlsOptions};

/// Writes a file only its owner may read, created so: never readable by others, not even
/// for a moment.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

pub(crate) fn free_port() -> std::io::Result<u16> {
    crate::sys::ports::free_listener_port(std::net::IpAddr::from([127, 0, 0, 1]))
}

pub(crate) fn spawn_as(
    mut command: Command,
    owner: &Option<User>,
    log: &Path,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log_file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    if let Some(user) = owner {
        nix::unistd::chown(log, Some(user.uid), Some(user.gid))?;
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    if let Some(parent) = log.parent() {
        command.current_dir(parent);
    }
    // Its own process group: a Ctrl-C in the terminal reaches pgstress, which then stops the
    // server in order, instead of the server dying under the step in flight.
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
}

/// A throwaway process's logs: what it wrote when it exited, and while it ran.
pub(crate) struct ReadyLogs<'a> {
    pub exit: &'a Path,
    pub running: &'a Path,
}

/// Waits until a throwaway process (the server, the pooler) just started accepts a
/// connection, within `deadline`; why not, with the last lines of its log, if it does not.
pub(crate) fn wait_until_ready(
    child: &mut Child,
    target: &ConnectTarget,
    program: &str,
    deadline: Duration,
    logs: ReadyLogs<'_>,
) -> Result<(), String> {
    let give_up = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{program} exited ({status}): {}",
                last_lines(logs.exit)
            ));
        }
        match target.connect(Duration::from_secs(2), "pgstress-setup") {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= give_up => {
                return Err(format!(
                    "no connection within {deadline:?}: {err}; {}",
                    last_lines(logs.running)
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A throwaway process on loopback: plain TCP (no TLS negotiation per request), SCRAM with the
/// password generated for this run only.
pub(crate) fn loopback_target(
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> ConnectTarget {
    let mut config = postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname);
    let tls = TlsOptions {
        mode: SslMode::Disable,
        ..TlsOptions::default()
    };
    ConnectTarget::from_config(config, tls).expect("a plain-TCP target needs no certificate")
}

/// The last lines of a log, joined on one line for an error message.
pub(crate) fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}
