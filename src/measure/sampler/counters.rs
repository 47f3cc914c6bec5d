//! Cumulative CPU counters read from the kernel. Percentages come from the difference of two
//! readings, so a sample covers exactly the time since the previous one.
//!
//! Why not sysinfo's percentages for everything: sysinfo skips host CPU refreshes closer than
//! 200 ms (its MINIMUM_CPU_UPDATE_INTERVAL), which would repeat stale values at the default
//! 100 ms interval; and it only sees processes alive at both refreshes, while a backend of a
//! connection-per-request load lives a few milliseconds. The postmaster's cutime/cstime
//! account for every backend it has reaped, so the server's CPU is complete.

use std::collections::HashSet;
use std::fs;

use crate::sys::procfs::{KeptFile, KeptFiles};

/// Clock ticks per second for /proc times (USER_HZ, 100 on every Linux we run on).
fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |ticks| ticks as f64)
}

/// The whole host's CPU time: busy and total ticks over all cores, from /proc/stat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostTicks {
    pub busy: u64,
    pub total: u64,
}

impl HostTicks {
    /// The whole host's ticks: the first line of /proc/stat.
    pub fn of_stat(stat: &str) -> Option<Self> {
        Self::parse(stat.lines().next()?)
    }

    /// The sum of the `cpuN` lines of `stat` for the CPUs in `cpus`.
    pub fn sum_of(stat: &str, cpus: &[usize]) -> Option<Self> {
        let mut sum = HostTicks::default();
        let mut found = 0;
        for line in stat.lines() {
            let Some(rest) = line.strip_prefix("cpu") else {
                continue;
            };
            let Some((number, times)) = rest.split_once(' ') else {
                continue;
            };
            if number.parse().is_ok_and(|cpu: usize| cpus.contains(&cpu)) {
                let ticks = Self::parse(&format!("cpu {times}"))?;
                sum.busy += ticks.busy;
                sum.total += ticks.total;
                found += 1;
            }
        }
        (found > 0).then_some(sum)
    }

    /// Parses the aggregate `cpu ...` line; idle and iowait are the idle time.
    pub fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let values: Vec<u64> = fields
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if values.len() < 5 {
            return None;
        }
        let total: u64 = values.iter().sum();
        let idle = values[3] + values[4];
        Some(HostTicks {
            busy: total - idle,
            total,
        })
    }

    /// Busy share of all cores between two readings, in percent.
    pub fn percent_since(&self, earlier: &HostTicks) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let busy = self.busy.checked_sub(earlier.busy)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

/// CPU seconds used by this process, every thread it has had included, to the nanosecond.
pub fn own_cpu_seconds() -> Option<f64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    let done = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    (done == 0).then(|| now.tv_sec as f64 + now.tv_nsec as f64 / 1e9)
}

/// A server to read the CPU of: its postmaster (or a pooler's main process) and its children,
/// whose schedstat files stay open between samples (`KeptFiles`).
#[derive(Debug)]
pub struct ProcessTree {
    /// The root's stat, schedstat and list of children.
    root_files: [KeptFile; 3],
    children: KeptFiles,
    /// The children the last reading found.
    found: HashSet<u32>,
}

impl ProcessTree {
    pub fn new(root: u32) -> Self {
        ProcessTree {
            root_files: [
                KeptFile::new(format!("/proc/{root}/stat")),
                KeptFile::new(format!("/proc/{root}/schedstat")),
                KeptFile::new(format!("/proc/{root}/task/{root}/children")),
            ],
            children: KeptFiles::new(crate::sys::limits::files_a_sampler_may_keep()),
            found: HashSet::new(),
        }
    }

    /// CPU seconds of the tree: the root and its live children to the nanosecond (their
    /// schedstat run time; each is single-threaded), and the children it has reaped to the tick.
    pub fn cpu_seconds(&mut self) -> Option<f64> {
        self.read(true)
    }

    /// As `cpu_seconds`, but a child is read only from the second reading that finds it on.
    /// Most backends of a connection-per-request step live a few milliseconds, and opening
    /// the files of every new one at every sample was most of the sampler's CPU. A child left
    /// unread counts when it is reaped, or at the next reading, with all its CPU so far: its
    /// CPU may land one window late, never lost or counted twice, and a reading with
    /// `cpu_seconds` (a step's edges) reads every child.
    pub fn cpu_seconds_of_settled(&mut self) -> Option<f64> {
        self.read(false)
    }

    fn read(&mut self, every_child: bool) -> Option<f64> {
        let [stat, schedstat, children] = &mut self.root_files;
        let times = StatTimes::parse(stat.read()?)?;
        let ticks = ticks_per_second();
        let reaped = times.reaped_seconds(ticks);
        let own = schedstat
            .read()
            .and_then(parse_run_seconds)
            .unwrap_or_else(|| times.own_seconds(ticks));
        let children: HashSet<u32> = children
            .read()
            .map(crate::sys::procfs::parse_children)
            .unwrap_or_default()
            .into_iter()
            .collect();
        self.children.keep_only(&children);
        let to_read: Vec<u32> = children
            .iter()
            .copied()
            .filter(|child| every_child || self.found.contains(child))
            .collect();
        self.found = children;
        let live: f64 = to_read
            .into_iter()
            .filter_map(|child| {
                self.child_run_seconds(child).or_else(|| {
                    let stat = fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
                    StatTimes::parse(&stat).map(|times| times.own_seconds(ticks))
                })
            })
            .sum();
        Some(own + reaped + live)
    }

    fn child_run_seconds(&mut self, pid: u32) -> Option<f64> {
        self.children
            .read(pid, || format!("/proc/{pid}/schedstat"), parse_run_seconds)
    }
}

/// The first field of a schedstat text (ns), in seconds.
fn parse_run_seconds(schedstat: &str) -> Option<f64> {
    let ns: u64 = schedstat.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 / 1e9)
}

/// A thread's time running and waiting on a run queue (the first two fields of
/// /proc/PID/schedstat, in ns), in seconds: the time it was runnable.
pub fn runnable_seconds(pid: u32) -> Option<f64> {
    parse_runnable_seconds(&fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
}

/// The sum of the first two fields of a schedstat text (ns), in seconds.
fn parse_runnable_seconds(schedstat: &str) -> Option<f64> {
    let mut fields = schedstat.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (run, wait) = (fields.next()??, fields.next()??);
    Some((run + wait) as f64 / 1e9)
}

/// The time fields of /proc/PID/stat.
#[derive(Debug, PartialEq, Eq)]
struct StatTimes {
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

impl StatTimes {
    /// The process's own CPU seconds, to the tick.
    fn own_seconds(&self, ticks_per_second: f64) -> f64 {
        (self.utime + self.stime) as f64 / ticks_per_second
    }

    /// The CPU seconds of the children it has reaped, to the tick.
    fn reaped_seconds(&self, ticks_per_second: f64) -> f64 {
        (self.cutime + self.cstime) as f64 / ticks_per_second
    }

    fn parse(stat: &str) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // after_name starts at field 3 (state); utime is field 14.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(StatTimes {
            utime: field(14)?,
            stime: field(15)?,
            cutime: field(16)?,
            cstime: field(17)?,
        })
    }
}

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
