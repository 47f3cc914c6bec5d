//! The burst engine: one native thread and one new connection per request, all threads of a
//! step parked at a gate and released together, so the requests really are concurrent.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use super::squad::{Job, Squad};
use super::{EXIT_GRACE, Engine, FinishLine, REPORT_GRACE, Tagged, gather, guarded, hold_until};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::RequestRecord;
use crate::model::record::{StepObserver, StepRun};
use crate::pg::request::{self, RequestSpec};
use crate::pg::wire::ReadySocket;

/// How long spawning a step's threads may take before the gate opens anyway. Spawning 10,000
/// threads takes well under a second here; this only bounds a machine that is thrashing.
pub const LAUNCH_ALLOWANCE: Duration = Duration::from_secs(10);
/// Holds the first request thread of every step back this many milliseconds after the
/// release: a thread that starts late, on demand, for the tests of latency from the release
/// (waiting for a CPU cannot be arranged deterministically). Only in a build with the
/// `test-hooks` feature, which `cargo test` turns on and a release build leaves off.
#[cfg(feature = "test-hooks")]
pub const HOLD_BACK_VAR: &str = "PGSTRESS_TEST_HOLD_BACK_MS";

/// Descriptors kept free beyond a step's sockets (the samplers' files, a monitor's socket).
const DESCRIPTORS_SPARE: usize = 64;

/// A thread and a new connection per request, all released together.
pub struct Burst {
    spec: Arc<RequestSpec>,
    /// The request threads, kept from step to step, each with its next socket made.
    squad: Squad<Option<ReadySocket>>,
    hold_back: Option<Duration>,
    release: Option<Instant>,
    /// The lowest descriptor kept for pgstress's own outputs (`limits::first_kept_for_outputs`),
    /// read before each step: a socket made ahead that got one from there is closed again, so
    /// the sockets held between steps never take what the summary and report need.
    kept_from: Arc<AtomicI32>,
}

impl Burst {
    pub fn new(spec: Arc<RequestSpec>, stack_size: usize) -> Self {
        let for_sockets = Arc::clone(&spec);
        let kept_from = Arc::new(AtomicI32::new(crate::sys::limits::first_kept_for_outputs()));
        let below = Arc::clone(&kept_from);
        let ready_socket = move || {
            (for_sockets.ready_socket())
                .filter(|socket| socket.descriptor() < below.load(Ordering::Relaxed))
        };
        Burst {
            squad: Squad::new(ready_socket, stack_size),
            spec,
            hold_back: hold_back(),
            release: None,
            kept_from,
        }
    }
}

#[cfg(feature = "test-hooks")]
fn hold_back() -> Option<Duration> {
    std::env::var(HOLD_BACK_VAR)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
}

#[cfg(not(feature = "test-hooks"))]
fn hold_back() -> Option<Duration> {
    None
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
        self.squad.leave_to_exit();
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
        let (result_tx, result_rx) = bounded::<Tagged>(requests);
        let release_at = Arc::new(OnceLock::<Instant>::new());
        let (finish, finished) = FinishLine::new(requests);
        // A socket each, made before the gate: the descriptor table grown once, here.
        crate::sys::limits::reserve_descriptors(requests + DESCRIPTORS_SPARE);
        (self.kept_from).store(
            crate::sys::limits::first_kept_for_outputs(),
            Ordering::Relaxed,
        );

        let jobs: Vec<Job<Option<ReadySocket>>> = params
            .into_iter()
            .enumerate()
            .map(|(index, param)| {
                let worker = Worker {
                    step,
                    spec: Arc::clone(&self.spec),
                    results: result_tx.clone(),
                    finish: Arc::clone(&finish),
                    release_at: Arc::clone(&release_at),
                    gate_deadline: launch_deadline + REPORT_GRACE,
                    hold_back: self.hold_back.filter(|_| index == 0),
                };
                Box::new(move |ready| worker.run(ready, param)) as Job<_>
            })
            .collect();
        drop(result_tx);
        let spawn_failures: Vec<RequestRecord> = self
            .squad
            .stage(jobs)
            .into_iter()
            .map(|err| {
                RequestRecord::failed_without_running(
                    Failure::new(FailureClass::Spawn, format!("cannot start a thread: {err}")),
                    Duration::ZERO,
                )
            })
            .collect();
        let started = requests - spawn_failures.len();
        // The threads that never started never send.
        finish.cross_for(spawn_failures.len());

        // The last thread at the gate says so; the gate opens anyway at the launch deadline.
        self.squad.wait_all_here(launch_deadline);
        let release = hold_until(self.release.take().filter(|at| *at < launch_deadline));
        let _ = release_at.set(release);
        self.squad.release();

        let deadline = release + self.spec.timeout + REPORT_GRACE;
        let (mut records, wall) = gather(
            &result_rx,
            Some(&finished),
            step,
            started,
            release,
            deadline,
            observer,
        );
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

/// What one request thread holds.
struct Worker {
    step: u32,
    spec: Arc<RequestSpec>,
    results: crossbeam_channel::Sender<Tagged>,
    finish: Arc<FinishLine>,
    release_at: Arc<OnceLock<Instant>>,
    gate_deadline: Instant,
    hold_back: Option<Duration>,
}

impl Worker {
    /// Runs on a thread just released, with the socket it made before the gate.
    fn run(self, ready: Option<ReadySocket>, param: Option<String>) {
        // The launcher opens the gate by the launch deadline at the latest, so a thread that
        // got through past that is not part of the step.
        if Instant::now() > self.gate_deadline {
            // Released too late: the coordinator counts this request as timed out.
            self.finish.cross();
            return;
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
        crate::sys::schedstat::publish_own_wait();
        let _ = self.results.send((self.step, record));
        self.finish.cross();
    }
}
