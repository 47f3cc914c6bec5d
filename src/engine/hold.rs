//! The hold engine: a crowd of client connections kept open, as a pooler's clients are. Step i
//! holds its size of connections: those of the step before are kept, and the step opens the
//! rest. Each connection lives on a thread of its own (the design's model, a small stack) and
//! sends the query about every `every`, jittered; the step lasts `duration` once its
//! connections are open. A connection that breaks is counted as dropped and its thread ends:
//! it is never reconnected in place, and the next step opens its replacement, counted too.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::{Engine, REPORT_GRACE, Tagged, guarded, hold_until};
use crate::model::hold::{HoldStep, kib_per_held};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::plan::StepPlan;
use crate::model::record::{RequestRecord, StepObserver, StepRun, Tally};
use crate::pg::request::kept::{self, Kept};
use crate::pg::request::{self, RequestSpec};
use crate::sys::memory;

/// The name of a held connection's thread: its panics are its requests' failures.
pub const HOLD_THREAD: &str = "pgstress-held";
/// Connects in flight at once while a step opens its connections: a hold step measures the
/// crowd held, not a connection storm (burst mode's), and a server or pooler logs clients in
/// one after another anyway. Enough to keep a two-core server busy logging in.
pub const OPENING_AT_ONCE: usize = 64;

/// Memory maps left to the rest of the process when the held connections' threads are
/// counted against `vm.max_map_count`.
const MAPS_KEPT: u64 = 1024;

/// The processes whose memory a hold step reads, when they run on this machine.
#[derive(Debug, Clone, Default)]
pub struct HoldSides {
    /// The local pooler's processes (several PgBouncers may share its port): their RSS summed.
    pub pooler_pids: Vec<u32>,
    pub postmaster_pid: Option<u32>,
}

/// What the sides used before the first connection: each step's cost is read above it.
#[derive(Debug, Clone, Copy, Default)]
struct Baseline {
    client_kib: u64,
    pooler_kib: Option<u64>,
    server_kib: Option<u64>,
}

/// What every held connection's thread shares with the engine.
struct Shared {
    spec: Arc<RequestSpec>,
    every: Duration,
    /// The step whose queries are being counted; 0 between steps (queries then go on, not
    /// counted).
    step: AtomicU32,
    /// Queries counted for the current step and not yet reported.
    in_flight: AtomicU32,
    /// Connections up now.
    held: AtomicU32,
    /// Connections that broke since the last step's end.
    dropped: AtomicU32,
    /// The step's parameter values, taken in turn.
    deck: RwLock<Arc<Vec<Option<String>>>>,
    turn: AtomicUsize,
    results: Sender<Tagged>,
    /// A token per connect allowed in flight (`OPENING_AT_ONCE`).
    opening: (Sender<()>, Receiver<()>),
    /// Never sent: dropped when the engine goes, which wakes every thread to close.
    stop: Receiver<()>,
}

pub struct Hold {
    shared: Arc<Shared>,
    results: Receiver<Tagged>,
    plan: StepPlan,
    duration: Duration,
    stack_size: usize,
    sides: HoldSides,
    baseline: Baseline,
    handles: Vec<JoinHandle<()>>,
    stop: Option<Sender<()>>,
    release: Option<Instant>,
    /// The step before's size: what this step keeps.
    kept: u32,
}

impl Hold {
    pub fn new(
        spec: Arc<RequestSpec>,
        (every, duration): (Duration, Duration),
        plan: StepPlan,
        stack_size: usize,
        sides: HoldSides,
    ) -> Self {
        let (results_tx, results) = unbounded();
        let (stop, stop_rx) = bounded(0);
        let opening = bounded(OPENING_AT_ONCE);
        for _ in 0..OPENING_AT_ONCE {
            let _ = opening.0.send(());
        }
        let shared = Arc::new(Shared {
            spec,
            every,
            step: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            held: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
            deck: RwLock::new(Arc::new(vec![None])),
            turn: AtomicUsize::new(0),
            results: results_tx,
            opening,
            stop: stop_rx,
        });
        let baseline = Baseline {
            client_kib: memory::own_rss_kib().unwrap_or(0),
            pooler_kib: pooler_kib(&sides.pooler_pids),
            server_kib: sides.postmaster_pid.map(server_kib),
        };
        Hold {
            shared,
            results,
            plan,
            duration,
            stack_size,
            sides,
            baseline,
            handles: Vec::new(),
            stop: Some(stop),
            release: None,
            kept: 0,
        }
    }

    /// Starts `count` held connections' threads; a thread the system refuses is that
    /// connection's failure (`spawn`), reported at once.
    fn open(&mut self, step: u32, count: u32, (origin, opening_ends): (Instant, Instant)) {
        self.handles.retain(|handle| !handle.is_finished());
        // Maps kept for the rest of the process (its files, its other threads, malloc).
        let threads_left = memory::maps_left().map_or(u64::MAX, |left| {
            left.saturating_sub(MAPS_KEPT) / memory::MAPS_PER_THREAD
        });
        for index in 0..count {
            if u64::from(index) >= threads_left {
                let failure = Failure::new(
                    FailureClass::Client,
                    "no thread for this held connection: this process is at vm.max_map_count \
                     (each thread takes 4 memory maps); raise it (sysctl vm.max_map_count)",
                );
                let record = RequestRecord::failed_without_running(failure, Duration::ZERO);
                let _ = self.shared.results.send((step, record));
                continue;
            }
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name(HOLD_THREAD.to_owned())
                .stack_size(self.stack_size)
                .spawn(move || hold_one(&shared, step, (origin, opening_ends)));
            match spawned {
                Ok(handle) => self.handles.push(handle),
                Err(err) => {
                    let failure = Failure::new(
                        FailureClass::Spawn,
                        format!("cannot start a held connection's thread: {err}"),
                    );
                    let record = RequestRecord::failed_without_running(failure, Duration::ZERO);
                    let _ = self.shared.results.send((step, record));
                }
            }
        }
    }

    fn opening_bound(&self, count: u32) -> Duration {
        opening_bound(self.shared.spec.timeout, count)
    }

    /// The most connections a step's opening waits for: its growth (the first step its
    /// start). Replacements for connections gone missing open in the same time, and those
    /// not open by then are counted when they open, or fail, during the step.
    fn largest_opening(&self, size: u32) -> u32 {
        self.plan.start.max(self.plan.step).min(size)
    }

    /// The step's crowd: held, opened and dropped, and each side's memory above its baseline.
    fn measure(&self, opened: u32, reopened: u32) -> HoldStep {
        let held = self.shared.held.load(Ordering::SeqCst);
        let dropped = self.shared.dropped.swap(0, Ordering::SeqCst);
        let backends = self.sides.postmaster_pid.map(memory::children_own_kib);
        let server_now = self.sides.postmaster_pid.map(server_kib);
        HoldStep {
            held,
            opened,
            reopened,
            dropped,
            client_kib_per_held: memory::own_rss_kib()
                .and_then(|now| kib_per_held(now, self.baseline.client_kib, held)),
            pooler_kib_per_held: pooler_kib(&self.sides.pooler_pids)
                .zip(self.baseline.pooler_kib)
                .and_then(|(now, before)| kib_per_held(now, before, held)),
            server_backends: backends.as_ref().map(|b| b.len() as u32),
            server_kib_per_backend: backends
                .filter(|b| !b.is_empty())
                .map(|b| b.iter().sum::<u64>() as f64 / b.len() as f64),
            server_kib_per_held: server_now
                .zip(self.baseline.server_kib)
                .and_then(|(now, before)| kib_per_held(now, before, held)),
            ..HoldStep::default()
        }
    }
}

/// The longest the opening of `count` connections takes: a connect deadline (`timeout`) per
/// round of `OPENING_AT_ONCE`.
pub fn opening_bound(timeout: Duration, count: u32) -> Duration {
    let rounds = (count as usize).div_ceil(OPENING_AT_ONCE).max(1) as u32;
    timeout * rounds + REPORT_GRACE
}

/// The server's own memory: its backends' and background processes' (`memory::own_kib`).
fn server_kib(postmaster: u32) -> u64 {
    memory::children_own_kib(postmaster).iter().sum()
}

impl Engine for Hold {
    fn describe(&self) -> String {
        format!(
            "hold: a thread and a kept connection per held client ({} KiB stack), kept from step \
             to step, each sending the query about every {} (jittered) for {} once the step's \
             connections are open ({OPENING_AT_ONCE} connects at once)",
            self.stack_size / 1024,
            humantime::format_duration(self.shared.every),
            humantime::format_duration(self.duration),
        )
    }

    /// The step's size is connections held, not requests at once: its queries run when each
    /// connection's turn comes, as many at once as chance makes.
    fn concurrency(&self, _size: u32) -> Option<u32> {
        None
    }

    fn step_bound(&self, size: u32) -> Duration {
        self.opening_bound(self.largest_opening(size))
            + self.duration
            + self.shared.spec.timeout
            + REPORT_GRACE
    }

    fn release_next_at(&mut self, at: Instant) {
        self.release = Some(at);
    }

    fn run_step(
        &mut self,
        step: u32,
        params: Vec<Option<String>>,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun {
        let origin = hold_until(self.release.take());
        // A value per held connection: the step's size here, an agent's share of it there.
        let size = params.len() as u32;
        let growth = size.saturating_sub(std::mem::replace(&mut self.kept, size));
        if !params.is_empty() {
            *self
                .shared
                .deck
                .write()
                .expect("the deck is never poisoned") = Arc::new(params);
        }
        let to_open = size.saturating_sub(self.shared.held.load(Ordering::SeqCst));
        let reopened = to_open.saturating_sub(growth);
        self.shared.step.store(step, Ordering::SeqCst);
        // A connection still waiting for a connect slot when the opening is over never
        // reached the server: pgstress's pacing, not the server's answer.
        let opened_by =
            origin + self.opening_bound(to_open.min(growth.max(self.largest_opening(size))));
        self.open(step, to_open, (origin, opened_by));
        let mut collector = Collector::new(step, observer);
        // The opening: every new connection reports its connect and first query, or its failure.
        collector.take_until(&self.results, opened_by, Some(to_open as usize));
        let launch = origin.elapsed();
        collector.take_until(&self.results, Instant::now() + self.duration, None);
        // No query counted from here; those under way are waited for.
        self.shared.step.store(0, Ordering::SeqCst);
        let deadline = Instant::now() + self.shared.spec.timeout + REPORT_GRACE;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            collector.take_until(&self.results, Instant::now() + POLL, None);
        }
        collector.take_until(&self.results, Instant::now(), None);
        let wall = origin.elapsed();
        let hold = self.measure(to_open, reopened);
        StepRun {
            records: collector.records,
            launch,
            wall,
            hold: Some(hold),
            ..StepRun::default()
        }
    }

    fn leave_threads_to_exit(&mut self) {
        // Each thread would close its connection and unmap its stack: the process's end does
        // both at once for tens of thousands.
        std::mem::forget(self.stop.take());
        self.handles.clear();
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Every held connection's thread wakes, closes its connection and ends.
        self.stop = None;
        super::reap(std::mem::take(&mut self.handles), REPORT_GRACE);
    }
}

/// How often the end of the step's queries in flight is looked at.
const POLL: Duration = Duration::from_millis(20);

/// The step's records as they arrive, told to the observer.
struct Collector<'a> {
    step: u32,
    observer: Option<&'a dyn StepObserver>,
    tally: Tally,
    records: Vec<RequestRecord>,
    /// The step's new connections that reported their first query (or their failure).
    opened: usize,
}

impl<'a> Collector<'a> {
    fn new(step: u32, observer: Option<&'a dyn StepObserver>) -> Self {
        Collector {
            step,
            observer,
            tally: Tally::default(),
            records: Vec::new(),
            opened: 0,
        }
    }

    /// Takes results until `until`, or until `opening` new connections have reported.
    fn take_until(&mut self, results: &Receiver<Tagged>, until: Instant, opening: Option<usize>) {
        loop {
            if opening.is_some_and(|count| self.opened >= count) {
                return;
            }
            let (tag, record) = match results.recv_deadline(until) {
                Ok(tagged) => tagged,
                Err(_) => return,
            };
            if tag != self.step {
                continue;
            }
            if record.connect.is_some() || record.query.is_none() {
                self.opened += 1;
            }
            if let Some(observer) = self.observer {
                self.tally.count(&record);
                observer.record_ended(&record);
                observer.request_ended(self.tally);
            }
            self.records.push(record);
        }
    }
}

/// One held connection's life: connect and send a first query (one record, with the connect
/// time), then a query about every `every` until the engine stops or the connection breaks.
fn hold_one(shared: &Shared, step: u32, (origin, opening_ends): (Instant, Instant)) {
    let Some(mut session) = connect(shared, step, origin, opening_ends) else {
        return;
    };
    shared.held.fetch_add(1, Ordering::SeqCst);
    loop {
        match shared.stop.recv_timeout(jittered(shared.every)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return, // the engine is gone: the connection closes with the thread
        }
        if !query(shared, &mut session, None, origin) {
            shared.held.fetch_sub(1, Ordering::SeqCst);
            shared.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Opens the connection (a connect token held meanwhile) and sends its first query, reported
/// as the step's with the connect time; None when either failed (reported as a failure).
fn connect(shared: &Shared, step: u32, origin: Instant, slot_by: Instant) -> Option<Kept> {
    // The wait for a connect slot is pgstress's own pacing: neither the connect's time nor
    // the query's.
    let token = shared.opening.1.recv_deadline(slot_by).ok();
    let started = Instant::now();
    let opened = match token {
        Some(()) => guarded_open(&shared.spec),
        None => Err(Failure::new(
            FailureClass::Client,
            "never connected: pgstress's connect slots stayed busy to the end of the opening",
        )),
    };
    if token.is_some() {
        let _ = shared.opening.0.send(());
    }
    match opened {
        Ok(mut session) => {
            let connect = started.elapsed();
            query(shared, &mut session, Some((step, connect)), origin).then_some(session)
        }
        Err(failure) => {
            let mut record = RequestRecord::failed_without_running(failure, started.elapsed());
            record.start_offset = Some(started - origin);
            record.connect = Some(started.elapsed());
            let _ = shared.results.send((step, record));
            None
        }
    }
}

/// Opens a kept connection; a panic inside (a library out of files) is the client's failure.
fn guarded_open(spec: &RequestSpec) -> Result<Kept, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kept::open(spec))).unwrap_or_else(
        |_| {
            Err(Failure::new(
                FailureClass::Client,
                "opening the connection panicked",
            ))
        },
    )
}

/// Sends one query on the held connection and reports it when a step counts it (`first`: the
/// connection's first, always counted, with its connect time). Its latency is the query's
/// alone: the crowd's connects are the step's connect histogram.
/// Whether the connection is still up.
fn query(
    shared: &Shared,
    session: &mut Kept,
    first: Option<(u32, Duration)>,
    origin: Instant,
) -> bool {
    // Counted in flight before the step is read, so that the step's end waits for it.
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let step = first.map_or_else(|| shared.step.load(Ordering::SeqCst), |(step, _)| step);
    let param = {
        let deck = shared.deck.read().expect("the deck is never poisoned");
        let turn = shared.turn.fetch_add(1, Ordering::Relaxed);
        Arc::clone(&deck).get(turn % deck.len()).cloned().flatten()
    };
    let mut usable = true;
    let mut record = guarded(origin.elapsed(), || {
        let (record, up) = session.execute(&shared.spec, param.as_deref(), origin.elapsed());
        usable = up;
        record
    });
    record.outcome = request::within_deadline(record.outcome, record.latency, shared.spec.timeout);
    if let Some((_, connect)) = first {
        record.connect = Some(connect);
    }
    if step != 0 {
        let _ = shared.results.send((step, record));
    }
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    usable
}

/// A wait drawn between half and one and a half of `every`: the crowd's queries spread out
/// rather than arrive together, and average one per `every`.
fn jittered(every: Duration) -> Duration {
    use rand::RngExt;
    every.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// The pooler's resident memory: every one of its processes', none when one cannot be read.
fn pooler_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| memory::rss_kib(pid)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_between_half_and_one_and_a_half_of_every() {
        let every = Duration::from_secs(10);
        for _ in 0..100 {
            let wait = jittered(every);
            assert!(wait >= every / 2 && wait < every * 3 / 2, "{wait:?}");
        }
    }
}
