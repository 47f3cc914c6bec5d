//! The burst engine: one native thread and one new connection per request, all threads of a
//! step parked at a gate and released together, so the requests really are concurrent.

use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, bounded};

use super::{StepObserver, StepRun, Tally};
use crate::target::{self, Failure, FailureClass, RequestRecord, RequestSpec};

/// How long spawning a step's threads may take before the gate opens anyway. Spawning 10,000
/// threads takes well under a second here; this only bounds a machine that is thrashing.
pub const LAUNCH_ALLOWANCE: Duration = Duration::from_secs(10);
/// Past a request's own deadline, time for its thread to report (scheduling under load).
pub const REPORT_GRACE: Duration = Duration::from_secs(2);
/// How long finished threads get to exit before the next step; stragglers are detached.
const EXIT_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct BurstSettings {
    pub stack_size: usize,
    /// The deadline of one request, connect plus query.
    pub timeout: Duration,
}

/// Runs one step: a thread per parameter (None when the query takes no parameter). The
/// observer, if any, hears of every request's end.
pub fn run_step(
    spec: &Arc<RequestSpec>,
    params: Vec<Option<String>>,
    settings: &BurstSettings,
    observer: Option<&dyn StepObserver>,
) -> StepRun {
    let requests = params.len();
    let launch_started = Instant::now();
    let launch_deadline = launch_started + LAUNCH_ALLOWANCE;
    let (ready_tx, ready_rx) = bounded::<()>(requests);
    // Nothing is ever sent on the gate: dropping its sender wakes every thread at once.
    let (gate_tx, gate_rx) = bounded::<()>(0);
    let (result_tx, result_rx) = bounded::<RequestRecord>(requests);
    let release_at = Arc::new(OnceLock::<Instant>::new());

    let mut records = Vec::with_capacity(requests);
    let mut handles: Vec<JoinHandle<()>> = Vec::with_capacity(requests);
    for param in params {
        let worker = Worker {
            spec: Arc::clone(spec),
            ready: ready_tx.clone(),
            gate: gate_rx.clone(),
            results: result_tx.clone(),
            release_at: Arc::clone(&release_at),
            gate_deadline: launch_deadline + REPORT_GRACE,
        };
        match thread::Builder::new()
            .stack_size(settings.stack_size)
            .spawn(move || worker.run(param))
        {
            Ok(handle) => handles.push(handle),
            Err(err) => records.push(RequestRecord::failed_without_running(
                Failure::new(FailureClass::Spawn, format!("cannot start a thread: {err}")),
                Duration::ZERO,
            )),
        }
    }
    drop((ready_tx, gate_rx, result_tx));

    for _ in 0..handles.len() {
        if ready_rx.recv_deadline(launch_deadline).is_err() {
            break;
        }
    }
    let release = Instant::now();
    let _ = release_at.set(release);
    drop(gate_tx);
    let launch = release - launch_started;

    let deadline = release + settings.timeout + REPORT_GRACE;
    let mut last_end = release;
    let mut reported = 0;
    let mut tally = Tally::default();
    records.iter().for_each(|record| tally.count(record));
    while reported < handles.len() {
        match result_rx.recv_deadline(deadline) {
            Ok(record) => {
                tally.count(&record);
                records.push(record);
                reported += 1;
                last_end = Instant::now();
                if let Some(observer) = observer {
                    observer.request_ended(tally);
                }
            }
            Err(_) => break,
        }
    }
    let missing = handles.len() - reported;
    if missing > 0 {
        last_end = deadline;
        let failure = Failure::new(
            FailureClass::Timeout,
            format!(
                "no answer within {:?} (pgstress's own deadline)",
                settings.timeout
            ),
        );
        records.extend(
            (0..missing).map(|_| {
                RequestRecord::failed_without_running(failure.clone(), deadline - release)
            }),
        );
    }
    reap(handles);
    StepRun {
        records,
        launch,
        wall: last_end - release,
    }
}

/// Joins the threads that have exited; a thread stuck on a dead server is left detached
/// rather than holding up the run.
fn reap(handles: Vec<JoinHandle<()>>) {
    let deadline = Instant::now() + EXIT_GRACE;
    for handle in handles {
        while !handle.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

/// What one request thread holds.
struct Worker {
    spec: Arc<RequestSpec>,
    ready: crossbeam_channel::Sender<()>,
    gate: crossbeam_channel::Receiver<()>,
    results: crossbeam_channel::Sender<RequestRecord>,
    release_at: Arc<OnceLock<Instant>>,
    gate_deadline: Instant,
}

impl Worker {
    fn run(self, param: Option<String>) {
        let _ = self.ready.send(());
        drop(self.ready);
        if self.gate.recv_deadline(self.gate_deadline) != Err(RecvTimeoutError::Disconnected) {
            return; // never released: the coordinator counts this request as timed out
        }
        let start_offset = self
            .release_at
            .get()
            .map(Instant::elapsed)
            .unwrap_or_default();
        let record = target::execute(&self.spec, param.as_deref(), start_offset);
        let _ = self.results.send(record);
    }
}
