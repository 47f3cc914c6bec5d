//! The throwaway server: a PostgreSQL cluster of this machine's own server binaries, created in
//! a temporary folder, listening on a free loopback port, and removed when the run ends.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};
use rand::RngExt;
use rand::distr::Alphanumeric;
use tempfile::TempDir;
use thiserror::Error;

use crate::pg::local::throwaway::{
    ReadyLogs, free_port, last_lines, loopback_target, spawn_as, wait_until_ready, write_private,
};
use crate::pg::local::watchdog::Watchdog;
use crate::pg::target::ConnectTarget;

/// initdb of a fresh cluster takes 1-3 s here; this bounds a machine that is badly overloaded.
const INITDB_DEADLINE: Duration = Duration::from_secs(120);
/// Time for the postmaster to accept connections after it is launched.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// Time for a fast shutdown before the server's processes are killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(
        "no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin; \
         install them (Debian/Ubuntu: apt-get install postgresql) or give your server with --dsn"
    )]
    NotFound,
    #[error("cannot prepare the throwaway server's folder: {0}")]
    Folder(std::io::Error),
    #[error(
        "pgstress runs as root and initdb refuses root, but there is no 'postgres' OS user to run \
         the throwaway server as; create one (useradd postgres) or give your server with --dsn"
    )]
    NoPostgresUser,
    #[error("cannot start the throwaway server's watchdog (/bin/sh): {0}")]
    Watchdog(std::io::Error),
    #[error("initdb failed: {0}")]
    Initdb(String),
    #[error("the throwaway server did not start: {0}")]
    Start(String),
}

/// Data folders and postmasters of the servers alive in this process, for the second Ctrl-C,
/// which exits at once and has no time for a fast shutdown.
static LIVE: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

/// A running throwaway cluster; dropping it stops the server and removes its folder.
pub struct ThrowawayServer {
    folder: Option<TempDir>,
    child: Child,
    postmaster: Postmaster,
    port: u16,
    password: String,
    bin_dir: PathBuf,
    /// Removes the server and folder if this process dies without doing it (SIGKILL).
    watchdog: Watchdog,
    /// What the start removed of servers left by pgstress processes that no longer run.
    leftovers: Vec<String>,
}

impl ThrowawayServer {
    /// `settings` are passed to the server as `-c KEY=VALUE`.
    pub fn start(settings: &[(String, String)]) -> Result<Self, ServerError> {
        Self::start_on(settings, None)
    }

    /// Starts the server with its postmaster, and so every backend, pinned to `cpus` (None:
    /// wherever this process may run).
    pub fn start_on(
        settings: &[(String, String)],
        cpus: Option<&[usize]>,
    ) -> Result<Self, ServerError> {
        let bin_dir = find_binaries().ok_or(ServerError::NotFound)?;
        let owner = server_owner()?;
        let leftovers = crate::pg::local::watchdog::remove_leftovers();
        let (folder, watchdog) = private_folder()?;
        let root = folder.path().to_owned();
        let password: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let password_file = root.join("pwfile");
        write_private(&password_file, &password).map_err(ServerError::Folder)?;
        if let Some(user) = &owner {
            for path in [&root, &password_file] {
                nix::unistd::chown(path, Some(user.uid), Some(user.gid))
                    .map_err(|err| ServerError::Folder(err.into()))?;
            }
        }

        let data = root.join("data");
        let initdb = initdb_command(&bin_dir, &data, &password_file);
        run_to_end(initdb, &owner, &root.join("initdb.log"), INITDB_DEADLINE)
            .map_err(ServerError::Initdb)?;
        let _ = fs::remove_file(&password_file);
        allow_loopback_sources(&data).map_err(ServerError::Folder)?;

        let port = free_port().map_err(ServerError::Folder)?;
        let mut args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-c".into(),
            format!("unix_socket_directories={}", root.display()),
            "-c".into(),
            "unix_socket_permissions=0700".into(),
        ];
        for (key, value) in settings {
            args.extend(["-c".to_owned(), format!("{key}={value}")]);
        }
        let postmaster = Postmaster {
            binary: bin_dir.join("postgres"),
            args,
            owner,
            log: root.join("server.log"),
            cpus: cpus.map(<[usize]>::to_vec),
        };
        let child = postmaster.launch()?;
        let mut server = ThrowawayServer {
            folder: Some(folder),
            child,
            postmaster,
            port,
            password,
            bin_dir,
            watchdog,
            leftovers,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Stops the server (fast shutdown) and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.restart_after(Duration::ZERO)
    }

    /// A restart that leaves the server down for `down` between its stop and its start: an
    /// outage longer than the server's own few hundred milliseconds.
    pub fn restart_after(&mut self, down: Duration) -> Result<(), ServerError> {
        self.stop_postmaster();
        std::thread::sleep(down);
        self.child = self.postmaster.launch()?;
        self.wait_until_ready()
    }

    /// Stops every process of the server (SIGSTOP) until `resume` says so or `down` passed,
    /// then lets them run again (SIGCONT): a server that hangs without closing a connection.
    pub fn freeze(&self, down: Duration, resume: &crossbeam_channel::Receiver<()>) {
        signal_family(self.child.id(), Signal::SIGSTOP);
        let _ = resume.recv_timeout(down);
        signal_family(self.child.id(), Signal::SIGCONT);
    }

    fn wait_until_ready(&mut self) -> Result<(), ServerError> {
        let log = self.postmaster.log.clone();
        let target = self.target();
        let logs = ReadyLogs {
            exit: &log,
            running: &log,
        };
        wait_until_ready(&mut self.child, &target, "postgres", READY_DEADLINE, logs)
            .map_err(ServerError::Start)
    }

    /// How to reach the server (the password is generated for this run only).
    pub fn target(&self) -> ConnectTarget {
        loopback_target(self.port, "postgres", &self.password, "postgres")
    }

    /// The connection string, password included: for tests and tools that need a DSN.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
            self.port, self.password
        )
    }

    /// The superuser's password, for a client that builds its own connection (the tests that
    /// check who else can get in).
    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn postmaster_pid(&self) -> u32 {
        self.child.id()
    }

    pub fn folder(&self) -> &Path {
        self.folder.as_ref().map_or(Path::new(""), |f| f.path())
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// One line per leftover server (of a pgstress process that no longer runs) removed by
    /// this server's start.
    pub fn removed_leftovers(&self) -> &[String] {
        &self.leftovers
    }

    /// Fast shutdown (SIGINT), then SIGKILL of the whole process group past the deadline;
    /// then the folder is removed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(folder) = self.folder.take() else {
            return;
        };
        self.stop_postmaster();
        let _ = folder.close();
        self.watchdog.dismiss();
    }

    fn stop_postmaster(&mut self) {
        let postmaster = self.child.id();
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // Already gone (stopped at once by a failover): its pid may be another's now.
            forget_live(postmaster);
            return;
        }
        // A stopped server (SIGSTOP) would never see the shutdown request.
        signal_family(postmaster, Signal::SIGCONT);
        let _ = signal::kill(Pid::from_raw(postmaster as i32), Signal::SIGINT);
        let deadline = Instant::now() + STOP_DEADLINE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_family(postmaster, Signal::SIGKILL);
        let _ = self.child.wait();
        forget_live(postmaster);
    }
}

/// How to launch the postmaster, kept for a restart.
struct Postmaster {
    binary: PathBuf,
    args: Vec<String>,
    owner: Option<User>,
    log: PathBuf,
    /// The CPUs the postmaster is pinned to; its backends inherit them.
    cpus: Option<Vec<usize>>,
}

impl Postmaster {
    fn launch(&self) -> Result<Child, ServerError> {
        let mut command = Command::new(&self.binary);
        command.args(&self.args);
        crate::pg::target::tls::restore_ca_bundle(&mut command);
        if let Some(cpus) = &self.cpus {
            pin_child(&mut command, cpus)?;
        }
        let child = spawn_as(command, &self.owner, &self.log)
            .map_err(|err| ServerError::Start(err.to_string()))?;
        let folder = self.log.parent().map(Path::to_path_buf).unwrap_or_default();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((child.id(), folder));
        Ok(child)
    }
}

impl Drop for ThrowawayServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Has the child pin itself to `cpus` between fork and exec, so the postmaster is never
/// seen running elsewhere and every backend it forks inherits the set.
/// A cluster's folder, 0700 from the first moment (its socket and password file live there,
/// and no other local user may reach either), with the watchdog that removes it whatever
/// becomes of pgstress.
pub(super) fn private_folder() -> Result<(TempDir, Watchdog), ServerError> {
    let folder = tempfile::Builder::new()
        .prefix("pgstress-")
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(ServerError::Folder)?;
    let watchdog = Watchdog::start(folder.path()).map_err(ServerError::Watchdog)?;
    Ok((folder, watchdog))
}

fn pin_child(command: &mut Command, cpus: &[usize]) -> Result<(), ServerError> {
    use std::os::unix::process::CommandExt;
    let set = crate::sys::affinity::cpu_set(cpus).map_err(|err| {
        ServerError::Start(format!("cannot pin the server to CPUs {cpus:?}: {err}"))
    })?;
    // SAFETY: sched_setaffinity is a plain system call, safe between fork and exec; the set
    // was built before the fork, so nothing is allocated in the child.
    unsafe {
        command.pre_exec(move || {
            nix::sched::sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
        });
    }
    Ok(())
}

fn forget_live(pid: u32) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(live, _)| *live != pid);
}

/// Kills every throwaway server of this process at once and removes its folder: the second
/// Ctrl-C's cleanup, when there is no time for a fast shutdown.
pub fn kill_all_now() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (pid, folder) in live {
        signal_family(pid, Signal::SIGKILL);
        let _ = fs::remove_dir_all(folder);
    }
}

/// Signals the postmaster and each of its children. Every backend runs in a session of its
/// own (postgres calls setsid), so a process-group signal would miss them.
fn signal_family(postmaster: u32, signal: Signal) {
    let mut family = crate::sys::procfs::children(postmaster);
    family.push(postmaster);
    for pid in family {
        let _ = signal::kill(Pid::from_raw(pid as i32), signal);
    }
}

/// The OS user the server runs as: `postgres` when we are root (initdb refuses root), else us.
pub(crate) fn server_owner() -> Result<Option<User>, ServerError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(ServerError::NoPostgresUser),
    }
}

/// initdb lets TCP clients in from 127.0.0.1 only: a run that spreads its connections over
/// other loopback addresses (`--source-address 127.0.0.2,...`) logs in from them too, with
/// the same password. The server still listens on 127.0.0.1 alone.
fn allow_loopback_sources(data: &Path) -> std::io::Result<()> {
    let hba = data.join("pg_hba.conf");
    let rules = fs::read_to_string(&hba)?;
    fs::write(
        &hba,
        format!("host all all 127.0.0.0/8 scram-sha-256\n{rules}"),
    )
}

/// initdb of a cluster whose superuser `postgres` has the password in `password_file`.
fn initdb_command(bin_dir: &Path, data: &Path, password_file: &Path) -> Command {
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(data)
        .arg("--pwfile")
        .arg(password_file)
        .args([
            "-U",
            "postgres",
            // A password over the socket too: trust (or peer) would let any local user, or any
            // process of the postgres OS user, in as superuser, and from there run commands
            // (COPY ... TO PROGRAM) as that OS user.
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]);
    initdb
}

/// A folder holding initdb and postgres: PATH first, else the newest /usr/lib/postgresql/*/bin.
pub fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Runs a setup command to its end within a deadline; the error holds the end of its output.
fn run_to_end(
    command: Command,
    owner: &Option<User>,
    log: &Path,
    deadline: Duration,
) -> Result<(), String> {
    let mut child = spawn_as(command, owner, log).map_err(|err| err.to_string())?;
    let give_up = Instant::now() + deadline;
    loop {
        match child.try_wait().map_err(|err| err.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("{status}: {}", last_lines(log))),
            None if Instant::now() >= give_up => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no result within {deadline:?}: {}",
                    last_lines(log)
                ));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[path = "standby.rs"]
mod standby;
