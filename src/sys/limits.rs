//! Resource limits that bound how many requests this process can have open at once.

/// The most threads this process may hope to run at once: the lowest of RLIMIT_NPROC, the
/// kernel's threads-max and the cgroup's pids.max. An upper bound, since other processes count too.
pub fn thread_limit() -> u64 {
    let rlimit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
        .map(|(soft, _)| soft)
        .unwrap_or(u64::MAX);
    let read_number = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    [
        Some(rlimit),
        read_number("/proc/sys/kernel/threads-max"),
        read_number("/sys/fs/cgroup/pids.max"),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(u64::MAX)
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
    use nix::sys::resource::{Resource, getrlimit};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    usize::try_from(soft / 16).unwrap_or(usize::MAX).min(1024)
}
