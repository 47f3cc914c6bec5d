//! The rate engine: an open loop. Step i offers `i * step` requests per second: each request is
//! due at a scheduled time and starts then, whatever the earlier ones are doing, as real users
//! arrive. Latency counts from the due time (coordinated omission corrected, as wrk2 and
//! pgbench -R do); a request that cannot be sent when due is dropped and counted, never delayed.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError, bounded};
use rand::{Rng, RngExt};

use super::crew::Crew;
use super::{EXIT_GRACE, Engine, REPORT_GRACE, Tagged, gather, guarded, hold_until};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::plan::Arrival;
use crate::model::record::RequestRecord;
use crate::model::record::{StepObserver, StepRun};
use crate::pg::request::{self, RequestSpec};

pub struct Rate {
    spec: Arc<RequestSpec>,
    duration: Duration,
    arrival: Arrival,
    /// None: a thread per request.
    max_inflight: Option<u32>,
    /// The request threads (and the workers of `max_inflight`), kept from step to step.
    crew: Crew,
    release: Option<Instant>,
}

/// The due times of a step's requests, from its start, in order. Poisson arrivals are the
/// step's exact count at uniformly drawn times: a Poisson process given its count.
pub fn schedule<R: Rng + ?Sized>(
    requests: usize,
    duration: Duration,
    arrival: Arrival,
    rng: &mut R,
) -> Vec<Duration> {
    match arrival {
        Arrival::Uniform => (0..requests)
            .map(|k| duration.mul_f64(k as f64 / requests as f64))
            .collect(),
        Arrival::Poisson => {
            let mut times: Vec<Duration> = (0..requests)
                .map(|_| duration.mul_f64(rng.random::<f64>()))
                .collect();
            times.sort();
            times
        }
    }
}

impl Rate {
    pub fn new(
        spec: Arc<RequestSpec>,
        duration: Duration,
        arrival: Arrival,
        max_inflight: Option<u32>,
        stack_size: usize,
    ) -> Self {
        Rate {
            spec,
            duration,
            arrival,
            max_inflight,
            crew: Crew::new(stack_size),
            release: None,
        }
    }
}

/// A request handed to a worker at its due time.
struct Due {
    param: Option<String>,
    at: Instant,
}

impl Engine for Rate {
    fn describe(&self) -> String {
        let arrival = match self.arrival {
            Arrival::Uniform => "evenly spaced",
            Arrival::Poisson => "at random (Poisson)",
        };
        let senders = match self.max_inflight {
            None => "a thread per request".to_owned(),
            Some(m) => format!("{m} workers (a request due while all are busy is dropped)"),
        };
        format!(
            "rate: step i offers i * step requests per second for {}, {arrival}, from {senders}, \
             a new connection per request",
            humantime::format_duration(self.duration)
        )
    }

    /// Unknown before the step: how many overlap depends on the server's latency.
    fn concurrency(&self, _size: u32) -> Option<u32> {
        None
    }

    fn step_bound(&self, _size: u32) -> Duration {
        self.duration + self.spec.timeout + REPORT_GRACE + EXIT_GRACE
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
        let due_times = schedule(params.len(), self.duration, self.arrival, &mut rand::rng());
        let (results_tx, results_rx) = crossbeam_channel::unbounded::<Tagged>();
        let mut failed_to_start = Vec::new();
        let mut dropped = 0;

        // With a worker set, a request is handed over only to a worker waiting for it.
        let (due_tx, due_rx) = bounded::<Due>(0);
        let origin = hold_until(self.release.take());
        for index in 0..self.max_inflight.unwrap_or(0) {
            let worker = Sender::clone(&results_tx);
            let (spec, due_rx) = (Arc::clone(&self.spec), due_rx.clone());
            let body = move || {
                while let Ok(due) = due_rx.recv() {
                    let mut record = send_request(&spec, due, origin);
                    record.client = Some(index); // the sender: an outage is measured per client
                    let _ = worker.send((step, record));
                }
            };
            match self.crew.run(body) {
                Ok(()) => {}
                Err(_) => break, // fewer workers: more drops, which the step reports
            }
        }
        drop(due_rx);

        let mut sent = 0;
        let planned = params.len() as u32;
        for (param, offset) in params.into_iter().zip(due_times) {
            if crate::sys::interrupt::requested() {
                break; // the rest of the step is never sent: the step is partial
            }
            let at = origin + offset;
            thread::sleep(at.saturating_duration_since(Instant::now()));
            let due = Due { param, at };
            if self.max_inflight.is_some() {
                match due_tx.try_send(due) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => dropped += 1,
                }
                continue;
            }
            let (spec, results) = (Arc::clone(&self.spec), results_tx.clone());
            match self.crew.run(move || {
                let _ = results.send((step, send_request(&spec, due, origin)));
            }) {
                Ok(()) => sent += 1,
                Err(err) => failed_to_start.push(
                    RequestRecord::failed_without_running(
                        Failure::new(FailureClass::Spawn, format!("cannot start a thread: {err}")),
                        Duration::ZERO,
                    )
                    .after_waiting(at.elapsed()),
                ),
            }
        }
        drop((due_tx, results_tx));

        let deadline = origin + self.duration + self.spec.timeout + REPORT_GRACE;
        let (mut records, wall) = gather(&results_rx, None, step, sent, origin, deadline, observer);
        let unsent = planned - sent as u32 - dropped - failed_to_start.len() as u32;
        records.extend(failed_to_start);
        StepRun {
            records,
            dropped,
            unsent,
            launch: Duration::ZERO,
            wall,
            ..StepRun::default()
        }
    }
}

/// Sends one request that was due at `due.at`: its lag behind the schedule is its wait. The
/// thread's wait for a CPU is published before the record is handed over.
fn send_request(spec: &RequestSpec, due: Due, origin: Instant) -> RequestRecord {
    let started = Instant::now();
    let lag = started.saturating_duration_since(due.at);
    let start_offset = started - origin;
    let record = guarded(start_offset, || {
        request::execute(spec, due.param.as_deref(), start_offset)
    })
    .after_waiting(lag);
    crate::sys::schedstat::publish_own_wait();
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn uniform_schedule_is_evenly_spaced_within_the_duration() {
        let times = schedule(
            4,
            Duration::from_secs(1),
            Arrival::Uniform,
            &mut rand::rng(),
        );
        let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 250, 500, 750]);
    }

    #[test]
    fn poisson_schedule_keeps_the_count_in_order_within_the_duration() {
        let mut rng = StdRng::seed_from_u64(3);
        let times = schedule(500, Duration::from_secs(2), Arrival::Poisson, &mut rng);
        assert_eq!(times.len(), 500);
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(times.iter().all(|t| *t < Duration::from_secs(2)));
        // Random, not evenly spaced: the gaps vary.
        let gaps: Vec<Duration> = times.windows(2).map(|p| p[1] - p[0]).collect();
        assert!(gaps.iter().max() > gaps.iter().min());
    }
}
