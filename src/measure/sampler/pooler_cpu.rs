//! The pooler's CPU as the third side: its processes on this machine, read together for the
//! pooler's share of the host and, for PgBouncer (one thread per process), each on its own
//! for the core it fills.

use super::counters::{self, ProcessTree};
use crate::model::sample::PoolerProcessCpu;

/// A pooler on this machine: the throwaway PgBouncer's processes, or the processes listening
/// on a loopback target's port that are not PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPooler {
    /// Its processes, in the order they started: one, or several sharing the port
    /// (PgBouncer's `so_reuseport`). Each is read with its children.
    pub pids: Vec<u32>,
    /// The most CPUs each process can use: 1 for PgBouncer, which does all its work on one
    /// thread (its second thread only resolves names); None (all the host's) for the others
    /// (pgpool-II forks a process per client, PgCat and Odyssey run several workers).
    pub cores: Option<f64>,
}

impl LocalPooler {
    /// The pooler of these processes (a PgBouncer when the first is one).
    pub fn of_pids(pids: Vec<u32>) -> Self {
        let first = pids.first().copied().unwrap_or(0);
        let name = crate::sys::procfs::name(first).unwrap_or_default();
        LocalPooler {
            pids,
            cores: (name == "pgbouncer").then_some(1.0),
        }
    }

    /// The processes listening on a loopback `port`, when they are not PostgreSQL itself. The
    /// server's postmaster, when known, is asked first.
    pub fn listening_on(port: u16, server: Option<super::cpu::LocalServer>) -> Option<Self> {
        let postmaster = server.map(|server| server.postmaster_pid);
        let pids = crate::sys::procfs::listener_pids(port, postmaster);
        let name = crate::sys::procfs::name(*pids.first()?)?;
        (!name.starts_with("postgres")).then(|| Self::of_pids(pids))
    }

    /// The first process's pid.
    pub fn pid(&self) -> u32 {
        self.pids.first().copied().unwrap_or(0)
    }

    /// The most CPUs all its processes can use; None for all the host's.
    pub fn total_cores(&self) -> Option<f64> {
        self.cores.map(|cores| cores * self.pids.len() as f64)
    }
}

/// The pooler's processes as the CPU probe reads them.
pub struct PoolerProcesses {
    trees: Vec<(u32, ProcessTree)>,
    /// Whether each process runs on one thread, so that each is judged on its own core.
    one_thread: bool,
}

/// The pooler's counters at one instant.
#[derive(Debug, Clone, Default)]
pub struct PoolerReading {
    /// All its processes' CPU seconds; None when none could be read.
    pub seconds: Option<f64>,
    /// Each process's CPU seconds and runnable seconds, read at a step's edges only (empty
    /// between them, and for a pooler not judged process by process).
    pub each: Vec<(Option<f64>, Option<f64>)>,
}

impl PoolerProcesses {
    pub fn new(pooler: &LocalPooler) -> Self {
        PoolerProcesses {
            trees: (pooler.pids.iter())
                .map(|&pid| (pid, ProcessTree::new(pid)))
                .collect(),
            one_thread: pooler.cores == Some(1.0),
        }
    }

    /// At a step's edges (`edge`) every child is read and each process's own counters are
    /// kept; between them only the children found before, and the sum.
    pub fn read(&mut self, edge: bool) -> PoolerReading {
        let mut each = Vec::new();
        let mut seconds = None;
        for (pid, tree) in &mut self.trees {
            let cpu = match edge {
                true => tree.cpu_seconds(),
                false => tree.cpu_seconds_of_settled(),
            };
            if let Some(cpu) = cpu {
                seconds = Some(seconds.unwrap_or(0.0) + cpu);
            }
            if edge && self.one_thread {
                each.push((cpu, counters::runnable_seconds(*pid)));
            }
        }
        PoolerReading { seconds, each }
    }

    /// Each process over a step of `wall` seconds between two edge readings.
    pub fn whole(
        &self,
        begin: &PoolerReading,
        end: &PoolerReading,
        wall: f64,
    ) -> Vec<PoolerProcessCpu> {
        if wall <= 0.0 {
            return Vec::new();
        }
        let pct = |seconds: f64| (seconds / wall * 100.0).clamp(0.0, 100.0);
        (self.trees.iter().zip(begin.each.iter().zip(&end.each)))
            .enumerate()
            .filter_map(|(index, ((pid, _), (before, after)))| {
                let core_pct = pct(after.0? - before.0?);
                let runnable_pct = match (after.1, before.1) {
                    (Some(after), Some(before)) => Some(pct(after - before)),
                    _ => None,
                };
                Some(PoolerProcessCpu {
                    index: index as u32 + 1,
                    pid: *pid,
                    core_pct,
                    runnable_pct,
                    full: false,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_is_its_own_share_of_one_core() {
        let pooler = LocalPooler {
            pids: vec![std::process::id(), std::process::id()],
            cores: Some(1.0),
        };
        assert_eq!(pooler.total_cores(), Some(2.0));
        let processes = PoolerProcesses::new(&pooler);
        let begin = PoolerReading {
            seconds: Some(1.0),
            each: vec![(Some(0.5), Some(0.5)), (Some(0.5), None)],
        };
        let end = PoolerReading {
            seconds: Some(3.5),
            each: vec![(Some(0.7), Some(2.4)), (Some(2.8), None)],
        };
        // 2 s: the first used 0.2 s (10% of its core) but was runnable 1.9 s (95%); the
        // second's counters land at most a whole core.
        let each = processes.whole(&begin, &end, 2.0);
        assert_eq!(each.len(), 2);
        assert_eq!((each[0].index, each[1].index), (1, 2));
        assert!((each[0].core_pct - 10.0).abs() < 1e-9, "{each:?}");
        assert!((each[0].runnable_pct.unwrap() - 95.0).abs() < 1e-9);
        assert_eq!((each[1].core_pct, each[1].runnable_pct), (100.0, None));
        assert!(processes.whole(&begin, &end, 0.0).is_empty());
    }

    #[test]
    fn only_a_steps_edges_keep_each_process() {
        let pooler = LocalPooler::of_pids(vec![std::process::id()]);
        assert_eq!(pooler.cores, None, "this test binary is no PgBouncer");
        let mut one_thread = PoolerProcesses::new(&pooler);
        one_thread.one_thread = true;
        let edge = one_thread.read(true);
        assert!(edge.seconds.is_some() && edge.each.len() == 1, "{edge:?}");
        assert!(one_thread.read(false).each.is_empty());
    }
}
