//! The pool engine: the queue the original's author proposed. A fixed set of workers, each with
//! its own connection, take a step's requests from a bounded queue, so the server never sees
//! more than `workers` of them at once; the rest wait their turn, and that wait is measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::{Engine, POOL_THREAD, REPORT_GRACE, Tagged, gather, guarded, hold_until, reap};
use crate::model::plan::StepPlan;

#[path = "pool_timed.rs"]
mod timed;
use crate::model::outcome::{Failure, FailureClass};
use crate::model::plan::Reconnect;
use crate::model::record::RequestRecord;
use crate::model::record::{StepObserver, StepRun};
use crate::pg::request::kept::{self, Kept};
use crate::pg::request::{self, RequestSpec};

/// Connections the default pool leaves to others (psql, monitoring, pgstress's own).
pub const CONNECTION_MARGIN: u32 = 3;
/// A worker whose connection died waits about this long before reconnecting, doubling up to
/// `--reconnect-max` while the server keeps refusing.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// A worker's thread stack: it holds one client, like a burst request thread.
const WORKER_STACK: usize = 256 * 1024;

/// The wait after a failed connect that follows `backoff`: doubled, up to `max`.
fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    (backoff * 2).min(max)
}

/// The wait actually taken for a backoff: between half of it and all of it, at random, so
/// that workers dropped together do not knock on the new server together ("equal jitter").
fn jittered(backoff: Duration) -> Duration {
    use rand::RngExt;
    backoff.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// The default pool size: what the server accepts minus a margin, no more than the largest step.
pub fn default_workers(usable_connections: u32, largest_step: u32) -> u32 {
    usable_connections
        .saturating_sub(CONNECTION_MARGIN)
        .clamp(1, largest_step.max(1))
}

/// One request waiting in the queue.
struct Job {
    step: u32,
    param: Option<String>,
    /// When the step put its requests on the queue.
    origin: Instant,
    enqueued: Instant,
    /// Past this the request is not started: it has waited longer than the step allows.
    start_by: Instant,
}

pub struct Pool {
    workers: u32,
    prepare: request::Prepare,
    connect_per_request: bool,
    /// The deadline of one request, from the spec every worker shares.
    timeout: Duration,
    jobs: Option<Sender<Job>>,
    /// The pool's own end of the queue, to empty it of a previous step's leftovers.
    leftovers: Receiver<Job>,
    results: Receiver<Tagged>,
    /// The step being run: a worker drops a job of another step instead of running it late.
    current_step: Arc<AtomicU32>,
    handles: Vec<JoinHandle<()>>,
    /// Workers whose first connection opened before step 1.
    pub connected_at_start: u32,
    release: Option<Instant>,
    /// Each step lasts this long, keeping its size queued (`Pool::timed`); None: each step's
    /// requests are queued once and drained.
    timed: Option<(Duration, StepPlan)>,
}

impl Pool {
    /// Starts the workers and, unless each request connects anew, opens their connections
    /// before the first step (in parallel, within the request deadline).
    pub fn start(
        spec: Arc<RequestSpec>,
        workers: u32,
        connect_per_request: bool,
        queue_capacity: usize,
        reconnect: Reconnect,
    ) -> std::io::Result<Self> {
        let (timeout, prepare) = (spec.timeout, spec.prepare);
        let (jobs_tx, jobs_rx) = bounded::<Job>(queue_capacity.max(1));
        let (results_tx, results_rx) = crossbeam_channel::unbounded::<Tagged>();
        let (ready_tx, ready_rx) = bounded::<bool>(workers as usize);
        let current_step = Arc::new(AtomicU32::new(0));
        let mut handles = Vec::with_capacity(workers as usize);
        for index in 0..workers {
            let worker = Worker {
                spec: Arc::clone(&spec),
                jobs: jobs_rx.clone(),
                results: results_tx.clone(),
                current_step: Arc::clone(&current_step),
                connect_per_request,
                session: None,
                backoff: FIRST_BACKOFF,
                next_attempt: Instant::now(),
                index,
                reconnect,
                lost: None,
            };
            let ready = ready_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("{POOL_THREAD}{index}"))
                .stack_size(WORKER_STACK)
                .spawn(move || worker.run(ready))?;
            handles.push(handle);
        }
        drop(ready_tx);
        let deadline = Instant::now() + timeout + REPORT_GRACE;
        let connected_at_start = (0..workers)
            .map_while(|_| ready_rx.recv_deadline(deadline).ok())
            .filter(|connected| *connected)
            .count() as u32;
        Ok(Pool {
            workers,
            prepare,
            connect_per_request,
            timeout,
            jobs: Some(jobs_tx),
            leftovers: jobs_rx,
            results: results_rx,
            current_step,
            handles,
            connected_at_start,
            release: None,
            timed: None,
        })
    }

    /// Each step lasts `duration`, as `pgbench -T` does: the plan's size of the step is the
    /// requests kept on the queue (waiting, or on a worker) all along, each answered one
    /// replaced at once by the next until the time is over; then those still waiting are
    /// withdrawn (never sent, never counted) and those on a worker finish. The step's values
    /// are a deck (`Mode::values_for`) its requests take in turn.
    pub fn timed(mut self, duration: Duration, plan: StepPlan) -> Self {
        self.timed = Some((duration, plan));
        self
    }

    /// How long the queue takes to drain at worst: each worker serves its share of the step
    /// one request after another, each within the request deadline.
    fn drain_bound(&self, requests: usize) -> Duration {
        let rounds = requests.div_ceil(self.workers as usize).max(1) as u32;
        self.timeout * rounds
    }
}

impl Engine for Pool {
    fn describe(&self) -> String {
        let connections = match self.connect_per_request {
            true => "a new connection per request".to_owned(),
            false => format!(
                "a persistent connection each ({} of {} opened before step 1), {}",
                self.connected_at_start,
                self.workers,
                match self.prepare {
                    request::Prepare::Once => "the query prepared once on it",
                    request::Prepare::Never => "the query parsed with every request",
                }
            ),
        };
        let queue = match self.timed {
            Some((duration, _)) => format!(
                "keep each step's size of requests queued for {}, replacing each answered one",
                humantime::format_duration(duration)
            ),
            None => "take each step's requests from a queue".to_owned(),
        };
        format!("pool: {} workers {queue}, {connections}", self.workers)
    }

    fn concurrency(&self, size: u32) -> Option<u32> {
        Some(size.min(self.workers))
    }

    fn step_bound(&self, size: u32) -> Duration {
        match self.timed {
            // The time, then the requests on a worker finish (the rest are withdrawn).
            Some((duration, _)) => duration + self.timeout + REPORT_GRACE,
            None => self.drain_bound(size as usize) + REPORT_GRACE,
        }
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
        while self.leftovers.try_recv().is_ok() {}
        self.current_step.store(step, Ordering::SeqCst);
        if let Some((duration, plan)) = self.timed {
            let size = (plan.requests_at(step) as usize).min(params.len());
            return self.run_timed(step, params, size, duration, observer);
        }
        let requests = params.len();
        let origin = hold_until(self.release.take());
        let start_by = origin + self.drain_bound(requests);
        let jobs = self
            .jobs
            .as_ref()
            .expect("the queue lives as long as the pool");
        let mut records = Vec::new();
        for param in params {
            let job = Job {
                step,
                param,
                origin,
                enqueued: Instant::now(),
                start_by,
            };
            // The queue holds the largest step, and the previous step's leftovers are gone:
            // a full queue means the workers are gone too.
            if jobs.send_deadline(job, start_by).is_err() {
                records.push(RequestRecord::failed_without_running(
                    Failure::new(FailureClass::Io, "the pool's queue is not taking requests"),
                    origin.elapsed(),
                ));
            }
        }
        let expected = requests - records.len();
        let deadline = start_by + self.timeout + REPORT_GRACE;
        let (answered, wall) = gather(
            &self.results,
            None,
            step,
            expected,
            origin,
            deadline,
            observer,
        );
        records.extend(answered);
        StepRun {
            records,
            dropped: 0,
            unsent: 0,
            launch: Duration::ZERO,
            wall,
            ..StepRun::default()
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Workers stop when the queue closes; one stuck on a dead server is left detached.
        self.jobs = None;
        self.current_step.store(u32::MAX, Ordering::SeqCst);
        reap(std::mem::take(&mut self.handles), REPORT_GRACE);
    }
}

/// One worker thread and its connection.
struct Worker {
    spec: Arc<RequestSpec>,
    jobs: Receiver<Job>,
    results: Sender<Tagged>,
    current_step: Arc<AtomicU32>,
    connect_per_request: bool,
    session: Option<Kept>,
    backoff: Duration,
    /// After a failed connect, the next attempt waits until here.
    next_attempt: Instant,
    /// The worker's number: its requests' client.
    index: u32,
    reconnect: Reconnect,
    /// With `--reconnect=false`, the failure that ended the worker's connection for good.
    lost: Option<Failure>,
}

impl Worker {
    fn run(mut self, ready: Sender<bool>) {
        // Kept from step to step: its wait for a CPU is read at the steps' edges.
        let _watched = crate::sys::schedstat::watch_this_thread();
        if !self.connect_per_request {
            let _ = self.reconnect();
        }
        let _ = ready.send(self.session.is_some());
        drop(ready);
        // Ends when the pool closes the queue.
        while let Ok(job) = self.jobs.recv() {
            if job.step != self.current_step.load(Ordering::SeqCst) {
                continue; // a leftover of a step that has been counted already
            }
            // A panic (a library out of files) is this request's failure, the client's; the
            // worker lives on, its connection dropped in case the panic left it half-used.
            let mut record = guarded(job.origin.elapsed(), || self.serve(&job));
            record.client = Some(self.index);
            if record
                .outcome
                .as_ref()
                .is_err_and(|f| f.class == FailureClass::Client)
            {
                self.session = None;
            }
            let _ = self.results.send((job.step, record));
        }
    }

    fn serve(&mut self, job: &Job) -> RequestRecord {
        if Instant::now() > job.start_by {
            return RequestRecord::failed_without_running(
                Failure::new(
                    FailureClass::Timeout,
                    "waited in the pool's queue past the step's deadline",
                ),
                Duration::ZERO,
            )
            .after_waiting(job.enqueued.elapsed());
        }
        if let Some(lost) = &self.lost {
            // Told not to reconnect: the worker is done, and says why for each request it takes.
            let failure = Failure::new(
                lost.class,
                format!(
                    "the worker's connection was lost and --reconnect=false: {}",
                    lost.message
                ),
            );
            return RequestRecord::failed_without_running(failure, Duration::ZERO)
                .after_waiting(job.enqueued.elapsed());
        }
        if self.session.is_none() && !self.connect_per_request {
            // A dead connection is replaced, but not faster than the backoff allows; the
            // backoff is part of the request's wait.
            let wait_until = self.next_attempt.min(job.start_by);
            thread::sleep(wait_until.saturating_duration_since(Instant::now()));
        }
        let started = Instant::now();
        let start_offset = started - job.origin;
        let waited = started - job.enqueued;
        let param = job.param.as_deref();
        if self.connect_per_request {
            return request::execute(&self.spec, param, start_offset).after_waiting(waited);
        }
        let connect = match self.session {
            Some(_) => None,
            None => match self.reconnect() {
                Ok(()) => Some(started.elapsed()),
                Err(failure) => {
                    let mut record =
                        RequestRecord::failed_without_running(failure, started.elapsed());
                    record.start_offset = Some(start_offset);
                    self.give_up_unless_reconnecting(&record);
                    return record.after_waiting(waited);
                }
            },
        };
        let session = self.session.as_mut().expect("connected above");
        let (mut record, usable) = session.execute(&self.spec, param, start_offset);
        if let Some(connect) = connect {
            record.connect = Some(connect);
            record.latency += connect;
        }
        record.outcome =
            request::within_deadline(record.outcome, record.latency, self.spec.timeout);
        if !usable {
            self.session = None;
            self.give_up_unless_reconnecting(&record);
        }
        record.after_waiting(waited)
    }

    /// With `--reconnect=false`, a worker whose connection failed takes no new one.
    fn give_up_unless_reconnecting(&mut self, record: &RequestRecord) {
        if !self.reconnect.enabled
            && let Err(failure) = &record.outcome
        {
            self.lost = Some(failure.clone());
        }
    }

    fn reconnect(&mut self) -> Result<(), Failure> {
        // A connection kept from step to step that left no descriptor free below those kept
        // for pgstress's own files would cost the run its summary: let go, the client's limit.
        let opened = kept::open(&self.spec).and_then(|session| {
            match crate::sys::limits::outputs_untouched() {
                true => Ok(session),
                false => Err(Failure::new(
                    FailureClass::Client,
                    format!(
                        "too many open files: the last {} below the open-file limit are kept for pgstress's own files",
                        crate::sys::limits::KEPT_FOR_OUTPUTS
                    ),
                )),
            }
        });
        match opened {
            Ok(session) => {
                self.session = Some(session);
                self.backoff = FIRST_BACKOFF;
                Ok(())
            }
            Err(failure) => {
                self.next_attempt = Instant::now() + jittered(self.backoff);
                self.backoff = next_backoff(self.backoff, self.reconnect.max);
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_leaves_a_margin_and_never_exceeds_the_largest_step() {
        assert_eq!(default_workers(97, 750), 94);
        assert_eq!(default_workers(97, 20), 20);
        assert_eq!(default_workers(2, 750), 1, "at least one worker");
    }

    #[test]
    fn the_backoff_doubles_from_10_ms_up_to_its_cap_and_is_jittered_within_half() {
        let max = Duration::from_secs(1);
        for backoff in [FIRST_BACKOFF, max] {
            let wait = jittered(backoff);
            assert!(
                wait >= backoff / 2 && wait <= backoff,
                "{wait:?} for {backoff:?}"
            );
        }
        let waits: Vec<u128> =
            std::iter::successors(Some(FIRST_BACKOFF), |b| Some(next_backoff(*b, max)))
                .take(10)
                .map(|b| b.as_millis())
                .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }
}
