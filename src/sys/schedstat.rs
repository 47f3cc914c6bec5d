//! How long this process's threads waited for a CPU: the kernel's run-queue wait, the second
//! field of /proc/<tid>/schedstat, in nanoseconds since each thread started.
//!
//! Listing /proc/self/task and reading every thread's file at each step's edges cost a
//! millisecond or more an edge with hundreds of request threads (most of the CPU sampler's
//! time), so the count is kept two ways:
//! - a request thread publishes its own wait (`publish_own_wait`) before it hands over its
//!   result, so a step's end edge finds the step's waits counted; what it waits for after that
//!   (making its next socket) counts in the next step;
//! - a thread that outlives the steps and runs between edges (the main thread, the samplers, a
//!   pool's workers) is watched (`watch_this_thread`): its file is read at every edge until it
//!   ends, when its wait is published.
//!
//! Threads that do neither (short setup threads) are not counted. A thread's file stays open
//! while the budget of a sampler's kept files allows (`limits::files_a_sampler_may_keep`):
//! past it, as in a step of thousands of threads, it is opened for each read, so that the
//! descriptors go to the connections.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

/// Run-queue wait published by the threads themselves, in nanoseconds: the request threads'
/// so far, and the whole wait of watched threads that have ended.
static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// The watched threads' schedstat files, read at every edge.
static WATCHED: Mutex<Vec<Arc<ThreadFile>>> = Mutex::new(Vec::new());

/// Threads' schedstat files kept open now, across the process.
static KEPT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The calling thread's schedstat file and the wait it published last.
    static OWN: RefCell<Option<(ThreadFile, u64)>> = const { RefCell::new(None) };
}

/// The run-queue wait in a schedstat text (`run_ns wait_ns timeslices`).
pub fn parse_wait_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().nth(1)?.parse().ok()
}

/// The wait in a schedstat file, read from its start.
fn read_wait_ns(file: &File) -> Option<u64> {
    let mut buf = [0u8; 128];
    let len = file.read_at(&mut buf, 0).ok()?;
    parse_wait_ns(std::str::from_utf8(&buf[..len]).ok()?)
}

/// How many threads' files may stay open: the budget of a sampler's kept files, so that a
/// step of thousands of threads keeps its descriptors for its connections.
fn budget() -> usize {
    static BUDGET: OnceLock<usize> = OnceLock::new();
    *BUDGET.get_or_init(crate::sys::limits::files_a_sampler_may_keep)
}

/// A thread's schedstat file: kept open while the budget allows (a read is then one `pread`),
/// otherwise opened for each read.
enum ThreadFile {
    Kept(File),
    Path(String),
}

impl ThreadFile {
    fn of_this_thread() -> ThreadFile {
        let tid = nix::unistd::gettid().as_raw();
        let path = format!("/proc/self/task/{tid}/schedstat");
        if KEPT.fetch_add(1, Ordering::Relaxed) < budget()
            && let Ok(file) = File::open(&path)
        {
            return ThreadFile::Kept(file);
        }
        KEPT.fetch_sub(1, Ordering::Relaxed);
        ThreadFile::Path(path)
    }

    fn wait_ns(&self) -> Option<u64> {
        match self {
            ThreadFile::Kept(file) => read_wait_ns(file),
            ThreadFile::Path(path) => read_wait_ns(&File::open(path).ok()?),
        }
    }
}

impl Drop for ThreadFile {
    fn drop(&mut self) {
        if let ThreadFile::Kept(_) = self {
            KEPT.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Whether the kernel keeps schedstat (it may be built without).
fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        File::open("/proc/thread-self/schedstat")
            .ok()
            .as_ref()
            .and_then(read_wait_ns)
            .is_some()
    })
}

fn watched() -> MutexGuard<'static, Vec<Arc<ThreadFile>>> {
    WATCHED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Adds the calling thread's run-queue wait since its previous call to the published count.
/// A thread that runs requests calls it before handing over each result, and once more as it
/// ends.
pub fn publish_own_wait() {
    OWN.with(|own| {
        let mut own = own.borrow_mut();
        let (file, published) = own.get_or_insert_with(|| (ThreadFile::of_this_thread(), 0));
        if let Some(wait) = file.wait_ns() {
            PUBLISHED.fetch_add(wait.saturating_sub(*published), Ordering::Relaxed);
            *published = wait;
        }
    });
}

/// Keeps a thread's wait read at every edge while this lives; dropped (by the thread or not),
/// it publishes the thread's wait so far and stops reading it.
#[must_use = "the thread is watched only while this lives"]
pub struct Watched(Option<Arc<ThreadFile>>);

/// Watches the calling thread: one that outlives the steps and does not publish its own wait.
pub fn watch_this_thread() -> Watched {
    let file = Arc::new(ThreadFile::of_this_thread());
    watched().push(Arc::clone(&file));
    Watched(Some(file))
}

impl Drop for Watched {
    fn drop(&mut self) {
        let Some(file) = self.0.take() else {
            return;
        };
        // Under the lock, so that an edge reads the thread's wait either here or published,
        // never both and never neither.
        let mut watched = watched();
        watched.retain(|kept| !Arc::ptr_eq(kept, &file));
        if let Some(wait) = file.wait_ns() {
            PUBLISHED.fetch_add(wait, Ordering::Relaxed);
        }
    }
}

/// The run-queue wait of this process's threads so far: the watched ones read now, and what
/// the others published.
#[derive(Debug, Default)]
pub struct ProcessWait;

impl ProcessWait {
    /// None where the kernel keeps no schedstat.
    pub fn wait_ns(&mut self) -> Option<u64> {
        if !supported() {
            return None;
        }
        let watched = watched();
        let live: u64 = watched.iter().filter_map(|file| file.wait_ns()).sum();
        Some(live + PUBLISHED.load(Ordering::Relaxed))
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

    fn own_wait() -> u64 {
        ThreadFile::of_this_thread()
            .wait_ns()
            .expect("schedstat on Linux")
    }

    /// Keeps a CPU busy for a while, so that a thread has a chance to wait for one.
    fn spin() {
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
    }

    #[test]
    fn the_wait_is_read_from_the_start_of_a_kept_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schedstat");
        std::fs::write(&path, "123456 7890 12\n").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(read_wait_ns(&file), Some(7890));
        std::fs::write(&path, "1 2 3\n").unwrap();
        assert_eq!(read_wait_ns(&file), Some(2), "read again from the start");
    }

    #[test]
    fn kept_files_are_given_back_as_they_drop() {
        assert_eq!(budget(), crate::sys::limits::files_a_sampler_may_keep());
        // More than the budget, one at a time: each one dropped frees its place.
        for _ in 0..=budget() {
            drop(ThreadFile::of_this_thread());
        }
        assert!(matches!(ThreadFile::of_this_thread(), ThreadFile::Kept(_)));
    }

    #[test]
    fn a_thread_file_is_kept_within_the_budget_and_read_by_its_path_past_it() {
        let kept = ThreadFile::of_this_thread();
        assert!(
            matches!(kept, ThreadFile::Kept(_)),
            "a budget of {}",
            budget()
        );
        let tid = nix::unistd::gettid().as_raw();
        let by_path = ThreadFile::Path(format!("/proc/self/task/{tid}/schedstat"));
        let (first, second) = (kept.wait_ns().unwrap(), by_path.wait_ns().unwrap());
        assert!(first <= second, "the same thread's wait, read in turn");
        assert_eq!(
            ThreadFile::Path("/proc/self/task/0/schedstat".into()).wait_ns(),
            None
        );
    }

    #[test]
    fn a_thread_publishes_its_wait_once() {
        assert!(ProcessWait.wait_ns().is_some(), "schedstat on Linux");
        // Other tests' threads publish meanwhile: the count only grows by at least this one's.
        let before = PUBLISHED.load(Ordering::Relaxed);
        let own = std::thread::spawn(|| {
            spin();
            publish_own_wait();
            let first = PUBLISHED.load(Ordering::Relaxed);
            // A second call adds only what the thread waited since the first.
            publish_own_wait();
            let own = own_wait();
            (own, first)
        })
        .join()
        .unwrap();
        assert!(own.1 >= before, "published");
        let now = PUBLISHED.load(Ordering::Relaxed);
        assert!(now >= before + own.0, "{now} < {before} + {}", own.0);
    }

    #[test]
    fn a_watched_thread_is_read_while_watched_and_counted_once_it_ends() {
        let (watching, watched_now) = crossbeam_channel::bounded(0);
        let (done, finish) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::spawn(move || {
            let watch = watch_this_thread();
            let file = watch.0.clone().unwrap();
            spin();
            watching.send(own_wait()).unwrap();
            finish.recv().unwrap();
            let published = PUBLISHED.load(Ordering::Relaxed);
            drop(watch);
            let still_read = watched().iter().any(|kept| Arc::ptr_eq(kept, &file));
            assert!(!still_read, "an ended watch is no longer read");
            (published, own_wait())
        });
        let wait_then = watched_now.recv().unwrap();
        let is_watched = watched().len();
        assert!(is_watched >= 1, "the thread's file is kept");
        let read = ProcessWait.wait_ns().unwrap();
        assert!(read >= wait_then, "{read} < {wait_then}");
        assert!(
            read >= PUBLISHED.load(Ordering::Relaxed),
            "the published waits count too"
        );
        done.send(()).unwrap();
        let (published_before, final_wait) = thread.join().unwrap();
        assert!(
            PUBLISHED.load(Ordering::Relaxed) >= published_before + final_wait,
            "the ended thread's wait is published"
        );
    }
}
