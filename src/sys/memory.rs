//! Resident memory read from /proc: this process's, another's, and a server's backends' own.

/// A process's resident set in KiB (VmRSS), None when it cannot be read (gone, not ours).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&read_status(pid)?, "VmRSS:")
}

/// This process's resident set in KiB.
pub fn own_rss_kib() -> Option<u64> {
    rss_kib(std::process::id())
}

/// The memory a process has to itself, in KiB: the resident pages no other process maps
/// (Private_Clean and Private_Dirty of /proc/PID/smaps_rollup, its unique set) and its page
/// tables (VmPTE). A backend's shared buffers, and the pages it still shares with the
/// postmaster it was forked from (which RssAnon would count in every backend), are left out.
pub fn own_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let private = status_kib(&rollup, "Private_Clean:")? + status_kib(&rollup, "Private_Dirty:")?;
    let tables = read_status(pid).and_then(|status| status_kib(&status, "VmPTE:"));
    Some(private + tables.unwrap_or(0))
}

/// The children of a server's postmaster and each one's own memory (`own_kib`): its backends
/// and its background processes.
pub fn children_own_kib(postmaster: u32) -> Vec<u64> {
    crate::sys::procfs::children(postmaster)
        .into_iter()
        .filter_map(own_kib)
        .collect()
}

/// Memory maps each thread of this process costs: its stack and guard page, and the signal
/// stack and guard page Rust's runtime gives it (4,090 maps for 1,004 threads, measured).
pub const MAPS_PER_THREAD: u64 = 4;

/// How many more memory maps this process may make before `vm.max_map_count`: past it a new
/// thread's stack cannot be mapped, and a thread started without its signal stack aborts the
/// process. None when either cannot be read.
pub fn maps_left() -> Option<u64> {
    let limit: u64 = (std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?)
        .trim()
        .parse()
        .ok()?;
    let used = std::fs::read_to_string("/proc/self/maps")
        .ok()?
        .lines()
        .count() as u64;
    Some(limit.saturating_sub(used))
}

fn read_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The value of a `Key:   123 kB` line of /proc/PID/status or smaps_rollup.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_reads_as_kib_and_this_process_has_memory() {
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nRssAnon:\t 1000 kB\nVmPTE:\t 24 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        assert!(own_rss_kib().is_some_and(|kib| kib > 0));
        assert!(own_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert!(maps_left().is_some_and(|left| left > 0));
    }
}
