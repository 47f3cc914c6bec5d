//! The throwaway pooler: the machine's own PgBouncer, started for one run in front of the
//! target (the throwaway server or the user's), locked down like the throwaway server (SCRAM
//! with a password made for this run, a 0700 folder, loopback only, a port below 32768), and
//! removed when the run ends, however it ends (the server's watchdog guards it too).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};
use rand::RngExt;
use rand::distr::Alphanumeric;
use tempfile::TempDir;
use thiserror::Error;

use crate::pg::local::server::server_owner;
use crate::pg::local::throwaway::{
    ReadyLogs, free_port, loopback_target, spawn_as, wait_until_ready, write_private,
};
use crate::pg::local::watchdog::Watchdog;
use crate::pg::target::{ConnectTarget, Credentials};

/// Time for PgBouncer to accept connections after it is launched.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Time for an immediate shutdown (SIGTERM) before PgBouncer is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// Time for `pgbouncer --version` to answer.
const VERSION_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PoolerError {
    #[error(
        "no pgbouncer binary on PATH or in /usr/sbin; install it (Debian/Ubuntu: apt-get install \
         pgbouncer) or drop --pooler"
    )]
    NotFound,
    #[error("cannot prepare the throwaway pooler's folder: {0}")]
    Folder(std::io::Error),
    #[error("{0}")]
    Owner(String),
    #[error(
        "the target's {0} holds a quote or a backslash, which a PgBouncer connection string cannot carry"
    )]
    Unquotable(&'static str),
    #[error("the throwaway pooler did not start: {0}")]
    Start(String),
}

/// A running throwaway PgBouncer; dropping it stops it and removes its folder.
pub struct ThrowawayPooler {
    folder: Option<TempDir>,
    child: Child,
    port: u16,
    user: String,
    dbname: String,
    password: String,
    /// The password of `STATS_USER`, who may read the console's SHOW commands and nothing else.
    stats_password: String,
    description: String,
    watchdog: Watchdog,
}

impl ThrowawayPooler {
    /// Starts PgBouncer in front of `upstream` with `settings` added to its `[pgbouncer]`.
    pub fn start(
        upstream: &ConnectTarget,
        settings: &[(String, String)],
    ) -> Result<Self, PoolerError> {
        Self::start_on(upstream, settings, None)
    }

    /// The same, on `cpus` (the throwaway server's: a pooler usually runs beside its server,
    /// and off pgstress's CPUs it cannot pass for the client's limit).
    pub fn start_on(
        upstream: &ConnectTarget,
        settings: &[(String, String)],
        cpus: Option<&[usize]>,
    ) -> Result<Self, PoolerError> {
        let binary = find_binary().ok_or(PoolerError::NotFound)?;
        let owner = server_owner().map_err(|err| PoolerError::Owner(err.to_string()))?;
        let folder = tempfile::Builder::new()
            .prefix("pgstress-")
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(PoolerError::Folder)?;
        let root = folder.path().to_owned();
        let watchdog = Watchdog::start_for(&root, "pgbouncer.pid").map_err(PoolerError::Folder)?;
        // PgBouncer works in `data`, where the watchdog looks for its pid file.
        let data = root.join("data");
        fs::create_dir(&data).map_err(PoolerError::Folder)?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(PoolerError::Folder)?;
        let stats_password = run_password();
        let port = free_port().map_err(PoolerError::Folder)?;
        let dbname = upstream.login().dbname;
        let Login {
            user,
            password,
            secret,
        } = Login::for_load(upstream);
        let ini = ini_text(upstream, &data, port, settings)?;
        write_private(&data.join("pgbouncer.ini"), &ini).map_err(PoolerError::Folder)?;
        let userlist = format!(
            "\"{user}\" \"{secret}\"\n\"{STATS_USER}\" \"{}\"\n",
            verifier(&stats_password)
        );
        write_private(&data.join("userlist.txt"), &userlist).map_err(PoolerError::Folder)?;
        let private = [
            root.clone(),
            data.clone(),
            data.join("pgbouncer.ini"),
            data.join("userlist.txt"),
        ];
        give_to(&owner, &private)?;
        let version = version_of(&binary);
        let mut command = Command::new(&binary);
        command.arg(data.join("pgbouncer.ini"));
        crate::pg::target::tls::restore_ca_bundle(&mut command);
        let child = spawn_as(command, &owner, &data.join("pgbouncer.out"))
            .map_err(|err| PoolerError::Start(err.to_string()))?;
        pin(&child, cpus)?;
        let description = describe(&version, port, settings);
        let mut pooler = ThrowawayPooler {
            folder: Some(folder),
            child,
            port,
            user,
            dbname,
            password,
            stats_password,
            description,
            watchdog,
        };
        pooler.wait_until_ready(&data)?;
        Ok(pooler)
    }

    fn wait_until_ready(&mut self, data: &Path) -> Result<(), PoolerError> {
        let target = self.target();
        let logs = ReadyLogs {
            exit: &data.join("pgbouncer.out"),
            running: &data.join("pgbouncer.log"),
        };
        wait_until_ready(&mut self.child, &target, "pgbouncer", READY_DEADLINE, logs)
            .map_err(PoolerError::Start)
    }

    /// How the load reaches the pooler: SCRAM with this run's password, settings in-band
    /// (PgBouncer refuses the `options` startup parameter).
    pub fn target(&self) -> ConnectTarget {
        loopback_target(self.port, &self.user, &self.password, &self.dbname).with_settings_in_band()
    }

    /// Its admin console as `STATS_USER`: SHOW commands only.
    pub fn console_target(&self) -> ConnectTarget {
        loopback_target(self.port, STATS_USER, &self.stats_password, "pgbouncer")
            .with_settings_in_band()
    }

    /// The connection string, password included: for tests and tools that need a DSN.
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={} sslmode=disable",
            self.port, self.user, self.password, self.dbname
        )
    }

    /// E.g. "PgBouncer 1.18.0 (throwaway) on 127.0.0.1:21234, pool_mode=transaction".
    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn folder(&self) -> &Path {
        self.folder.as_ref().map_or(Path::new(""), |f| f.path())
    }

    /// Immediate shutdown (SIGTERM), SIGKILL past the deadline, then the folder is removed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(folder) = self.folder.take() else {
            return;
        };
        let pid = Pid::from_raw(self.child.id() as i32);
        // A stopped pooler (SIGSTOP) would never see the shutdown request.
        let _ = signal::kill(pid, Signal::SIGCONT);
        let _ = signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = folder.close();
        self.watchdog.dismiss();
    }
}

impl Drop for ThrowawayPooler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// pgbouncer on PATH, else Debian's /usr/sbin (not on a normal user's PATH).
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pgbouncer"))
            .find(|bin| bin.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|bin| bin.is_file())
    })
}

/// The console's reader: in `stats_users`, so it can run SHOW and nothing else.
const STATS_USER: &str = "pgstress_stats";

/// How the load logs in to PgBouncer, and what its `auth_file` line holds.
struct Login {
    user: String,
    password: String,
    secret: String,
}

impl Login {
    /// Best, the upstream's own SCRAM verifier (readable by a superuser, as on the throwaway
    /// server) with its user and password: the salt is fixed, so the client derives its keys
    /// once (as against PostgreSQL) and PgBouncer derives none. PgBouncer 1.18 then logs in
    /// to the server with the keys the client proved, which only that verifier accepts (with
    /// any other verifier it fails the server login and retries every 15 s while the client
    /// waits). Else a password made for this run, in plain text: PgBouncer salts it afresh
    /// on every login, and both sides pay PBKDF2 each time.
    fn for_load(upstream: &ConnectTarget) -> Login {
        let Credentials { user, password, .. } = upstream.login();
        match (password, upstream_verifier(upstream)) {
            (Some(password), Some(secret)) => Login {
                user,
                password,
                secret,
            },
            _ => {
                let password = run_password();
                Login {
                    user,
                    secret: password.clone(),
                    password,
                }
            }
        }
    }
}

/// The upstream user's SCRAM verifier, when the login may read pg_authid.
fn upstream_verifier(upstream: &ConnectTarget) -> Option<String> {
    let mut client = upstream
        .connect(upstream.setup_timeout(), "pgstress-setup")
        .ok()?;
    let query = "SELECT rolpassword FROM pg_authid WHERE rolname = current_user";
    let row = client.query_opt(query, &[]).ok()??;
    let secret: Option<String> = row.get(0);
    secret.filter(|s| s.starts_with("SCRAM-SHA-256$") && !s.contains(['"', '\n']))
}

/// A SCRAM verifier for the console's reader.
fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

fn run_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// The ini file: the target as the one database, then the lock-down, then the user's settings.
fn ini_text(
    upstream: &ConnectTarget,
    data: &Path,
    port: u16,
    settings: &[(String, String)],
) -> Result<String, PoolerError> {
    let Credentials {
        user,
        password,
        dbname,
    } = upstream.login();
    let (host, upstream_port) = upstream.first_address();
    let quoted = |what: &'static str, value: &str| match value.contains(['\'', '\\']) {
        true => Err(PoolerError::Unquotable(what)),
        false => Ok(format!("'{value}'")),
    };
    let mut line = format!(
        "{dbname} = host={} port={upstream_port} dbname={} user={}",
        quoted("host", &host)?,
        quoted("database", &dbname)?,
        quoted("user", &user)?
    );
    if let Some(password) = &password {
        let _ = write!(line, " password={}", quoted("password", password)?);
    }
    let dir = data.display();
    let tls = upstream.tls_options();
    let mut ini = format!(
        "[databases]\n{line}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
         unix_socket_dir = {dir}\nunix_socket_mode = 0700\nauth_type = scram-sha-256\n\
         auth_file = {dir}/userlist.txt\npidfile = {dir}/pgbouncer.pid\n\
         logfile = {dir}/pgbouncer.log\nstats_users = {STATS_USER}\nserver_tls_sslmode = {}\n",
        tls.mode
    );
    if let Some(ca) = &tls.root_cert {
        let _ = writeln!(ini, "server_tls_ca_file = {}", ca.display());
    }
    for (key, value) in settings {
        let _ = writeln!(ini, "{key} = {value}");
    }
    Ok(ini)
}

/// Pins the just-started PgBouncer (before it serves anyone) to `cpus`.
fn pin(child: &Child, cpus: Option<&[usize]>) -> Result<(), PoolerError> {
    let Some(cpus) = cpus else {
        return Ok(());
    };
    let pid = Pid::from_raw(child.id() as i32);
    crate::sys::affinity::cpu_set(cpus)
        .and_then(|set| nix::sched::sched_setaffinity(pid, &set))
        .map_err(|err| PoolerError::Start(format!("cannot pin it to CPUs {cpus:?}: {err}")))
}

fn give_to(owner: &Option<User>, paths: &[PathBuf]) -> Result<(), PoolerError> {
    let Some(user) = owner else {
        return Ok(());
    };
    for path in paths {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|err| PoolerError::Folder(err.into()))?;
    }
    Ok(())
}

/// "PgBouncer 1.18.0", or "PgBouncer" when `--version` does not answer in time.
fn version_of(binary: &Path) -> String {
    let child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return "PgBouncer".into();
    };
    let deadline = Instant::now() + VERSION_DEADLINE;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let output = child
        .wait_with_output()
        .map(|out| out.stdout)
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&output);
    text.lines()
        .next()
        .filter(|line| line.starts_with("PgBouncer"))
        .unwrap_or("PgBouncer")
        .trim()
        .to_owned()
}

fn describe(version: &str, port: u16, settings: &[(String, String)]) -> String {
    let mut text = format!("{version} (throwaway) on 127.0.0.1:{port}");
    if !settings.iter().any(|(key, _)| key == "pool_mode") {
        text.push_str(", pool_mode=session (default)");
    }
    for (key, value) in settings {
        let _ = write!(text, ", {key}={value}");
    }
    text
}
