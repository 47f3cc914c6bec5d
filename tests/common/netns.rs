//! A "remote" server on this machine: a PostgreSQL cluster in a network namespace and a PID
//! namespace of its own, joined to the host by a veth pair the test makes and removes. The
//! runs reach it only over the pair (it listens on the far end alone), and pgstress, which
//! looks for a server's processes only behind a loopback target, judges it as one on another
//! host. `pgstress watch` runs inside both namespaces, where the postmaster is pid 1.
//! `make_veth` alone gives an address of the test's own on this host (tests/server_side.rs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pair's two ends: the host's, and the namespace's (the server's).
pub const HOST_END: &str = "10.231.9.1";
pub const SERVER_END: &str = "10.231.9.2";

/// Runs a command to its end; whether it succeeded.
fn ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Makes the veth pair `name` and `{name}p` (as root), the first end with `host_cidr`, both
/// up; whether it could.
pub fn make_veth(name: &str, host_cidr: &str) -> bool {
    let peer = format!("{name}p");
    ok(
        "ip",
        &["link", "add", name, "type", "veth", "peer", "name", &peer],
    ) && ok("ip", &["addr", "add", host_cidr, "dev", name])
        && ok("ip", &["link", "set", name, "up"])
        && ok("ip", &["link", "set", &peer, "up"])
}

/// Removes the veth pair `name` (both ends go with one).
pub fn remove_veth(name: &str) {
    ok("ip", &["link", "del", name]);
}

/// The network namespace and its veth pair, removed on drop.
pub struct Netns {
    pub name: String,
    veth: String,
}

impl Netns {
    /// Makes them (as root); None when this machine cannot.
    pub fn make() -> Option<Netns> {
        let id = std::process::id() % 1_000_000;
        let netns = Netns {
            name: format!("pgsw{id}"),
            veth: format!("pgw{id}"),
        };
        let (ns, veth) = (netns.name.as_str(), netns.veth.as_str());
        let peer = format!("{veth}p");
        let host_cidr = format!("{HOST_END}/30");
        let server_cidr = format!("{SERVER_END}/30");
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            ok("ip", &all)
        };
        let made = ok("ip", &["netns", "add", ns])
            && ok(
                "ip",
                &["link", "add", veth, "type", "veth", "peer", "name", &peer],
            )
            && ok("ip", &["link", "set", &peer, "netns", ns])
            && ok("ip", &["addr", "add", &host_cidr, "dev", veth])
            && ok("ip", &["link", "set", veth, "up"])
            && inside(&["addr", "add", &server_cidr, "dev", &peer])
            && inside(&["link", "set", &peer, "up"])
            && inside(&["link", "set", "lo", "up"]);
        made.then_some(netns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_veth(&self.veth);
        ok("ip", &["netns", "del", &self.name]);
    }
}

/// The cluster inside the namespaces: its data folder (owned by `postgres`), its port and
/// its DSN from the host.
pub struct NsServer {
    /// `unshare`, whose child is the namespace's pid 1: the postmaster.
    unshare: Child,
    folder: tempfile::TempDir,
    pub port: u16,
    pub dsn: String,
}

/// As the `postgres` OS user (initdb and the server refuse root).
fn as_postgres(command: &mut Command) -> &mut Command {
    command.args([
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
    ])
}

impl NsServer {
    /// initdb, then the postmaster in `netns` and a new PID namespace, listening on the
    /// pair's far end only; pinned to `cpus` (taskset) when given, its backends with it.
    /// `trust` lets the host's end in without a password (a connection then costs neither side
    /// a SCRAM exchange); else its password is asked.
    pub fn start(
        netns: &Netns,
        cpus: Option<&str>,
        settings: &[(&str, &str)],
        trust: bool,
    ) -> NsServer {
        let bin = pgstress::pg::local::server::find_binaries().expect("PostgreSQL binaries");
        let folder = tempfile::Builder::new()
            .prefix("pgstress-ns-")
            .tempdir()
            .unwrap();
        let root = folder.path();
        let password = "ns-test-password";
        std::fs::write(root.join("pwfile"), password).unwrap();
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root)
            .status()
            .unwrap();
        let data = root.join("data");
        let initdb = as_postgres(&mut Command::new("env"))
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .arg("--pwfile")
            .arg(root.join("pwfile"))
            .args(["-U", "postgres", "--auth-local=scram-sha-256"])
            .args([
                "--auth-host=scram-sha-256",
                "--no-sync",
                "--no-instructions",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(initdb.success(), "initdb failed");
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        let method = if trust { "trust" } else { "scram-sha-256" };
        rules.push_str(&format!("host all all {HOST_END}/32 {method}\n"));
        std::fs::write(&hba, rules).unwrap();
        let port = 5432;
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &netns.name, "unshare", "--pid", "--fork"]);
        command.arg("--mount-proc");
        if let Some(cpus) = cpus {
            command.args(["taskset", "-c", cpus]);
        }
        as_postgres(&mut command)
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data);
        command.args([
            "-p",
            &port.to_string(),
            "-c",
            &format!("listen_addresses={SERVER_END}"),
        ]);
        command
            .arg("-c")
            .arg(format!("unix_socket_directories={}", root.display()));
        for (key, value) in settings {
            command.arg("-c").arg(format!("{key}={value}"));
        }
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        let unshare = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let dsn = format!(
            "host={SERVER_END} port={port} user=postgres password={password} dbname=postgres connect_timeout=5"
        );
        let server = NsServer {
            unshare,
            folder,
            port,
            dsn,
        };
        let give_up = Instant::now() + Duration::from_secs(30);
        while postgres::Client::connect(&server.dsn, postgres::NoTls).is_err() {
            assert!(
                Instant::now() < give_up,
                "the namespaced server never answered: {}",
                std::fs::read_to_string(server.folder.path().join("server.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    pub fn data(&self) -> PathBuf {
        self.folder.path().join("data")
    }

    /// The postmaster's pid as the host sees it: `unshare`'s child.
    pub fn postmaster_on_host(&self) -> u32 {
        self.pid1()
            .expect("unshare has forked the namespace's pid 1")
    }

    fn pid1(&self) -> Option<u32> {
        let id = self.unshare.id();
        let children = std::fs::read_to_string(format!("/proc/{id}/task/{id}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    }

    /// `pgstress watch` inside the server's namespaces, dialing `run` with `token`.
    pub fn watch(&self, run: &str, token: &str) -> Child {
        self.watch_with(run, token, &[])
    }

    /// The same with `more` options.
    pub fn watch_with(&self, run: &str, token: &str, more: &[&str]) -> Child {
        let target = self.postmaster_on_host().to_string();
        Command::new("nsenter")
            .args(["-t", &target, "-n", "-p", "-m", "--"])
            .arg(env!("CARGO_BIN_EXE_pgstress"))
            .args(["watch", "--run", run, "--name", "db-watcher", "--pgdata"])
            .arg(self.data())
            .args(more)
            .env("PGSTRESS_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nsenter (util-linux)")
    }

    pub fn folder(&self) -> &Path {
        self.folder.path()
    }
}

impl Drop for NsServer {
    fn drop(&mut self) {
        // SIGKILL to the namespace's pid 1 from outside ends every process of the namespace.
        if let Some(pid) = self.pid1() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Whether this machine can make the namespaces (root, `ip`, `unshare`, `nsenter`, `setpriv`).
pub fn can_make_namespaces() -> bool {
    nix::unistd::geteuid().is_root()
        && ["ip", "unshare", "nsenter", "setpriv", "taskset"]
            .iter()
            .all(|program| ok("sh", &["-c", &format!("command -v {program}")]))
}
