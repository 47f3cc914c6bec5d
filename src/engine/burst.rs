//! The burst engine: one native thread and one new connection per request, all threads of a
//! step parked at a gate and released together, so the requests really are concurrent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use super::crew::Crew;
use super::{EXIT_GRACE, Engine, REPORT_GRACE, Tagged, gather, guarded, hold_until};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::RequestRecord;
use crate::model::record::{StepObserver, StepRun};
use crate::pg::request::{self, RequestSpec};

/// How long spawning a step's threads may take before the gate opens anyway. Spawning 10,000
/// threads takes well under a second here; this only bounds a machine that is thrashing.
pub const LAUNCH_ALLOWANCE: Duration = Duration::from_secs(10);
/// Holds the first request thread of every step back this many milliseconds after the
/// release: a thread that starts late, on demand, for the tests of latency from the release
/// (waiting for a CPU cannot be arranged deterministically). Unset in real runs.
pub const HOLD_BACK_VAR: &str = "PGSTRESS_TEST_HOLD_BACK_MS";

/// Descriptors kept free beyond a step's sockets (the samplers' files, a monitor's socket).
const DESCRIPTORS_SPARE: usize = 64;

/// A thread and a new connection per request, all released together.
pub struct Burst {
    spec: Arc<RequestSpec>,
    /// The request threads, kept from step to step.
    crew: Crew,
    hold_back: Option<Duration>,
    release: Option<Instant>,
}

impl Burst {
    pub fn new(spec: Arc<RequestSpec>, stack_size: usize) -> Self {
        let hold_back = std::env::var(HOLD_BACK_VAR)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        Burst {
            spec,
            crew: Crew::new(stack_size),
            hold_back,
            release: None,
        }
    }
}

impl Engine for Burst {
    fn describe(&self) -> String {
        "burst: a thread and a new connection per request, all released together".to_owned()
    }

    fn concurrency(&self, size: u32) -> Option<u32> {
        Some(size)
    }

    fn step_bound(&self, _size: u32) -> Duration {
        LAUNCH_ALLOWANCE + self.spec.timeout + REPORT_GRACE + EXIT_GRACE
    }

    fn release_next_at(&mut self, at: Instant) {
        self.release = Some(at);
    }

    fn leave_threads_to_exit(&mut self) {
        self.crew.leave_to_exit();
    }

    fn run_step(
        &mut self,
        step: u32,
        params: Vec<Option<String>>,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun {
        let requests = params.len();
        let launch_started = Instant::now();
        let launch_deadline = launch_started + LAUNCH_ALLOWANCE;
        let (all_here, all_here_rx) = bounded::<()>(1);
        let arrivals = Arc::new(Arrivals::new(requests, all_here));
        // The gate: held shut by the launcher's write lock until the release, when every
        // thread waiting to read it wakes at once, with one system call for all of them
        // (a channel's disconnect wakes its receivers one system call each).
        let gate = Arc::new(RwLock::new(()));
        let shut = gate.write().unwrap_or_else(PoisonError::into_inner);
        let (result_tx, result_rx) = bounded::<Tagged>(requests);
        let release_at = Arc::new(OnceLock::<Instant>::new());
        // A socket each, made before the gate: the descriptor table grown once, here.
        crate::sys::limits::reserve_descriptors(requests + DESCRIPTORS_SPARE);

        let mut spawn_failures = Vec::new();
        let mut started = 0;
        for (index, param) in params.into_iter().enumerate() {
            let worker = Worker {
                step,
                spec: Arc::clone(&self.spec),
                arrivals: Arc::clone(&arrivals),
                gate: Arc::clone(&gate),
                results: result_tx.clone(),
                release_at: Arc::clone(&release_at),
                gate_deadline: launch_deadline + REPORT_GRACE,
                hold_back: self.hold_back.filter(|_| index == 0),
            };
            match self.crew.run(move || worker.run(param)) {
                Ok(()) => started += 1,
                Err(err) => spawn_failures.push(RequestRecord::failed_without_running(
                    Failure::new(FailureClass::Spawn, format!("cannot start a thread: {err}")),
                    Duration::ZERO,
                )),
            }
        }
        drop(result_tx);
        // The threads that never started never arrive: counted here instead.
        arrivals.arrive(spawn_failures.len());

        // The last thread at the gate says so; the gate opens anyway at the launch deadline.
        if requests > 0 {
            let _ = all_here_rx.recv_deadline(launch_deadline);
        }
        let release = hold_until(self.release.take().filter(|at| *at < launch_deadline));
        let _ = release_at.set(release);
        drop(shut);

        let deadline = release + self.spec.timeout + REPORT_GRACE;
        let (mut records, wall) = gather(&result_rx, step, started, release, deadline, observer);
        records.extend(spawn_failures);
        StepRun {
            records,
            dropped: 0,
            unsent: 0,
            launch: release - launch_started,
            wall,
            ..StepRun::default()
        }
    }
}

/// The threads of a step not yet at the gate: the last one to get there tells the launcher,
/// one wake-up a step rather than one a thread.
struct Arrivals {
    missing: AtomicUsize,
    all_here: crossbeam_channel::Sender<()>,
}

impl Arrivals {
    fn new(expected: usize, all_here: crossbeam_channel::Sender<()>) -> Self {
        Arrivals {
            missing: AtomicUsize::new(expected),
            all_here,
        }
    }

    /// `count` threads are at the gate (or will never come).
    fn arrive(&self, count: usize) {
        if count > 0 && self.missing.fetch_sub(count, Ordering::AcqRel) == count {
            let _ = self.all_here.try_send(());
        }
    }
}

/// What one request thread holds.
struct Worker {
    step: u32,
    spec: Arc<RequestSpec>,
    arrivals: Arc<Arrivals>,
    gate: Arc<RwLock<()>>,
    results: crossbeam_channel::Sender<Tagged>,
    release_at: Arc<OnceLock<Instant>>,
    gate_deadline: Instant,
    hold_back: Option<Duration>,
}

impl Worker {
    fn run(self, param: Option<String>) {
        // Everything that costs the server nothing is done before the gate.
        let ready = self.spec.ready_socket();
        self.arrivals.arrive(1);
        // The launcher opens the gate by the launch deadline at the latest (or as it unwinds),
        // so this wait ends by then; a thread that got here past that is not part of the step.
        drop(self.gate.read().unwrap_or_else(PoisonError::into_inner));
        if Instant::now() > self.gate_deadline {
            return; // released too late: the coordinator counts this request as timed out
        }
        if let Some(hold_back) = self.hold_back {
            thread::sleep(hold_back);
        }
        let release = self.release_at.get().copied().unwrap_or_else(Instant::now);
        // A client arriving at the release waits from the release: a thread that started late
        // (waiting for a CPU) adds its lag, kept apart as the request's wait.
        let lag = release.elapsed();
        let record = guarded(lag, || {
            request::execute_ready(&self.spec, ready, param.as_deref(), lag)
        });
        let record = request::late_by(record, lag, self.spec.timeout);
        let _ = self.results.send((self.step, record));
    }
}
