//! Running a step: one module per load model, each taking a step's requests and returning what
//! every request measured. Printing and files are someone else's job.
//!
//! - `burst`: a thread and a new connection per request, all released together (the original).
//! - `pool`: a fixed set of workers take the step's requests from a queue (the original's
//!   proposed queue in front of the server).
//! - `rate`: requests start at scheduled times, so many per second (open loop).
//! - `squad` and `crew`: the request threads kept from step to step, burst's at the next step's
//!   gate, rate's parked between requests.

pub mod burst;
pub mod crew;
pub mod hold;
pub mod pool;
pub mod rate;
pub mod squad;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::{RequestRecord, StepObserver, StepRun, Tally};

/// Past a request's own deadline, time for its thread to report (scheduling under load).
pub const REPORT_GRACE: Duration = Duration::from_secs(2);
/// How long a step's finished request threads get to exit before the next step; stragglers
/// (stuck on a dead server) are detached.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A load model.
pub trait Engine {
    /// One line on how the load is sent, for the header.
    fn describe(&self) -> String;
    /// At most how many requests of a step of this size run at once; None when that depends
    /// on the server's answers (and is measured instead).
    fn concurrency(&self, size: u32) -> Option<u32>;
    /// The longest a step of this size can take, whatever the server does.
    fn step_bound(&self, size: u32) -> Duration;
    /// Runs one step: a request per parameter (None when the query takes no parameter).
    fn run_step(
        &mut self,
        step: u32,
        params: Vec<Option<String>>,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun;
    /// Holds the next step's first request until `at`, so that machines running their shares
    /// of one step start it together; without it a step starts as soon as it is ready.
    fn release_next_at(&mut self, at: Instant);
    /// The run is over and the process is about to end: threads parked for later steps are
    /// left to end with it. The kernel then frees their stacks in one go, where each thread
    /// ending on its own unmaps its stack and signal stack, interrupting every other CPU this
    /// process runs on (300 threads: some 4% of a 1,050-request run's CPU).
    fn leave_threads_to_exit(&mut self) {}
}

/// How close to a release time a thread sleeps before it yields instead: sleeping overshoots
/// by the scheduler's slack, which would be the release's error.
const SPIN_BEFORE: Duration = Duration::from_millis(2);

/// Waits for a release time (if any, and still ahead) and returns the moment of the release.
pub fn hold_until(at: Option<Instant>) -> Instant {
    let Some(at) = at else {
        return Instant::now();
    };
    loop {
        let now = Instant::now();
        if now >= at {
            return now;
        }
        let left = at - now;
        match left > SPIN_BEFORE {
            true => std::thread::sleep(left - SPIN_BEFORE),
            false => std::thread::yield_now(),
        }
    }
}

/// The name of every thread that runs one request: a panic there is the request's failure,
/// counted and classed, and the process's panic hook keeps it off the terminal.
pub const REQUEST_THREAD: &str = "pgstress-request";
/// The name of a pool worker's thread, before its index; its requests are guarded alike.
pub const POOL_THREAD: &str = "pgstress-pool-";

/// Whether a thread of this name runs requests, whose panics are their failures.
pub fn runs_requests(thread_name: Option<&str>) -> bool {
    thread_name.is_some_and(|name| {
        name == REQUEST_THREAD || name == hold::HOLD_THREAD || name.starts_with(POOL_THREAD)
    })
}

/// Runs one request, turning a panic inside it (a library that panics on a resource limit,
/// such as a runtime that cannot open its files) into the request's failure, the client's:
/// left alone it would kill the thread, and the step would wait out its deadline. The request
/// did start, at `start_offset`: it counts among the step's requests in flight.
pub fn guarded(start_offset: Duration, request: impl FnOnce() -> RequestRecord) -> RequestRecord {
    let started = Instant::now();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(request)) {
        Ok(record) => record,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            let mut record = RequestRecord::failed_without_running(
                Failure::new(
                    FailureClass::Client,
                    format!("the request panicked: {what}"),
                ),
                started.elapsed(),
            );
            record.start_offset = Some(start_offset);
            record
        }
    }
}

/// A result and the step it belongs to: a late answer from an earlier step is not counted again.
pub type Tagged = (u32, RequestRecord);

/// How often the collecting thread takes the results that arrived, while they arrive. It never
/// blocks on the channel: a receiver asleep there must be woken by a request thread's send (a
/// system call on both sides per batch), and the channel's receive spins and yields before it
/// sleeps. Each look costs a wake-up (some 15 µs of CPU on a virtual machine), hence 8 ms, not
/// 2: still many times a second for the progress line, and a step's wall time comes from the
/// requests' own ends, not from this.
const COLLECT_EVERY: Duration = Duration::from_millis(8);
/// The longest pause between two looks at a channel where nothing arrived: the pause doubles
/// from `COLLECT_EVERY` while the channel stays empty (a step waiting on slow answers), so the
/// end of a step is seen at most this late.
const COLLECT_AT_MOST: Duration = Duration::from_millis(32);

/// How often a progress line is brought up to date while a step's results arrive, where the
/// collector is woken by the last result (`FinishLine`) rather than looking on its own.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Counts a step's results as their threads send them: the thread that sends the last one
/// wakes the collector, one wake-up a step where looking every few milliseconds cost one each
/// time (`gather`'s `finished`).
pub struct FinishLine {
    left: AtomicUsize,
    crossed: Sender<()>,
}

impl FinishLine {
    /// A line for `expected` results, and what the collector waits on.
    pub fn new(expected: usize) -> (Arc<Self>, Receiver<()>) {
        let (crossed, wait) = crossbeam_channel::bounded(1);
        let left = AtomicUsize::new(expected);
        (Arc::new(FinishLine { left, crossed }), wait)
    }

    /// A result was sent (after its send: the collector finds it when woken).
    pub fn cross(&self) {
        self.cross_for(1);
    }

    /// `count` results were sent, or will never be (their threads never started).
    pub fn cross_for(&self, count: usize) {
        if count > 0 && self.left.fetch_sub(count, Ordering::AcqRel) == count {
            let _ = self.crossed.try_send(());
        }
    }
}

/// Gathers a step's results until `expected` arrived or the deadline passed. With `finished`
/// (a `FinishLine`'s), it sleeps until the last result is sent; without, it looks every few
/// milliseconds. The missing ones count as timeouts: pgstress's own deadline, so that no wait
/// is longer than the request's.
/// The wall time runs from `origin` to the last request's own end, as the request measured it.
pub fn gather(
    results: &Receiver<Tagged>,
    finished: Option<&Receiver<()>>,
    step: u32,
    expected: usize,
    origin: Instant,
    deadline: Instant,
    observer: Option<&dyn StepObserver>,
) -> (Vec<RequestRecord>, Duration) {
    let mut records = Vec::with_capacity(expected);
    let mut last_end = Duration::ZERO;
    let mut tally = Tally::default();
    let mut take = |(tag, record): Tagged, records: &mut Vec<RequestRecord>| {
        if tag != step {
            return;
        }
        if let Some(observer) = observer {
            tally.count(&record);
            observer.record_ended(&record);
            observer.request_ended(tally);
        }
        let end = match record.start_offset {
            Some(start) => start + record.service(),
            None => origin.elapsed(),
        };
        last_end = last_end.max(end);
        records.push(record);
    };
    let mut pause = COLLECT_EVERY;
    while records.len() < expected {
        let before = records.len();
        let open = loop {
            match results.try_recv() {
                Ok(tagged) => take(tagged, &mut records),
                Err(TryRecvError::Empty) => break true,
                Err(TryRecvError::Disconnected) => break false,
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !open || records.len() >= expected || left.is_zero() {
            break;
        }
        if let Some(finished) = finished {
            // The last result's sender says so: one wake-up a step, and one a progress tick
            // while a progress line is shown.
            let wait = match observer {
                Some(_) => PROGRESS_EVERY.min(left),
                None => left,
            };
            let _ = finished.recv_timeout(wait);
            continue;
        }
        pause = match records.len() > before {
            true => COLLECT_EVERY,
            false => (pause * 2).min(COLLECT_AT_MOST),
        };
        std::thread::sleep(pause.min(left));
    }
    let missing = expected - records.len();
    if missing > 0 {
        last_end = deadline - origin;
        let failure = Failure::new(
            FailureClass::Timeout,
            "no answer within the deadline (pgstress's own)",
        );
        records
            .extend((0..missing).map(|_| {
                RequestRecord::failed_without_running(failure.clone(), deadline - origin)
            }));
    }
    (records, last_end)
}

/// Joins the threads that have exited within `grace`; a thread stuck on a dead server is left
/// detached rather than holding up the run.
pub fn reap(handles: Vec<std::thread::JoinHandle<()>>, grace: Duration) {
    let deadline = Instant::now() + grace;
    for handle in handles {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_record() -> RequestRecord {
        RequestRecord::failed_without_running(Failure::new(FailureClass::Io, "x"), Duration::ZERO)
    }

    #[test]
    fn gather_fills_missing_results_with_timeouts_and_skips_other_steps() {
        let (tx, rx) = crossbeam_channel::unbounded();
        tx.send((1, ok_record())).unwrap();
        tx.send((2, ok_record())).unwrap();
        let origin = Instant::now();
        let (records, _) = gather(
            &rx,
            None,
            2,
            3,
            origin,
            origin + Duration::from_millis(20),
            None,
        );
        assert_eq!(records.len(), 3);
        let timeouts = records
            .iter()
            .filter(|r| matches!(&r.outcome, Err(f) if f.class == FailureClass::Timeout))
            .count();
        assert_eq!(timeouts, 2, "one result of step 2 came, two did not");
    }

    #[test]
    fn the_finish_line_wakes_the_collector_once_at_the_last_result() {
        let (line, finished) = FinishLine::new(3);
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..2 {
            tx.send((1, ok_record())).unwrap();
            line.cross();
        }
        assert!(finished.try_recv().is_err(), "two of three");
        tx.send((1, ok_record())).unwrap();
        line.cross();
        assert!(finished.try_recv().is_ok(), "the third");
        // Threads that never started cross all at once; none is a crossing of none.
        let (line, finished) = FinishLine::new(3);
        line.cross_for(0);
        line.cross_for(2);
        assert!(finished.try_recv().is_err(), "two of three");
        line.cross();
        assert!(finished.try_recv().is_ok(), "the third");
        let origin = Instant::now();
        let far = origin + Duration::from_secs(600);
        // Woken by the line, the collector still takes every result the channel holds.
        let (_, again) = FinishLine::new(1);
        tx.send((1, ok_record())).unwrap();
        drop(tx);
        let (records, _) = gather(&rx, Some(&again), 1, 4, origin, far, None);
        assert_eq!(records.len(), 4);
        let made_up =
            |r: &RequestRecord| matches!(&r.outcome, Err(f) if f.class == FailureClass::Timeout);
        assert!(!records.iter().any(made_up), "every one sent, none made up");
    }

    #[test]
    fn a_panicking_request_is_the_clients_failure_and_it_did_start() {
        let record = guarded(Duration::from_millis(7), || panic!("Too many open files"));
        let failure = record.outcome.as_ref().unwrap_err();
        assert_eq!(failure.class, FailureClass::Client);
        assert!(
            failure.message.contains("Too many open files"),
            "{failure:?}"
        );
        assert_eq!(record.start_offset, Some(Duration::from_millis(7)));
        assert!(runs_requests(Some(REQUEST_THREAD)));
        assert!(runs_requests(Some("pgstress-pool-12")));
        assert!(!runs_requests(Some("main")) && !runs_requests(None));
    }
}
