//! How long this process's threads waited for a CPU: the kernel's run-queue wait, the second
//! field of /proc/<tid>/schedstat, in nanoseconds since each thread started.
//!
//! A thread's count is gone when the thread ends, so a thread that ends within a step (a burst
//! request's) adds its own to `ENDED` as it ends; threads that outlive the step (pool workers,
//! the samplers, the main thread) are read from /proc/self/task at the step's edges.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::procfs::KeptFiles;

/// Run-queue wait of the threads that have ended, in nanoseconds.
static ENDED: AtomicU64 = AtomicU64::new(0);

/// The run-queue wait in a schedstat text (`run_ns wait_ns timeslices`).
pub fn parse_wait_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// The calling thread's run-queue wait so far.
pub fn this_thread_wait_ns() -> Option<u64> {
    parse_wait_ns(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// Called by a thread that is about to end: its wait stays counted in the process's.
pub fn count_thread_end() {
    if let Some(wait) = this_thread_wait_ns() {
        ENDED.fetch_add(wait, Ordering::Relaxed);
    }
}

/// The run-queue wait of every thread of this process so far: the live ones and those that
/// counted themselves as they ended. Each live thread's schedstat file stays open between
/// readings (the request threads live from step to step, hundreds of them).
#[derive(Debug)]
pub struct ProcessWait {
    threads: KeptFiles,
}

impl Default for ProcessWait {
    fn default() -> Self {
        ProcessWait {
            threads: KeptFiles::new(crate::sys::limits::files_a_sampler_may_keep()),
        }
    }
}

impl ProcessWait {
    /// None where the kernel keeps no schedstat.
    pub fn wait_ns(&mut self) -> Option<u64> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        let live_threads: HashSet<u32> = tasks
            .flatten()
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect();
        self.threads.keep_only(&live_threads);
        let mut live = 0u64;
        let mut read_any = false;
        for &tid in &live_threads {
            let path = || format!("/proc/self/task/{tid}/schedstat");
            if let Some(wait) = self.threads.read(tid, path, parse_wait_ns) {
                live += wait;
                read_any = true;
            }
        }
        read_any.then(|| live + ENDED.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_the_second_field() {
        assert_eq!(parse_wait_ns("123456 7890 12\n"), Some(7890));
        assert_eq!(parse_wait_ns("123456"), None);
        assert_eq!(parse_wait_ns(""), None);
    }

    #[test]
    fn an_ended_thread_stays_counted() {
        assert!(
            ProcessWait::default().wait_ns().is_some(),
            "schedstat on Linux"
        );
        // The count of ended threads, not the whole process's: other tests' threads end
        // uncounted meanwhile, so the live sum may drop.
        let before = ENDED.load(Ordering::Relaxed);
        let own = std::thread::spawn(|| {
            let own = this_thread_wait_ns().expect("schedstat on Linux");
            count_thread_end();
            own
        })
        .join()
        .unwrap();
        assert!(ENDED.load(Ordering::Relaxed) >= before + own);
    }
}
