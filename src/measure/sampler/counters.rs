//! Cumulative CPU counters read from the kernel. Percentages come from the difference of two
//! readings, so a sample covers exactly the time since the previous one.
//!
//! Why not sysinfo's percentages for everything: sysinfo skips host CPU refreshes closer than
//! 200 ms (its MINIMUM_CPU_UPDATE_INTERVAL), which would repeat stale values at the default
//! 100 ms interval; and it only sees processes alive at both refreshes, while a backend of a
//! connection-per-request load lives a few milliseconds. The postmaster's cutime/cstime
//! account for every backend it has reaped, so the server's CPU is complete.

use std::fs;

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

/// CPU seconds used by a process; with `children`, also by every child it has reaped and every
/// child still alive (the postmaster and all its backends).
pub fn process_cpu_seconds(pid: u32, children: bool) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let times = StatTimes::parse(&stat)?;
    let mut ticks = times.utime + times.stime;
    if children {
        ticks += times.cutime + times.cstime;
        let list =
            fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in list.split_whitespace() {
            let child_stat = fs::read_to_string(format!("/proc/{child}/stat")).ok();
            if let Some(child) = child_stat.as_deref().and_then(StatTimes::parse) {
                ticks += child.utime + child.stime;
            }
        }
    }
    Some(ticks as f64 / ticks_per_second())
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

    /// CPU seconds of this process's reaped children, as the kernel counts them.
    fn reaped_children_seconds() -> f64 {
        rusage_seconds(libc::RUSAGE_CHILDREN)
    }

    fn rusage_seconds(who: libc::c_int) -> f64 {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        unsafe { libc::getrusage(who, usage.as_mut_ptr()) };
        // SAFETY: zeroed, then filled by the kernel.
        let usage = unsafe { usage.assume_init() };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    #[test]
    fn a_parent_counts_the_cpu_of_the_children_it_reaped() {
        let me = std::process::id();
        let own = || process_cpu_seconds(me, false).unwrap();
        let all = || process_cpu_seconds(me, true).unwrap();
        let (own_before, all_before, kernel_before) = (own(), all(), reaped_children_seconds());
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        let children = reaped_children_seconds() - kernel_before;
        assert!(children >= 0.05, "the child burnt {children} s");
        let counted = (all() - all_before) - (own() - own_before);
        // Ticks are hundredths of a second; other tests may reap children meanwhile.
        assert!(
            counted >= children - 0.03,
            "counted {counted} s of {children} s"
        );
        assert!(own() <= all());
    }

    #[test]
    fn own_process_has_cpu_time() {
        let mut spin = 0u64;
        for i in 0..5_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        assert!(spin > 0);
        let counted = process_cpu_seconds(std::process::id(), false).unwrap();
        let kernel = rusage_seconds(libc::RUSAGE_SELF);
        // Ticks are hundredths of a second, and threads of other tests run meanwhile.
        assert!(
            (counted - kernel).abs() < 0.2 * kernel.max(1.0),
            "{counted} s counted, {kernel} s by getrusage"
        );
    }
}
