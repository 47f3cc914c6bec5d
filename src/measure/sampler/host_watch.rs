//! The watcher's readings on the server's host (`pgstress watch`): the postmaster found by its
//! data folder or its port, then the host's, the server's and the postmaster's cumulative
//! counters at each reading the run asks for, read as a local server's are (`ProcessTree`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::counters::{HostTicks, ProcessTree};
use crate::model::watch::{DiskTicks, WatchReading, WatchedHost};
use crate::sys::procfs::KeptFile;

/// Finds the postmaster: the first line of `pgdata`'s postmaster.pid, else the process
/// listening on `port`. The error says what to give.
pub fn find_postmaster(pgdata: Option<&Path>, port: Option<u16>) -> Result<u32, String> {
    if let Some(pgdata) = pgdata {
        let file = pgdata.join("postmaster.pid");
        let text = std::fs::read_to_string(&file).map_err(|err| {
            format!(
                "cannot read {}: {err}; give --pgdata the server's data folder (it holds postmaster.pid while the server runs)",
                file.display()
            )
        })?;
        let pid = text
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok());
        return pid.filter(|&pid| is_postgres(pid)).ok_or_else(|| {
            format!(
                "{} names no running postgres process; is the server up, and in this PID namespace?",
                file.display()
            )
        });
    }
    let Some(port) = port else {
        return Err("give --pgdata DIR or --port N to find the server".to_owned());
    };
    crate::sys::procfs::listener_pid(port, None)
        .filter(|&pid| is_postgres(pid))
        .ok_or_else(|| {
            format!(
                "no postgres process of this host listens on port {port}; give the server's --port, or --pgdata"
            )
        })
}

fn is_postgres(pid: u32) -> bool {
    crate::sys::procfs::name(pid).is_some_and(|name| name.starts_with("postgres"))
}

/// The host's readings for one postmaster, kept between readings.
pub struct HostWatch {
    postmaster: u32,
    tree: ProcessTree,
    host_stat: KeptFile,
    postmaster_schedstat: KeptFile,
    meminfo: KeptFile,
    diskstats: KeptFile,
    /// Each live backend's wait at the last edge, and the total so far (waits of backends
    /// gone since their last edge are not counted, so the total never goes back).
    backend_waits: HashMap<u32, u64>,
    backends_wait_ns: u64,
    started: Instant,
}

impl HostWatch {
    pub fn new(postmaster: u32) -> Self {
        HostWatch {
            postmaster,
            tree: ProcessTree::new(postmaster),
            host_stat: KeptFile::new("/proc/stat"),
            postmaster_schedstat: KeptFile::new(format!("/proc/{postmaster}/schedstat")),
            meminfo: KeptFile::new("/proc/meminfo"),
            diskstats: KeptFile::new("/proc/diskstats"),
            backend_waits: HashMap::new(),
            backends_wait_ns: 0,
            started: Instant::now(),
        }
    }

    /// The host as the run is told of it when the watcher joins.
    pub fn host(&self) -> WatchedHost {
        let host_cores = crate::sys::cpus::host_cores() as f64;
        let cpus = crate::sys::affinity::allowed_of(self.postmaster).unwrap_or_default();
        WatchedHost {
            host: crate::sys::procfs::hostname(),
            postmaster_pid: self.postmaster,
            host_cores,
            server_cpus: crate::sys::affinity::format_list(&cpus),
            server_cores: if cpus.is_empty() {
                host_cores
            } else {
                cpus.len() as f64
            },
        }
    }

    /// Whether the postmaster still runs.
    pub fn alive(&self) -> bool {
        is_postgres(self.postmaster)
    }

    /// The counters now; at a step's edge (`edge`) every backend is read, and their waits.
    pub fn read(&mut self, edge: bool) -> WatchReading {
        let host = self.host_stat.read().and_then(HostTicks::of_stat);
        let server_seconds = match edge {
            true => self.tree.cpu_seconds(),
            false => self.tree.cpu_seconds_of_settled(),
        };
        let mut schedstat = self
            .postmaster_schedstat
            .read()
            .map(|text| text.split_whitespace().map(|f| f.parse::<u64>().ok()))
            .into_iter()
            .flatten();
        let (run, wait) = (schedstat.next().flatten(), schedstat.next().flatten());
        WatchReading {
            at_ns: self.started.elapsed().as_nanos() as u64,
            host_busy: host.map(|h| h.busy),
            host_total: host.map(|h| h.total),
            server_seconds,
            postmaster_run_ns: run,
            postmaster_wait_ns: wait,
            backends_wait_ns: edge.then(|| self.backends_wait()),
            mem_available_kib: self.meminfo.read().and_then(mem_available_kib),
            disks: self.diskstats.read().map(whole_disks).unwrap_or_default(),
        }
    }

    /// The backends' run-queue wait so far: each live backend's growth since the last edge.
    fn backends_wait(&mut self) -> u64 {
        let mut now = HashMap::new();
        for child in crate::sys::procfs::children(self.postmaster) {
            let text = std::fs::read_to_string(format!("/proc/{child}/schedstat"));
            let Some(wait) = text
                .ok()
                .and_then(|t| crate::sys::schedstat::parse_wait_ns(&t))
            else {
                continue;
            };
            let before = self.backend_waits.get(&child).copied().unwrap_or(0);
            self.backends_wait_ns += wait.saturating_sub(before);
            now.insert(child, wait);
        }
        self.backend_waits = now;
        self.backends_wait_ns
    }
}

/// MemAvailable in a /proc/meminfo text, in KiB.
fn mem_available_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The whole disks of a /proc/diskstats text and their busy time (its 13th field, ms):
/// partitions, loop and RAM devices left out (a partition's time is its disk's again).
fn whole_disks(diskstats: &str) -> Vec<DiskTicks> {
    diskstats
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = *fields.get(2)?;
            let virtual_device = ["loop", "ram", "zram", "dm-", "md"]
                .iter()
                .any(|prefix| name.starts_with(prefix));
            let whole = Path::new("/sys/block").join(name).exists();
            (whole && !virtual_device).then_some(())?;
            Some(DiskTicks {
                name: name.to_owned(),
                busy_ms: fields.get(12)?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_available_and_a_disks_busy_time_are_read_from_procs_texts() {
        let meminfo =
            "MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:    8123456 kB\n";
        assert_eq!(mem_available_kib(meminfo), Some(8_123_456));
        assert_eq!(mem_available_kib("MemTotal: 1 kB\n"), None);
        // This machine's own diskstats: every whole disk it lists has a busy time.
        let text = std::fs::read_to_string("/proc/diskstats").unwrap_or_default();
        for disk in whole_disks(&text) {
            assert!(!disk.name.starts_with("loop"), "{disk:?}");
        }
    }

    #[test]
    fn the_postmaster_is_found_by_its_data_folder_or_refused_in_words() {
        let folder = tempfile::tempdir().unwrap();
        let missing = find_postmaster(Some(folder.path()), None).unwrap_err();
        assert!(missing.contains("postmaster.pid"), "{missing}");
        // This test's own pid is no postgres process.
        let pidfile = folder.path().join("postmaster.pid");
        std::fs::write(&pidfile, format!("{}\n/data\n", std::process::id())).unwrap();
        let not_postgres = find_postmaster(Some(folder.path()), None).unwrap_err();
        assert!(
            not_postgres.contains("no running postgres"),
            "{not_postgres}"
        );
        let neither = find_postmaster(None, None).unwrap_err();
        assert!(neither.contains("--pgdata"), "{neither}");
    }

    #[test]
    fn an_edge_reads_the_backends_wait_and_a_sample_does_not() {
        // This test process stands in for a postmaster: its counters are read all the same.
        let mut watch = HostWatch::new(std::process::id());
        let edge = watch.read(true);
        assert!(edge.backends_wait_ns.is_some() && edge.server_seconds.is_some());
        assert!(edge.postmaster_run_ns.is_some() && edge.mem_available_kib.is_some());
        let inner = watch.read(false);
        assert!(inner.backends_wait_ns.is_none());
        assert!(inner.at_ns > edge.at_ns);
    }
}
