//! Resource limits that bound how many requests this process can have open at once.

/// The most threads this process may hope to run at once, and the setting that says so: the
/// lowest of RLIMIT_NPROC, the kernel's threads-max and pid_max (every thread takes a pid), and
/// the cgroup's pids.max. An upper bound, since other processes count too.
pub fn thread_limit() -> (u64, &'static str) {
    let rlimit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .map(|(soft, _)| soft)
        .ok();
    lowest([
        (rlimit, "the process's RLIMIT_NPROC (ulimit -u)"),
        (
            read_number("/proc/sys/kernel/threads-max"),
            "kernel.threads-max",
        ),
        (read_number("/proc/sys/kernel/pid_max"), "kernel.pid_max"),
        (
            read_number("/sys/fs/cgroup/pids.max"),
            "the cgroup's pids.max",
        ),
    ])
}

/// Whether this process holds CAP_SYS_RESOURCE, without which even root cannot raise a hard
/// limit (a container often drops it): bit 24 of CapEff in /proc/self/status.
fn may_raise_hard_limits() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    (status.lines())
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The threads this process may still start, and the setting that bounds them: each limit of
/// `thread_limit` less what already counts against it (the machine's threads for
/// `kernel.threads-max` and `kernel.pid_max`, the cgroup's pids, the user's threads for
/// RLIMIT_NPROC, which root is not held to).
pub fn thread_room() -> (u64, &'static str) {
    let machine = threads_on_machine().unwrap_or(0);
    let room = |limit: Option<u64>, used: u64| limit.map(|limit| limit.saturating_sub(used));
    let nproc = match nix::unistd::getuid().is_root() {
        true => None,
        false => nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
            .ok()
            .filter(|(soft, _)| *soft != nix::sys::resource::RLIM_INFINITY)
            .map(|(soft, _)| soft.saturating_sub(threads_of_this_user())),
    };
    lowest([
        (nproc, "the process's RLIMIT_NPROC (ulimit -u)"),
        (
            room(read_number("/proc/sys/kernel/threads-max"), machine),
            "kernel.threads-max",
        ),
        (
            room(read_number("/proc/sys/kernel/pid_max"), machine),
            "kernel.pid_max",
        ),
        (
            room(
                read_number("/sys/fs/cgroup/pids.max"),
                read_number("/sys/fs/cgroup/pids.current").unwrap_or(0),
            ),
            "the cgroup's pids.max",
        ),
    ])
}

/// Every thread on the machine now: the last figure of /proc/loadavg's "running/total".
fn threads_on_machine() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = text.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

/// The threads of every process of this process's real user, which RLIMIT_NPROC counts.
fn threads_of_this_user() -> u64 {
    let uid = nix::unistd::getuid().as_raw().to_string();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    processes
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("status")).ok())
        .filter(|status| {
            let real = |line: &str| {
                line.strip_prefix("Uid:")
                    .and_then(|ids| ids.split_whitespace().next().map(str::to_owned))
            };
            status
                .lines()
                .find_map(real)
                .is_some_and(|real| real == uid)
        })
        .filter_map(|status| {
            let line = status.lines().find(|line| line.starts_with("Threads:"))?;
            line["Threads:".len()..].trim().parse::<u64>().ok()
        })
        .sum()
}

/// A process's open-file limit (the soft one), from /proc/PID/limits; None when unreadable
/// or unlimited.
pub fn open_files_of(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The lowest of the limits known, with its name; unlimited when none is.
fn lowest<const N: usize>(limits: [(Option<u64>, &'static str); N]) -> (u64, &'static str) {
    limits
        .into_iter()
        .filter_map(|(value, name)| Some((value?, name)))
        .min_by_key(|(value, _)| *value)
        .unwrap_or((u64::MAX, "none"))
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
}

/// How many local ports the kernel hands out to outgoing connections
/// (`net.ipv4.ip_local_port_range`): the most connections one source address holds to one
/// server address at once.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    ports_in(&text)
}

fn ports_in(range: &str) -> Option<u64> {
    let mut bounds = range.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    (high >= low).then(|| high - low + 1)
}

/// The open-file limit to give a child process (a throwaway PgBouncer) that may hold `need`
/// descriptors, and the setting that stands in the way when it cannot have them all: a
/// process with CAP_SYS_RESOURCE (root, outside a container that drops it) may raise a
/// child's limit up to `fs.nr_open`, others up to their own hard limit. Never below the limit
/// the child would inherit.
pub fn open_files_for_child(need: u64) -> (u64, Option<&'static str>) {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
    let (ceiling, setting) = match may_raise_hard_limits() {
        true => (
            read_number("/proc/sys/fs/nr_open").unwrap_or(hard),
            "fs.nr_open",
        ),
        false => (hard, "the hard open-file limit (ulimit -Hn)"),
    };
    let want = need.max(soft);
    match want <= ceiling {
        true => (want, None),
        false => (ceiling.max(soft), Some(setting)),
    }
}

/// Open files each `postgres` crate connection holds: its socket, and the epoll and eventfd
/// of the runtime the blocking client runs under.
pub const FILES_PER_CONNECTION: u64 = 3;

/// Raises this process's open-file limit to its hard limit (connections are files) and
/// returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => u64::MAX,
    }
}

/// How many /proc files a sampler may keep open (`procfs::KeptFiles`): a sixteenth of the
/// open-file limit in force, at most 1,024; the rest is for the steps' connections.
pub fn files_a_sampler_may_keep() -> usize {
    usize::try_from(open_files_limit() / 16)
        .unwrap_or(usize::MAX)
        .min(1024)
}

/// The open-file limit in force (the soft one); 0 when it cannot be read.
fn open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit};
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

/// Descriptors kept for pgstress's own outputs: the summary's temporary file, a chart or a
/// report page, a log, written after a step whatever the step did to the open-file limit.
/// Each is written and closed before the next; a sampler's /proc file besides; 16 is ample.
pub const KEPT_FOR_OUTPUTS: u64 = 16;

/// The lowest descriptor number kept for pgstress's own outputs (`KEPT_FOR_OUTPUTS` below the
/// open-file limit in force). The kernel gives a new descriptor the lowest free number, so a
/// descriptor held between steps only when its number is below this one leaves the outputs
/// theirs: what a step opened beyond it is closed by the step's end.
pub fn first_kept_for_outputs() -> i32 {
    i32::try_from(open_files_limit().saturating_sub(KEPT_FOR_OUTPUTS)).unwrap_or(i32::MAX)
}

/// Whether every descriptor kept for pgstress's own outputs is free now. Checked right after
/// opening a connection kept from step to step, whose descriptors cannot all be named (the
/// `postgres` crate's runtime opens its own): with the outputs' numbers all free, every
/// descriptor open now, the new connection's included, lies below them. A transient one of
/// another thread may make it say no when keeping would have been safe, never the reverse.
pub fn outputs_untouched() -> bool {
    let limit = i32::try_from(open_files_limit()).unwrap_or(i32::MAX);
    none_open(first_kept_for_outputs()..limit)
}

/// Whether no descriptor numbered in `numbers` is open.
fn none_open(numbers: std::ops::Range<i32>) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags, and fails on one not open.
    numbers
        .into_iter()
        .all(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1)
}

/// Grows this process's table of file descriptors to hold `more` beyond those open now, ahead
/// of a step that opens them. The kernel grows the table by doubling as descriptors are taken,
/// and in a process of many threads each growth waits for every CPU to pass a quiescent state
/// while the threads that need a descriptor wait for it: in a burst, right after its release.
/// A table never shrinks, so only the first step of a size pays. Best effort: capped at the
/// open-file limit, and nothing when the system refuses.
pub fn reserve_descriptors(more: usize) {
    use nix::fcntl::{FcntlArg, fcntl};
    use std::os::fd::AsRawFd;
    let Ok(probe) = std::fs::File::open("/dev/null") else {
        return;
    };
    // New descriptors take the lowest free numbers, and the probe just took the lowest.
    let lowest_free = probe.as_raw_fd();
    let highest = i32::try_from(open_files_limit().saturating_sub(1)).unwrap_or(i32::MAX);
    let want = lowest_free
        .saturating_add(i32::try_from(more).unwrap_or(i32::MAX))
        .min(highest);
    if want > lowest_free
        && let Ok(far) = fcntl(&probe, FcntlArg::F_DUPFD_CLOEXEC(want))
    {
        let _ = nix::unistd::close(far);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lowest_known_limit_is_named() {
        let limit = super::lowest([
            (Some(4_000), "a"),
            (None, "b"),
            (Some(3_000), "kernel.pid_max"),
        ]);
        assert_eq!(limit, (3_000, "kernel.pid_max"));
        assert_eq!(super::lowest([(None, "a")]), (u64::MAX, "none"));
    }

    #[test]
    fn a_child_gets_the_files_it_needs_up_to_what_this_process_may_grant() {
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(
            super::open_files_for_child(0),
            (soft, None),
            "never lowered"
        );
        let (limit, short) = super::open_files_for_child(u64::MAX);
        assert!(limit >= soft && limit < u64::MAX, "{limit}");
        let named = ["fs.nr_open", "the hard open-file limit (ulimit -Hn)"];
        assert!(short.is_some_and(|s| named.contains(&s)), "{short:?}");
    }

    #[test]
    fn the_room_for_threads_is_below_the_limit_and_counts_those_running() {
        let (limit, _) = super::thread_limit();
        let (room, setting) = super::thread_room();
        assert!(room < limit, "{room} of {limit} ({setting})");
        assert!(super::threads_on_machine().is_some_and(|n| n > 1));
        assert!(super::threads_of_this_user() >= 1);
        let me = super::open_files_of(std::process::id());
        assert_eq!(me, Some(super::open_files_limit()));
    }

    #[test]
    fn the_ephemeral_range_counts_both_ends() {
        assert_eq!(super::ports_in("32768\t60999\n"), Some(28_232));
        assert_eq!(super::ports_in("5 4"), None);
        assert_eq!(super::ports_in("x"), None);
        assert!(super::ephemeral_ports().is_some_and(|n| n > 0));
    }

    use super::*;

    /// Held by the tests that change this process's open-file limit, which is the whole
    /// test binary's.
    static LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The size of this process's descriptor table (FDSize in /proc/self/status).
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one_and_a_sixteenth_is_for_samplers() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let _limit = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // A soft limit below the hard one, as a login shell often has (and a sixteenth of it
        // under the cap of 1,024).
        let lowered = hard.min(8000) / 2;
        setrlimit(Resource::RLIMIT_NOFILE, lowered, hard).unwrap();
        assert_eq!(
            files_a_sampler_may_keep(),
            usize::try_from(lowered / 16).unwrap()
        );
        assert_eq!(raise_open_files_limit(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
        assert_eq!(raise_open_files_limit(), hard, "already raised");
        let expected = usize::try_from(hard / 16).unwrap().min(1024);
        assert_eq!(files_a_sampler_may_keep(), expected);
    }

    #[test]
    fn reserving_descriptors_grows_the_table_ahead_and_opens_nothing() {
        let _limit = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        raise_open_files_limit();
        let before = table_size();
        reserve_descriptors(before + 1000);
        assert!(
            table_size() >= before + 1000,
            "{before} -> {}",
            table_size()
        );
        // The far descriptor that grew the table is closed again (other tests of this binary
        // may hold a few low ones).
        let highest_open = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .max()
            .unwrap();
        assert!(
            highest_open < before + 500,
            "descriptor {highest_open} is open"
        );
    }

    #[test]
    fn the_outputs_descriptors_are_seen_taken_and_free_again() {
        use nix::fcntl::{FcntlArg, fcntl};
        let _limit = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        raise_open_files_limit();
        let file = std::fs::File::open("/dev/null").unwrap();
        // Far above what this test binary holds: a number in a band nothing else touches.
        let far = fcntl(&file, FcntlArg::F_DUPFD_CLOEXEC(1500)).unwrap();
        assert!(!none_open(far..far + 16), "{far} is open");
        assert!(none_open(far + 1..far + 17));
        nix::unistd::close(far).unwrap();
        assert!(none_open(far..far + 16));
    }
}
