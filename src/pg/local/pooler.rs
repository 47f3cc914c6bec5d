//! The throwaway pooler: the machine's own PgBouncer, started for one run in front of the
//! target (the throwaway server or the user's), locked down like the throwaway server (SCRAM
//! with a password made for this run, a 0700 folder, loopback only, a port below 32768), and
//! removed when the run ends, however it ends (the server's watchdog guards it too).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};
use tempfile::TempDir;
use thiserror::Error;

use super::pooler_config::{
    Login, STATS_USER, describe, find_binary, ini_text, run_password, sized_settings, verifier,
    version_of,
};
use crate::pg::local::server::server_owner;
use crate::pg::local::throwaway::{
    ReadyLogs, free_port, loopback_target, socket_target, spawn_with_files, wait_until_ready,
    write_private,
};
use crate::pg::local::watchdog::Watchdog;
use crate::pg::target::ConnectTarget;

/// Time for PgBouncer to accept connections after it is launched.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Time for an immediate shutdown (SIGTERM) before PgBouncer is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

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

/// What to start: the user's ini settings, how many PgBouncer processes share the port, and
/// the most client connections a step of the run may hold (None: PgBouncer's own limits).
#[derive(Debug, Clone, Copy)]
pub struct PoolerPlan<'a> {
    pub settings: &'a [(String, String)],
    pub processes: u32,
    pub largest_step: Option<u32>,
}

/// A running throwaway PgBouncer, one process or several sharing its port (`so_reuseport`);
/// dropping it stops them all and removes their folders.
pub struct ThrowawayPooler {
    processes: Vec<PoolerProcess>,
    port: u16,
    user: String,
    dbname: String,
    password: String,
    /// The password of `STATS_USER`, who may read the console's SHOW commands and nothing else.
    stats_password: String,
    description: String,
    /// What the start found short (a descriptor limit), to be said before the load.
    warnings: Vec<String>,
}

/// One PgBouncer process in a private folder of its own (0700), guarded by its own
/// watchdog: its ini, pid file, log and unix socket are its own, as PgBouncer needs.
struct PoolerProcess {
    folder: Option<TempDir>,
    data: PathBuf,
    child: Child,
    watchdog: Watchdog,
}

/// What every process of one pooler shares.
struct Shared<'a> {
    binary: &'a Path,
    owner: &'a Option<User>,
    ini: &'a dyn Fn(&Path) -> Result<String, PoolerError>,
    userlist: &'a str,
    open_files: u64,
    cpus: Option<&'a [usize]>,
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
        let plan = PoolerPlan {
            settings,
            processes: 1,
            largest_step: None,
        };
        Self::start_planned(upstream, plan, cpus)
    }

    /// `plan.processes` PgBouncer processes on one port, each with the descriptors its
    /// max_client_conn needs, started one after the other, each answering on its own unix
    /// socket before the next starts.
    pub fn start_planned(
        upstream: &ConnectTarget,
        plan: PoolerPlan<'_>,
        cpus: Option<&[usize]>,
    ) -> Result<Self, PoolerError> {
        let binary = find_binary().ok_or(PoolerError::NotFound)?;
        let owner = server_owner().map_err(|err| PoolerError::Owner(err.to_string()))?;
        let (settings, need) = sized_settings(plan);
        let (open_files, short) = crate::sys::limits::open_files_for_child(need);
        let stats_password = run_password();
        let port = free_port().map_err(PoolerError::Folder)?;
        let Login {
            user,
            password,
            secret,
        } = Login::for_load(upstream);
        let userlist = format!(
            "\"{user}\" \"{secret}\"\n\"{STATS_USER}\" \"{}\"\n",
            verifier(&stats_password)
        );
        let version = version_of(&binary);
        let mut pooler = ThrowawayPooler {
            processes: Vec::new(),
            port,
            user,
            dbname: upstream.login().dbname,
            password,
            stats_password,
            description: describe(&version, port, &settings),
            warnings: short
                .map(|setting| files_warning(open_files, need, setting))
                .into_iter()
                .collect(),
        };
        let ini = |data: &Path| ini_text(upstream, data, port, &settings);
        let shared = Shared {
            binary: &binary,
            owner: &owner,
            ini: &ini,
            userlist: &userlist,
            open_files,
            cpus,
        };
        for _ in 0..plan.processes.max(1) {
            // Pushed before the wait: a process that never answers is stopped with the rest.
            pooler.processes.push(PoolerProcess::start(&shared)?);
            let index = pooler.processes.len() - 1;
            pooler.wait_until_ready(index)?;
        }
        if plan.processes > 1 {
            pooler
                .description
                .push_str(&format!(", {} processes", plan.processes));
        }
        Ok(pooler)
    }

    fn wait_until_ready(&mut self, index: usize) -> Result<(), PoolerError> {
        let target = self.process_console(index);
        let process = &mut self.processes[index];
        let logs = ReadyLogs {
            exit: &process.data.join("pgbouncer.out"),
            running: &process.data.join("pgbouncer.log"),
        };
        wait_until_ready(
            &mut process.child,
            &target,
            "pgbouncer",
            READY_DEADLINE,
            logs,
        )
        .map_err(PoolerError::Start)
    }

    /// How the load reaches the pooler: SCRAM with this run's password, settings in-band
    /// (PgBouncer refuses the `options` startup parameter).
    pub fn target(&self) -> ConnectTarget {
        loopback_target(self.port, &self.user, &self.password, &self.dbname).with_settings_in_band()
    }

    /// Its admin console as `STATS_USER`: SHOW commands only. On the shared port, this is
    /// whichever process the kernel hands the connection to.
    pub fn console_target(&self) -> ConnectTarget {
        loopback_target(self.port, STATS_USER, &self.stats_password, "pgbouncer")
            .with_settings_in_band()
    }

    /// The console of process `index` (from 0), on its own unix socket.
    pub fn process_console(&self, index: usize) -> ConnectTarget {
        let data = &self.processes[index].data;
        socket_target(
            data,
            self.port,
            STATS_USER,
            &self.stats_password,
            "pgbouncer",
        )
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

    /// What the start found short, each a line to say before the load.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The first process's pid.
    pub fn pid(&self) -> u32 {
        self.processes[0].child.id()
    }

    /// Every process's pid, in the order they started.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.child.id()).collect()
    }

    /// The first process's folder.
    pub fn folder(&self) -> &Path {
        self.processes[0].folder()
    }

    /// Every process's folder, in the order they started.
    pub fn folders(&self) -> Vec<&Path> {
        self.processes.iter().map(PoolerProcess::folder).collect()
    }

    /// Immediate shutdown (SIGTERM) of every process, SIGKILL past the deadline, then the
    /// folders are removed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // All asked at once, then each waited for: the deadline is the whole pooler's.
        for process in &self.processes {
            process.ask_to_stop();
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        for process in &mut self.processes {
            process.finish(deadline);
        }
    }
}

impl Drop for ThrowawayPooler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl PoolerProcess {
    /// A private folder and its watchdog, the ini and the logins in it, and PgBouncer
    /// launched there as the server's owner with its descriptor limit, pinned before it
    /// serves anyone.
    fn start(shared: &Shared<'_>) -> Result<Self, PoolerError> {
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
        let ini = data.join("pgbouncer.ini");
        write_private(&ini, &(shared.ini)(&data)?).map_err(PoolerError::Folder)?;
        let userlist = data.join("userlist.txt");
        write_private(&userlist, shared.userlist).map_err(PoolerError::Folder)?;
        give_to(shared.owner, &[root, data.clone(), ini.clone(), userlist])?;
        let mut command = Command::new(shared.binary);
        command.arg(&ini);
        crate::pg::target::tls::restore_ca_bundle(&mut command);
        let out = data.join("pgbouncer.out");
        let child = spawn_with_files(command, shared.owner, &out, Some(shared.open_files))
            .map_err(|err| PoolerError::Start(err.to_string()))?;
        let mut process = PoolerProcess {
            folder: Some(folder),
            data,
            child,
            watchdog,
        };
        if let Err(err) = pin(&process.child, shared.cpus) {
            process.ask_to_stop();
            process.finish(Instant::now() + STOP_DEADLINE);
            return Err(err);
        }
        Ok(process)
    }

    fn folder(&self) -> &Path {
        self.folder.as_ref().map_or(Path::new(""), |f| f.path())
    }

    fn ask_to_stop(&self) {
        if self.folder.is_none() {
            return;
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        // A stopped pooler (SIGSTOP) would never see the shutdown request.
        let _ = signal::kill(pid, Signal::SIGCONT);
        let _ = signal::kill(pid, Signal::SIGTERM);
    }

    /// Waits for the process until `deadline`, kills it past it, removes its folder and
    /// lets its watchdog go.
    fn finish(&mut self, deadline: Instant) {
        let Some(folder) = self.folder.take() else {
            return;
        };
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = folder.close();
        self.watchdog.dismiss();
    }
}

/// The start's note when a process may not open the descriptors its client limit needs.
fn files_warning(open_files: u64, need: u64, setting: &str) -> String {
    format!(
        "warning: each PgBouncer process may open {open_files} files, but its max_client_conn \
         needs about {need}: clients past that are refused for want of descriptors (the \
         pooler's limit, set by this machine); raise {setting}"
    )
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
