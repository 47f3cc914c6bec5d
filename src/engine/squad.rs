//! Burst's request threads, kept from step to step and parked at the gate of the step to come.
//! A thread that has sent its request's result makes what its next request needs before the
//! release (its socket) and waits at the next step's gate, so its release is the only wake-up a
//! request costs its thread. Handing a parked thread its job and then releasing it at the gate
//! were two, and the second one cost a ramp 12% of its client CPU (`examples/ramp_floor.rs`,
//! alternating runs of both ways).
//!
//! Each step has a board: its gate (a write lock the launcher holds until the release, so one
//! unlock wakes every thread waiting to read it), its jobs, claimed in order after the release,
//! and the board of the step after it, made before this one opens so that a thread done with
//! this step always has a gate to wait at.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock, RwLockWriteGuard};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, bounded};

use super::REQUEST_THREAD;
use super::crew::touch_stack;

/// One request's work, given what its thread made before the gate.
pub type Job<P> = Box<dyn FnOnce(P) + Send>;

/// What a thread makes before it waits at a gate (a burst request's socket).
type Prepare<P> = Arc<dyn Fn() -> P + Send + Sync>;

/// The threads, and the board of the step to come, its gate held shut.
pub struct Squad<P: Send + 'static> {
    prepare: Prepare<P>,
    stack_size: usize,
    /// Two gates serve all the steps in turn: a step's board takes the gate the step before
    /// the last one used, long open by then. Made once per squad and never freed (two locks).
    gates: [&'static RwLock<()>; 2],
    next: Arc<Board<P>>,
    shut: Option<RwLockWriteGuard<'static, ()>>,
    /// Whether the next board is the first or the second gate's.
    turn: usize,
}

/// One step's gate, its jobs, and the board after it.
struct Board<P> {
    gate: &'static RwLock<()>,
    /// Threads that got to the gate: they wait there until the release.
    waiting: AtomicUsize,
    /// How many the launcher waits for; unknown (MAX) until the step is staged.
    wanted: AtomicUsize,
    all_here: (Sender<()>, Receiver<()>),
    jobs: OnceLock<Vec<Mutex<Option<Job<P>>>>>,
    claimed: AtomicUsize,
    after: OnceLock<Arc<Board<P>>>,
    /// Set on the board the squad leaves when it is dropped: its threads end at the release.
    closed: AtomicBool,
}

impl<P> Board<P> {
    fn new(gate: &'static RwLock<()>) -> Arc<Self> {
        Arc::new(Board {
            gate,
            waiting: AtomicUsize::new(0),
            wanted: AtomicUsize::new(usize::MAX),
            all_here: bounded(1),
            jobs: OnceLock::new(),
            claimed: AtomicUsize::new(0),
            after: OnceLock::new(),
            closed: AtomicBool::new(false),
        })
    }

    /// A thread is at the gate; the one that completes the wanted count says so.
    fn arrive(&self) {
        let here = self.waiting.fetch_add(1, Ordering::SeqCst) + 1;
        if here == self.wanted.load(Ordering::SeqCst) {
            let _ = self.all_here.0.try_send(());
        }
    }

    /// The next job nobody took, if one is left.
    fn claim(&self) -> Option<Job<P>> {
        let jobs = self.jobs.get()?;
        let index = self.claimed.fetch_add(1, Ordering::Relaxed);
        let slot = jobs.get(index)?;
        slot.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl<P: Send + 'static> Squad<P> {
    /// `prepare` runs on a thread before each wait at a gate.
    pub fn new(prepare: impl Fn() -> P + Send + Sync + 'static, stack_size: usize) -> Self {
        let gates: [&'static RwLock<()>; 2] = [
            Box::leak(Box::new(RwLock::new(()))),
            Box::leak(Box::new(RwLock::new(()))),
        ];
        Squad {
            prepare: Arc::new(prepare),
            stack_size,
            gates,
            next: Board::new(gates[0]),
            shut: Some(write(gates[0])),
            turn: 1,
        }
    }

    /// Puts a step's jobs on the board of the step to come, with a thread for each: the ones
    /// waiting at its gate, and new ones for the rest. A job without a thread, because the
    /// system would not start one, is taken off the board: the error of each is returned.
    pub fn stage(&mut self, mut jobs: Vec<Job<P>>) -> Vec<io::Error> {
        let waiting = self.waiting();
        let mut errors = Vec::new();
        for _ in waiting..jobs.len() {
            if let Err(err) = self.spawn() {
                errors.push(err);
            }
        }
        jobs.truncate(jobs.len() - errors.len());
        self.next.wanted.store(jobs.len(), Ordering::SeqCst);
        let _ = self
            .next
            .jobs
            .set(jobs.into_iter().map(|job| Mutex::new(Some(job))).collect());
        errors
    }

    /// Waits until a thread for each staged job is at the gate, or until `deadline`.
    pub fn wait_all_here(&self, deadline: Instant) {
        let wanted = self.next.wanted.load(Ordering::SeqCst);
        if self.waiting() < wanted {
            let _ = self.next.all_here.1.recv_deadline(deadline);
        }
    }

    /// Opens the staged step's gate. The board after it, its gate shut, is made first, so
    /// every thread done with this step has a gate to wait at.
    pub fn release(&mut self) {
        let gate = self.gates[self.turn];
        let shut = write(gate);
        let after = Board::new(gate);
        let _ = self.next.after.set(Arc::clone(&after));
        self.next = after;
        self.turn = 1 - self.turn;
        drop(self.shut.replace(shut));
    }

    /// How many threads wait at the gate of the step to come.
    pub fn waiting(&self) -> usize {
        self.next.waiting.load(Ordering::SeqCst)
    }

    /// Leaves the threads parked until the process ends, without waking them (`Engine::
    /// leave_threads_to_exit`). Only for a process about to end.
    pub fn leave_to_exit(&mut self) {
        std::mem::forget(self.shut.take());
    }

    fn spawn(&self) -> io::Result<()> {
        let (board, prepare) = (Arc::clone(&self.next), Arc::clone(&self.prepare));
        thread::Builder::new()
            .name(REQUEST_THREAD.to_owned())
            .stack_size(self.stack_size)
            .spawn(move || serve(board, prepare))
            .map(drop)
    }
}

impl<P: Send + 'static> Drop for Squad<P> {
    /// The waiting threads wake, find the board closed and end; a thread still running a
    /// request ends when it gets to that board.
    fn drop(&mut self) {
        if let Some(shut) = self.shut.take() {
            self.next.closed.store(true, Ordering::SeqCst);
            drop(shut);
        }
    }
}

fn write(gate: &'static RwLock<()>) -> RwLockWriteGuard<'static, ()> {
    gate.write().unwrap_or_else(PoisonError::into_inner)
}

/// A thread's life: prepare, wait at the gate, run a job if one is left, and on to the next
/// step's board.
fn serve<P>(mut board: Arc<Board<P>>, prepare: Prepare<P>) {
    touch_stack();
    loop {
        let prepared = prepare();
        board.arrive();
        // The launcher opens the gate by its launch deadline at the latest, or as it drops.
        drop(board.gate.read().unwrap_or_else(PoisonError::into_inner));
        if board.closed.load(Ordering::SeqCst) {
            break;
        }
        if let Some(job) = board.claim() {
            job(prepared);
        }
        match board.after.get() {
            Some(after) => board = Arc::clone(after),
            None => break,
        }
    }
    // The thread's wait for a CPU would end with it: it is counted now.
    crate::sys::schedstat::publish_own_wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    /// Runs a step of `size` jobs, each sending its thread's id; returns them.
    fn step(squad: &mut Squad<()>, size: usize) -> Vec<thread::ThreadId> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let jobs = (0..size)
            .map(|_| {
                let tx = tx.clone();
                Box::new(move |()| tx.send(thread::current().id()).unwrap()) as Job<()>
            })
            .collect();
        assert!(squad.stage(jobs).is_empty());
        // Far off: the wait must end because every thread is here, which it checks.
        squad.wait_all_here(Instant::now() + Duration::from_secs(600));
        assert!(
            squad.waiting() >= size,
            "{} of {size} here",
            squad.waiting()
        );
        squad.release();
        (0..size)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect()
    }

    fn wait_for(squad: &Squad<()>, waiting: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while squad.waiting() < waiting {
            assert!(Instant::now() < deadline, "{} waiting", squad.waiting());
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn each_job_runs_once_on_a_thread_of_its_own_and_threads_are_kept() {
        let mut squad = Squad::new(|| (), 256 * 1024);
        let first = step(&mut squad, 3);
        assert_eq!(
            first.iter().collect::<HashSet<_>>().len(),
            3,
            "a thread each"
        );
        wait_for(&squad, 3);
        // As many jobs as threads already waiting: no thread to start, none to wait for.
        let same: HashSet<_> = step(&mut squad, 3).into_iter().collect();
        assert_eq!(same, first.iter().copied().collect(), "the same three");
        wait_for(&squad, 3);
        let second = step(&mut squad, 5);
        let second_set: HashSet<_> = second.iter().collect();
        assert_eq!(second_set.len(), 5, "a thread each");
        assert!(first.iter().all(|id| second_set.contains(id)), "kept");
        wait_for(&squad, 5);
        // Fewer jobs than threads: each runs once, and the idle threads wait for the next step.
        assert_eq!(step(&mut squad, 2).len(), 2);
        wait_for(&squad, 5);
        assert_eq!(squad.waiting(), 5);
    }

    #[test]
    fn a_thread_prepares_before_the_gate_and_waits_there() {
        let prepared = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&prepared);
        let mut squad = Squad::new(move || counter.fetch_add(1, Ordering::SeqCst), 256 * 1024);
        let (tx, rx) = crossbeam_channel::unbounded();
        let job = Box::new(move |made: usize| tx.send(made).unwrap()) as Job<usize>;
        assert!(squad.stage(vec![job]).is_empty());
        squad.wait_all_here(Instant::now() + Duration::from_secs(10));
        assert_eq!(
            prepared.load(Ordering::SeqCst),
            1,
            "prepared before the release"
        );
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "no job before the release"
        );
        squad.release();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
    }

    #[test]
    fn a_squad_left_to_exit_keeps_its_threads_waiting() {
        let mut squad = Squad::new(|| (), 256 * 1024);
        step(&mut squad, 2);
        wait_for(&squad, 2);
        let board = Arc::clone(&squad.next);
        squad.leave_to_exit();
        drop(squad);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            Arc::strong_count(&board),
            3,
            "both threads still wait at the gate"
        );
        assert!(!board.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn dropping_the_squad_ends_its_waiting_threads() {
        let mut squad = Squad::new(|| (), 256 * 1024);
        let ids = step(&mut squad, 2);
        wait_for(&squad, 2);
        let board = Arc::clone(&squad.next);
        drop(squad);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Each thread holds the board while it lives: only the test's reference is left.
        while Arc::strong_count(&board) > 1 {
            assert!(Instant::now() < deadline, "threads still alive: {ids:?}");
            thread::sleep(Duration::from_millis(1));
        }
    }
}
