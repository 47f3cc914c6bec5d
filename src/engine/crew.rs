//! Rate mode's request threads, kept between steps (burst keeps its own at the next step's
//! gate: `squad`). Rate runs every request on a native thread of its own; starting and ending
//! one costs the client about 0.1 ms of CPU (its stack and signal stack mapped and unmapped,
//! the kernel's task, OpenSSL's per-thread state), as much as the rest of a lean request's own
//! work. A thread that has sent its request's result parks here and takes a later request,
//! so a ramp starts only as many threads as its largest step needs at once, and each request
//! still has a thread to itself while it runs.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};

use super::REQUEST_THREAD;

/// One request's work, run on a thread of the crew.
type Job = Box<dyn FnOnce() + Send>;

/// How long handing a job to a parked thread may take: it is waiting for it, so only a
/// thrashing machine takes this long, and then the job goes to a new thread instead.
const HAND_OVER: Duration = Duration::from_secs(1);

/// A job and the way back to the thread that takes it: the thread returns it to the idle list
/// when its job is done, so that a parked thread's only sender is the crew's.
struct Assignment {
    job: Job,
    door: Sender<Assignment>,
}

/// Threads that run one job at a time and park between jobs.
pub struct Crew {
    /// The doors of the parked threads; None once the crew is closed.
    idle: Arc<Mutex<Option<Vec<Sender<Assignment>>>>>,
    stack_size: usize,
}

impl Crew {
    pub fn new(stack_size: usize) -> Self {
        Crew {
            idle: Arc::new(Mutex::new(Some(Vec::new()))),
            stack_size,
        }
    }

    /// Runs `job` on a thread of its own: a parked one when one is idle, else a new one. An
    /// error only when a new thread was needed and the system would not start it.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut job: Job = Box::new(job);
        while let Some(door) = self.take_idle() {
            let assignment = Assignment {
                job,
                door: door.clone(),
            };
            match door.send_timeout(assignment, HAND_OVER) {
                Ok(()) => return Ok(()),
                // The thread is gone, or too slow to take it: its door is dropped here, which
                // ends it once it parks.
                Err(SendTimeoutError::Disconnected(back) | SendTimeoutError::Timeout(back)) => {
                    job = back.job
                }
            }
        }
        let (door, jobs) = bounded(0);
        let idle = Arc::clone(&self.idle);
        thread::Builder::new()
            .name(REQUEST_THREAD.to_owned())
            .stack_size(self.stack_size)
            .spawn(move || work(job, door, jobs, idle))
            .map(drop)
    }

    /// How many threads are parked now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).as_ref().map_or(0, Vec::len)
    }

    /// Closes the crew for good without waking the parked threads: they stay parked until the
    /// process ends (`Engine::leave_threads_to_exit`). Only for a process about to end.
    pub fn leave_to_exit(&self) {
        if let Some(parked) = lock(&self.idle).take() {
            std::mem::forget(parked);
        }
    }

    fn take_idle(&self) -> Option<Sender<Assignment>> {
        lock(&self.idle).as_mut()?.pop()
    }
}

impl Drop for Crew {
    /// Closes the crew: the parked threads' doors are dropped, which ends them, and a thread
    /// still running a job ends after it.
    fn drop(&mut self) {
        lock(&self.idle).take();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How much of its stack a crew thread touches when it starts, below its own frame: the pages
/// a lean request will use anyway are faulted in before the first job rather than after the
/// release, where a burst's 10,000 threads each took the one CPU they shared for some 20 µs of
/// page faults, delaying the threads behind them (first to last start 550 – 620 ms without,
/// 460 – 490 ms with). Not more: 8 KiB reached a page that a request never touches (+4 KiB of
/// memory a thread, the 10,000-thread step's peak RSS from 163 to 202 MiB), 16 KiB three.
const STACK_TOUCHED: usize = 6 * 1024;

#[inline(never)]
pub(super) fn touch_stack() {
    let mut pages = [0u8; STACK_TOUCHED];
    std::hint::black_box(&mut pages);
}

/// A crew thread's life: its first job, then each one handed to it while it is parked.
fn work(
    first: Job,
    door: Sender<Assignment>,
    jobs: Receiver<Assignment>,
    idle: Arc<Mutex<Option<Vec<Sender<Assignment>>>>>,
) {
    touch_stack();
    let (mut job, mut door) = (first, door);
    loop {
        job();
        match lock(&idle).as_mut() {
            Some(parked) => parked.push(door),
            None => break,
        }
        // Parked: the crew holds the only door, so this ends when the crew drops it.
        match jobs.recv() {
            Ok(next) => (job, door) = (next.job, next.door),
            Err(_) => break,
        }
    }
    // The thread's wait for a CPU would end with it: it is counted now.
    crate::sys::schedstat::publish_own_wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn thread_id(crew: &Crew) -> thread::ThreadId {
        let (tx, rx) = bounded(1);
        crew.run(move || tx.send(thread::current().id()).unwrap())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap()
    }

    fn wait_idle(crew: &Crew, parked: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while crew.idle() < parked {
            assert!(
                std::time::Instant::now() < deadline,
                "{} parked",
                crew.idle()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_thread_that_finished_its_job_takes_the_next_one() {
        let crew = Crew::new(256 * 1024);
        let first = thread_id(&crew);
        wait_idle(&crew, 1);
        assert_eq!(thread_id(&crew), first);
        assert_ne!(first, thread::current().id());
    }

    #[test]
    fn jobs_at_once_get_threads_of_their_own() {
        let crew = Crew::new(256 * 1024);
        let gate = Arc::new(std::sync::Barrier::new(5));
        let (tx, rx) = bounded(4);
        for _ in 0..4 {
            let (gate, tx) = (Arc::clone(&gate), tx.clone());
            crew.run(move || {
                // All four wait here together: only four threads can get past it.
                gate.wait();
                tx.send(thread::current().id()).unwrap();
            })
            .unwrap();
        }
        gate.wait();
        let mut ids: Vec<_> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        ids.sort_by_key(|id| format!("{id:?}"));
        ids.dedup();
        assert_eq!(ids.len(), 4);
        wait_idle(&crew, 4);
        assert_eq!(crew.idle(), 4);
    }

    /// A crew with one parked thread, and a count that goes up when that thread ends.
    fn crew_with_a_watched_parked_thread() -> (Crew, Arc<AtomicUsize>) {
        let crew = Crew::new(256 * 1024);
        let ended = Arc::new(AtomicUsize::new(0));
        struct Tell(Arc<AtomicUsize>);
        impl Drop for Tell {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local!(static TELL: std::cell::RefCell<Option<Tell>> = const { std::cell::RefCell::new(None) });
        let watch = Arc::clone(&ended);
        crew.run(move || TELL.with(|t| *t.borrow_mut() = Some(Tell(watch))))
            .unwrap();
        wait_idle(&crew, 1);
        assert_eq!(ended.load(Ordering::SeqCst), 0, "parked, not ended");
        (crew, ended)
    }

    #[test]
    fn dropping_the_crew_ends_its_parked_threads() {
        let (crew, ended) = crew_with_a_watched_parked_thread();
        drop(crew);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while ended.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the parked thread never ended"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_crew_left_to_exit_keeps_its_parked_threads_parked_and_takes_no_more_jobs() {
        let (crew, ended) = crew_with_a_watched_parked_thread();
        crew.leave_to_exit();
        assert_eq!(crew.idle(), 0, "closed: no thread is handed out again");
        drop(crew);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(ended.load(Ordering::SeqCst), 0, "still parked, not ended");
    }
}
