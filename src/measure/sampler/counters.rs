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

use crate::sys::procfs::KeptFiles;

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
    pub fn read() -> Option<Self> {
        let text = fs::read_to_string("/proc/stat").ok()?;
        Self::parse(text.lines().next()?)
    }

    /// The CPUs in `cpus` together, from their `cpuN` lines of /proc/stat.
    pub fn read_cpus(cpus: &[usize]) -> Option<Self> {
        let text = fs::read_to_string("/proc/stat").ok()?;
        Self::sum_of(&text, cpus)
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
    root: u32,
    children: KeptFiles,
    /// The children the last reading found.
    found: HashSet<u32>,
}

impl ProcessTree {
    pub fn new(root: u32) -> Self {
        ProcessTree {
            root,
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
        let root = self.root;
        let stat = fs::read_to_string(format!("/proc/{root}/stat")).ok()?;
        let times = StatTimes::parse(&stat)?;
        let ticks = ticks_per_second();
        let reaped = times.reaped_seconds(ticks);
        let own = run_seconds(root).unwrap_or_else(|| times.own_seconds(ticks));
        let children: HashSet<u32> = crate::sys::procfs::children(root).into_iter().collect();
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

/// A single-threaded process's run time from /proc/PID/schedstat (its first field, in ns).
fn run_seconds(pid: u32) -> Option<f64> {
    parse_run_seconds(&fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
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
mod tests {
    use super::*;

    #[test]
    fn host_line_counts_idle_and_iowait_as_idle() {
        let ticks = HostTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        assert_eq!(
            ticks,
            HostTicks {
                busy: 150,
                total: 1000
            }
        );
        let later = HostTicks {
            busy: 250,
            total: 1200,
        };
        assert_eq!(later.percent_since(&ticks), Some(50.0));
    }

    #[test]
    fn host_share_needs_time_to_pass_and_counters_that_grew() {
        let earlier = HostTicks {
            busy: 100,
            total: 1000,
        };
        assert_eq!(earlier.percent_since(&earlier), None);
        let later = HostTicks {
            busy: 175,
            total: 1100,
        };
        assert_eq!(later.percent_since(&earlier), Some(75.0));
        assert_eq!(earlier.percent_since(&later), None, "a counter went back");
        let busy_back = HostTicks {
            busy: 50,
            total: 2000,
        };
        assert_eq!(busy_back.percent_since(&earlier), None);
    }

    #[test]
    fn host_line_needs_five_numbers_and_reads_eight() {
        assert_eq!(
            HostTicks::parse("cpu 1 2 3 4 5"),
            Some(HostTicks { busy: 6, total: 15 })
        );
        assert_eq!(HostTicks::parse("cpu 1 2 3 4"), None);
        assert_eq!(HostTicks::parse("cpu 1 2 x 4 5"), None);
        // guest and guest_nice (fields 9 and 10) are already in user and nice.
        assert_eq!(
            HostTicks::parse("cpu 1 1 1 1 1 1 1 1 100 100").map(|t| t.total),
            Some(8)
        );
    }

    #[test]
    fn clock_ticks_are_user_hz() {
        assert_eq!(ticks_per_second(), 100.0);
    }

    #[test]
    fn the_client_cpus_are_summed_from_their_own_lines() {
        let stat = "cpu  9 9 9 9 9\ncpu0 10 0 0 90 0\ncpu1 50 0 0 50 0\ncpu2 1 0 0 1 0\n";
        assert_eq!(
            HostTicks::sum_of(stat, &[0, 1]),
            Some(HostTicks {
                busy: 60,
                total: 200
            })
        );
        assert_eq!(HostTicks::sum_of(stat, &[7]), None);
    }

    #[test]
    fn per_core_line_is_not_the_host_line() {
        assert_eq!(HostTicks::parse("cpu0 1 2 3 4 5"), None);
    }

    #[test]
    fn stat_times_survive_odd_command_names() {
        let stat = "42 (post gres) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0";
        assert_eq!(
            StatTimes::parse(stat),
            Some(StatTimes {
                utime: 7,
                stime: 3,
                cutime: 11,
                cstime: 13
            })
        );
    }

    /// This process's user and system time from getrusage, which counts every thread too.
    fn rusage_seconds() -> f64 {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        seconds(usage.user_time()) + seconds(usage.system_time())
    }

    #[test]
    fn own_cpu_is_the_processs_whole_cpu_time() {
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        // Read between two readings of the same counter: within a tick of them.
        let before = own_cpu_seconds().unwrap();
        let usage = rusage_seconds();
        let after = own_cpu_seconds().unwrap();
        assert!(
            before - 0.011 <= usage && usage <= after + 0.011,
            "{before} {usage} {after}"
        );
        assert!(before > 0.001 && before <= after, "{before} {after}");
    }

    fn field(path: &str, n: usize) -> f64 {
        let text = fs::read_to_string(path).unwrap();
        text.split_whitespace().nth(n).unwrap().parse().unwrap()
    }

    #[test]
    fn a_servers_cpu_is_its_own_its_live_childrens_and_its_reaped_ones() {
        // A "postmaster" that reaped a busy child and now waits on two sleeping ones: all of
        // them stand still, so the counters read the same however long the reads take.
        let mut shell = std::process::Command::new("sh")
            .args([
                "-c",
                "(i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done); sleep 60 & sleep 60 & wait",
            ])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let children_file = format!("/proc/{pid}/task/{pid}/children");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let children = loop {
            let list = fs::read_to_string(&children_file).unwrap_or_default();
            let children: Vec<u32> = list
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            let sleeping = |c: &u32| {
                fs::read_to_string(format!("/proc/{c}/stat")).is_ok_and(|s| s.contains(" S "))
            };
            let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            if children.len() == 2 && children.iter().all(sleeping) && state.contains(") S ") {
                break children;
            }
            assert!(std::time::Instant::now() < deadline, "{list} {state}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let times = StatTimes::parse(&stat).unwrap();
        let reaped = (times.cutime + times.cstime) as f64 / 100.0;
        let own = field(&format!("/proc/{pid}/schedstat"), 0) / 1e9;
        let live: f64 = children
            .iter()
            .map(|c| field(&format!("/proc/{c}/schedstat"), 0) / 1e9)
            .sum();
        let seconds = ProcessTree::new(pid).cpu_seconds();
        let _ = shell.kill();
        for child in children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = shell.wait();
        assert!(
            reaped > 0.0 && own > 0.0 && live > 0.0,
            "{reaped} {own} {live}"
        );
        let expected = own + reaped + live;
        assert!(
            seconds.is_some_and(|s| (s - expected).abs() < 1e-9),
            "{seconds:?}, expected {own} + {reaped} + {live}"
        );
        assert_eq!(run_seconds(pid), None, "gone");
    }

    #[test]
    fn a_child_is_read_from_the_second_settled_reading_on_and_at_once_by_a_full_one() {
        // A shell waiting on a sleeping child: every counter stands still between the reads.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let child = loop {
            let sleeping = |p: u32| {
                fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.contains(") S "))
            };
            let children = crate::sys::procfs::children(pid);
            if let [child] = children[..]
                && sleeping(child)
                && sleeping(pid)
                && fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default()
                    == "sleep\n"
            {
                break child;
            }
            assert!(std::time::Instant::now() < deadline, "no sleeping child");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut tree = ProcessTree::new(pid);
        let first = tree.cpu_seconds_of_settled().unwrap();
        let second = tree.cpu_seconds_of_settled().unwrap();
        let full = ProcessTree::new(pid).cpu_seconds().unwrap();
        let live = field(&format!("/proc/{child}/schedstat"), 0) / 1e9;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(live > 0.0);
        assert!(
            (second - first - live).abs() < 1e-9,
            "first {first}, second {second}, the child {live}"
        );
        assert!((full - second).abs() < 1e-9, "full {full}, second {second}");
    }

    #[test]
    fn the_client_cpus_are_read_from_proc_stat() {
        let first = HostTicks::read_cpus(&[0]).unwrap();
        let stat = fs::read_to_string("/proc/stat").unwrap();
        let later = HostTicks::sum_of(&stat, &[0]).unwrap();
        assert!(first.total > 0 && first.busy <= first.total, "{first:?}");
        assert!(first.total <= later.total && first.busy <= later.busy);
        assert_eq!(HostTicks::read_cpus(&[usize::MAX]), None);
    }

    #[test]
    fn own_process_has_cpu_time() {
        let mut spin = 0u64;
        for i in 0..5_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        assert!(own_cpu_seconds().unwrap() > 0.0);
        assert!(ProcessTree::new(std::process::id()).cpu_seconds().unwrap() > 0.0);
    }

    #[test]
    fn a_childs_file_is_kept_open_read_again_and_let_go_when_it_ends() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & wait; exec sleep 60"])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let child = loop {
            if let Some(&child) = crate::sys::procfs::children(pid).first() {
                break child;
            }
            assert!(std::time::Instant::now() < deadline, "no child");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut tree = ProcessTree::new(pid);
        assert!(tree.cpu_seconds().is_some());
        assert_eq!(tree.children.len(), 1);
        let through_file = tree.child_run_seconds(child).unwrap();
        assert_eq!(
            through_file,
            field(&format!("/proc/{child}/schedstat"), 0) / 1e9,
            "the kept file reads what a fresh open reads"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !tree.children.is_empty() {
            assert!(tree.cpu_seconds().is_some());
            assert!(std::time::Instant::now() < deadline, "the file was kept");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(tree.child_run_seconds(child), None, "gone");
        let _ = shell.kill();
        let _ = shell.wait();
    }

    #[test]
    fn stat_times_give_own_and_reaped_seconds_and_schedstat_the_runnable_ones() {
        let times = StatTimes {
            utime: 150,
            stime: 50,
            cutime: 300,
            cstime: 100,
        };
        assert_eq!(times.own_seconds(100.0), 2.0);
        assert_eq!(times.reaped_seconds(100.0), 4.0);
        assert_eq!(times.own_seconds(50.0), 4.0);
        assert_eq!(
            parse_runnable_seconds("2000000000 500000000 7\n"),
            Some(2.5)
        );
        assert_eq!(parse_run_seconds("2000000000 500000000 7\n"), Some(2.0));
        assert_eq!(parse_runnable_seconds("2000000000"), None);
        // A sleeping process's counters stand still: read through the function and by hand.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let by_hand = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
        let runnable = runnable_seconds(pid);
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(runnable, parse_runnable_seconds(&by_hand));
        assert!(runnable.is_some_and(|seconds| seconds > 0.0 && seconds < 1.0));
    }
}
