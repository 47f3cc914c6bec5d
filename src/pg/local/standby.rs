//! A streaming standby beside the throwaway primary (`--standby`): `pg_basebackup -R` of the
//! primary into a folder of its own, started on a port of its own, with the same guarantees
//! as the primary: a folder only the server's user can read, a watchdog that stops it and
//! removes the folder if pgstress dies, the stop and removal at the run's end. The failover
//! fault stops the primary at once (`-m immediate`) and promotes it.

use std::fs;
use std::process::Command;

use nix::sys::signal::Signal;

use super::*;

/// `pg_basebackup` may take as long as an initdb.
const BACKUP_DEADLINE: Duration = INITDB_DEADLINE;

impl ThrowawayServer {
    /// Starts a hot standby of this server, streaming from it.
    pub fn start_standby(&self) -> Result<ThrowawayServer, ServerError> {
        let owner = server_owner()?;
        let (folder, watchdog) = private_folder()?;
        let root = folder.path().to_owned();
        if let Some(user) = &owner {
            nix::unistd::chown(&root, Some(user.uid), Some(user.gid))
                .map_err(|err| ServerError::Folder(err.into()))?;
        }
        let data = root.join("data");
        // `postgres` may be a link on PATH into its installation, which holds pg_basebackup.
        let postgres = fs::canonicalize(&self.postmaster.binary).map_err(ServerError::Folder)?;
        let mut backup = Command::new(postgres.with_file_name("pg_basebackup"));
        backup
            .arg("-D")
            .arg(&data)
            .args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-w",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string()])
            .env("PGPASSWORD", &self.password);
        run_to_end(
            backup,
            &owner,
            &root.join("basebackup.log"),
            BACKUP_DEADLINE,
        )
        .map_err(|err| ServerError::Start(format!("pg_basebackup: {err}")))?;
        let port = free_port().map_err(ServerError::Folder)?;
        let mut args = self.postmaster.args.clone();
        for (flag, value) in [("-D", data.display().to_string()), ("-p", port.to_string())] {
            if let Some(at) = args.iter().position(|arg| arg == flag) {
                args[at + 1] = value;
            }
        }
        let socket = format!("unix_socket_directories={}", root.display());
        for arg in args
            .iter_mut()
            .filter(|a| a.starts_with("unix_socket_directories="))
        {
            *arg = socket.clone();
        }
        let postmaster = Postmaster {
            args,
            log: root.join("server.log"),
            owner,
            binary: self.postmaster.binary.clone(),
            cpus: self.postmaster.cpus.clone(),
        };
        let child = postmaster.launch()?;
        let mut standby = ThrowawayServer {
            folder: Some(folder),
            child,
            postmaster,
            port,
            password: self.password.clone(),
            bin_dir: self.bin_dir.clone(),
            watchdog,
            leftovers: Vec::new(),
        };
        standby.wait_until_ready()?;
        Ok(standby)
    }

    /// Stops the server at once, as `pg_ctl stop -m immediate` does (SIGQUIT): no checkpoint,
    /// sessions cut. Its folder stays until the run ends.
    pub fn stop_immediately(&mut self) {
        let postmaster = self.child.id();
        signal_family(postmaster, Signal::SIGCONT);
        let _ = nix::sys::signal::kill(Pid::from_raw(postmaster as i32), Signal::SIGQUIT);
        let deadline = Instant::now() + STOP_DEADLINE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_family(postmaster, Signal::SIGKILL);
        let _ = self.child.wait();
        forget_live(postmaster);
    }

    /// Promotes a standby to primary, waiting (at most a minute) until it takes writes.
    pub fn promote(&self) -> Result<(), String> {
        let mut client = (self.target())
            .connect(Duration::from_secs(10), "pgstress-fault")
            .map_err(|err| err.to_string())?;
        let promoted: bool = client
            .query_one("SELECT pg_promote(true, 60)", &[])
            .map_err(|err| err.to_string())?
            .get(0);
        match promoted {
            true => Ok(()),
            false => Err("pg_promote() did not finish within 60 s".to_owned()),
        }
    }
}
