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
    command: Command,
    owner: &Option<User>,
    log: &Path,
) -> std::io::Result<Child> {
    spawn_with_files(command, owner, log, None)
}

/// The same, the child given `open_files` as its open-file limit (soft and hard) from its
/// first instruction on. The limit is set before the child leaves root for `owner`, since
/// only root may raise a hard limit.
pub(crate) fn spawn_with_files(
    mut command: Command,
    owner: &Option<User>,
    log: &Path,
    open_files: Option<u64>,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log_file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    if let Some(user) = owner {
        nix::unistd::chown(log, Some(user.uid), Some(user.gid))?;
    }
    let ids = owner.as_ref().map(|user| (user.uid, user.gid));
    match (open_files, ids) {
        (Some(files), ids) => {
            use nix::sys::resource::{Resource, getrlimit, setrlimit};
            let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
            // SAFETY: between fork and exec only async-signal-safe system calls run here
            // (setrlimit, setgroups, setgid, setuid), on values computed before the fork.
            unsafe {
                command.pre_exec(move || {
                    setrlimit(Resource::RLIMIT_NOFILE, files, files.max(hard))?;
                    if let Some((uid, gid)) = ids {
                        nix::unistd::setgroups(&[])?;
                        nix::unistd::setgid(gid)?;
                        nix::unistd::setuid(uid)?;
                    }
                    Ok(())
                });
            }
        }
        (None, Some((uid, gid))) => {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        (None, None) => {}
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
    config.host("127.0.0.1");
    without_tls(config, port, (user, password, dbname))
}

/// The same process on its unix socket in `dir` (one process of several that share a TCP
/// port, reached on its own).
pub(crate) fn socket_target(
    dir: &Path,
    port: u16,
    user: &str,
    password: &str,
    dbname: &str,
) -> ConnectTarget {
    let mut config = postgres::Config::new();
    config.host_path(dir);
    without_tls(config, port, (user, password, dbname))
}

/// The target of a throwaway process reached at `config`'s host without TLS: a loopback or
/// unix socket connection needs no certificate.
fn without_tls(
    mut config: postgres::Config,
    port: u16,
    (user, password, dbname): (&str, &str, &str),
) -> ConnectTarget {
    config
        .port(port)
        .user(user)
        .password(password)
        .dbname(dbname);
    let tls = TlsOptions {
        mode: SslMode::Disable,
        ..TlsOptions::default()
    };
    ConnectTarget::from_config(config, tls).expect("a target without TLS needs no certificate")
}

/// The last lines of a log, joined on one line for an error message.
pub(crate) fn last_lines(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_starts_with_the_open_file_limit_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out");
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "ulimit -Sn; ulimit -Hn"]);
        let mut child = spawn_with_files(command, &None, &log, Some(500)).unwrap();
        assert!(child.wait().unwrap().success());
        // The soft limit as given; the hard one left where it was, or raised to it.
        let (_, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        let expected = format!("500\n{}\n", hard.max(500));
        assert_eq!(fs::read_to_string(&log).unwrap(), expected);
    }

    #[test]
    fn as_root_the_child_takes_its_limit_then_becomes_its_owner() {
        let Some(postgres) = User::from_name("postgres").ok().flatten() else {
            return;
        };
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("out");
        let mut command = Command::new("/bin/sh");
        command.args(["-c", "id -u; id -g; id -G; ulimit -Sn"]);
        let owner = Some(postgres.clone());
        let mut child = spawn_with_files(command, &owner, &log, Some(600)).unwrap();
        assert!(child.wait().unwrap().success());
        let (uid, gid) = (postgres.uid, postgres.gid);
        // No supplementary group of root's is kept.
        let expected = format!("{uid}\n{gid}\n{gid}\n600\n");
        assert_eq!(fs::read_to_string(&log).unwrap(), expected);
    }
}
