//! How a throwaway PgBouncer is set up: its binary and version, how the load logs in to it,
//! its ini file (the target as its one database, the lock-down, the user's settings), and its
//! client limit sized to the run's largest step.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::RngExt;
use rand::distr::Alphanumeric;

use super::pooler::{PoolerError, PoolerPlan};
use crate::pg::target::{ConnectTarget, Credentials};

/// Time for `pgbouncer --version` to answer.
const VERSION_DEADLINE: Duration = Duration::from_secs(5);

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
pub(super) const STATS_USER: &str = "pgstress_stats";

/// How the load logs in to PgBouncer, and what its `auth_file` line holds.
pub(super) struct Login {
    pub user: String,
    pub password: String,
    pub secret: String,
}

impl Login {
    /// Best, the upstream's own SCRAM verifier (readable by a superuser, as on the throwaway
    /// server) with its user and password: the salt is fixed, so the client derives its keys
    /// once (as against PostgreSQL) and PgBouncer derives none. PgBouncer 1.18 then logs in
    /// to the server with the keys the client proved, which only that verifier accepts (with
    /// any other verifier it fails the server login and retries every 15 s while the client
    /// waits). Else a password made for this run, in plain text: PgBouncer salts it afresh
    /// on every login, and both sides pay PBKDF2 each time.
    pub(super) fn for_load(upstream: &ConnectTarget) -> Login {
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
pub(super) fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

pub(super) fn run_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// The ini file: the target as the one database, then the lock-down, then the user's settings.
pub(super) fn ini_text(
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

/// "PgBouncer 1.18.0", or "PgBouncer" when `--version` does not answer in time.
pub(super) fn version_of(binary: &Path) -> String {
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

pub(super) fn describe(version: &str, port: u16, settings: &[(String, String)]) -> String {
    let mut text = format!("{version} (throwaway) on 127.0.0.1:{port}");
    if !settings.iter().any(|(key, _)| key == "pool_mode") {
        text.push_str(", pool_mode=session (default)");
    }
    for (key, value) in settings {
        let _ = write!(text, ", {key}={value}");
    }
    text
}

/// PgBouncer's own client limit, when max_client_conn is not set.
const PGBOUNCER_MAX_CLIENT_CONN: u64 = 100;
/// PgBouncer's own default_pool_size.
const PGBOUNCER_POOL_SIZE: u64 = 20;
/// Descriptors a PgBouncer process holds besides its clients' and its servers': listeners,
/// its unix socket, its log, libevent's and the resolver's.
const FILES_BESIDES_CONNECTIONS: u64 = 64;

/// The settings each process is started with, and the descriptors each may need: the user's,
/// then (unless the user set it) max_client_conn sized to hold the run's largest step across
/// the processes, and `so_reuseport` when there are several.
pub(super) fn sized_settings(plan: PoolerPlan<'_>) -> (Vec<(String, String)>, u64) {
    let given = |key: &str| {
        (plan.settings.iter())
            .find(|(name, _)| name == key)
            .and_then(|(_, value)| value.trim().parse::<u64>().ok())
    };
    let mut settings = plan.settings.to_vec();
    let max_client_conn = match (given("max_client_conn"), plan.largest_step) {
        (Some(given), _) => given,
        (None, Some(largest)) => {
            let limit = client_limit(largest, plan.processes);
            settings.push(("max_client_conn".to_owned(), limit.to_string()));
            limit
        }
        (None, None) => PGBOUNCER_MAX_CLIENT_CONN,
    };
    if plan.processes > 1 {
        settings.push(("so_reuseport".to_owned(), "1".to_owned()));
    }
    let servers = given("default_pool_size").unwrap_or(PGBOUNCER_POOL_SIZE)
        + given("reserve_pool_size").unwrap_or(0);
    (
        settings,
        max_client_conn + servers + FILES_BESIDES_CONNECTIONS,
    )
}

/// Each process's client limit for a run whose largest step holds `largest` connections: its
/// share with a quarter and 32 to spare, since the kernel splits connections among the
/// processes by a hash of their addresses and ports, not evenly; never below PgBouncer's own.
fn client_limit(largest: u32, processes: u32) -> u64 {
    let share = (u64::from(largest) * 5).div_ceil(4 * u64::from(processes.max(1)));
    (share + 32).max(PGBOUNCER_MAX_CLIENT_CONN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(settings: &[(String, String)], processes: u32, largest: Option<u32>) -> PoolerPlan<'_> {
        PoolerPlan {
            settings,
            processes,
            largest_step: largest,
        }
    }

    #[test]
    fn the_client_limit_holds_the_largest_step_across_the_processes() {
        let (settings, need) = sized_settings(plan(&[], 2, Some(10_000)));
        assert_eq!(
            settings,
            [
                ("max_client_conn".to_owned(), "6282".to_owned()),
                ("so_reuseport".to_owned(), "1".to_owned())
            ]
        );
        assert_eq!(need, 6282 + 20 + 64);
        // Small steps keep PgBouncer's own 100; one process shares no port.
        let (settings, _) = sized_settings(plan(&[], 1, Some(20)));
        assert_eq!(settings, [("max_client_conn".to_owned(), "100".to_owned())]);
        // The user's limit is each process's, and sizes its descriptors.
        let given = [
            ("max_client_conn".to_owned(), "40".to_owned()),
            ("default_pool_size".to_owned(), "5".to_owned()),
        ];
        let (settings, need) = sized_settings(plan(&given, 1, Some(10_000)));
        assert_eq!(settings, given);
        assert_eq!(need, 40 + 5 + 64);
        assert_eq!(sized_settings(plan(&[], 1, None)).1, 100 + 20 + 64);
    }
}
