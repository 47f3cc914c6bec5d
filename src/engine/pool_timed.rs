//! A timed pool step (`--mode pool --duration D`), like `pgbench -c SIZE -T D`: the step's size
//! is the requests kept on the queue all along (waiting, or on a worker), each answered one
//! replaced at once by the next, until the time is over. Then the requests still waiting are
//! withdrawn (never sent, never counted: as pgbench starts no transaction after `-T`), and
//! those on a worker finish within their deadline.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::{Job, Pool};
use crate::engine::{REPORT_GRACE, hold_until};
use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::{RequestRecord, StepObserver, StepRun, Tally};

/// A timed step's requests as they come back: counted, timed from the step's release, and
/// shown to the observer.
struct Collected<'a> {
    records: Vec<RequestRecord>,
    last_end: Duration,
    tally: Tally,
    origin: Instant,
    observer: Option<&'a dyn StepObserver>,
}

impl Collected<'_> {
    fn take(&mut self, record: RequestRecord) {
        if let Some(observer) = self.observer {
            self.tally.count(&record);
            observer.request_ended(self.tally);
        }
        let end = match record.start_offset {
            Some(start) => start + record.service(),
            None => self.origin.elapsed(),
        };
        self.last_end = self.last_end.max(end);
        self.records.push(record);
    }

    /// The requests still out at `give_up` count as timeouts: pgstress's own deadline.
    fn give_up_on(&mut self, outstanding: usize, give_up: Instant) {
        if outstanding == 0 {
            return;
        }
        self.last_end = give_up - self.origin;
        let failure = Failure::new(
            FailureClass::Timeout,
            "no answer within the deadline (pgstress's own)",
        );
        let records = (0..outstanding)
            .map(|_| RequestRecord::failed_without_running(failure.clone(), give_up - self.origin));
        self.records.extend(records);
    }
}

/// How often a timed step looks for Ctrl-C while no answer comes.
const LOOK_EVERY: Duration = Duration::from_millis(100);

impl Pool {
    /// Runs one timed step: `size` requests queued at its release, each answered one replaced
    /// by the next value of `deck` (from the top again when it runs out) until `duration` is
    /// over, or Ctrl-C cuts it short (then partial: its withdrawn requests, at least one,
    /// count as unsent).
    pub(super) fn run_timed(
        &mut self,
        step: u32,
        deck: Vec<Option<String>>,
        size: usize,
        duration: Duration,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun {
        let origin = hold_until(self.release.take());
        let mut collected = Collected {
            records: Vec::new(),
            last_end: Duration::ZERO,
            tally: Tally::default(),
            origin,
            observer,
        };
        let mut values = deck.iter().cycle().cloned();
        let timing = Timing {
            step,
            origin,
            end: origin + duration,
            // A request waits at most its share of rounds of the queue, each within a deadline.
            wait_bound: self.drain_bound(size),
        };
        let give_up = timing.end + timing.wait_bound + self.timeout + REPORT_GRACE;
        let mut outstanding = 0usize;
        for _ in 0..size {
            outstanding += self.queue(&timing, values.next().flatten(), &mut collected);
        }
        let mut cut = None;
        while outstanding > 0 {
            let now = Instant::now();
            let interrupted = crate::sys::interrupt::requested();
            if cut.is_none() && (now >= timing.end || interrupted) {
                // What the workers have not taken yet is never sent.
                let mut withdrawn = 0;
                while self.leftovers.try_recv().is_ok() {
                    withdrawn += 1;
                }
                outstanding -= withdrawn;
                cut = Some(match now < timing.end {
                    true => withdrawn.max(1) as u32,
                    false => 0,
                });
                // The step lasted until here, whenever its last answer came.
                collected.last_end = collected.last_end.max(now.min(timing.end) - origin);
                continue;
            }
            let wake = match cut {
                Some(_) => give_up,
                None => timing.end.min(now + LOOK_EVERY),
            };
            match self.results.recv_deadline(wake) {
                Ok((tag, record)) if tag == step => {
                    outstanding -= 1;
                    collected.take(record);
                    if cut.is_none() && Instant::now() < timing.end {
                        outstanding += self.queue(&timing, values.next().flatten(), &mut collected);
                    }
                }
                // A late answer of an earlier step, counted there already.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) if Instant::now() < give_up => {}
                Err(_) => break,
            }
        }
        collected.give_up_on(outstanding, give_up);
        StepRun {
            records: collected.records,
            unsent: cut.unwrap_or(0),
            wall: collected.last_end,
            ..StepRun::default()
        }
    }

    /// Puts one request on the queue; 1 when it is there, 0 when the queue refused it (the
    /// workers are gone), which is that request's failure.
    fn queue(
        &self,
        timing: &Timing,
        param: Option<String>,
        collected: &mut Collected<'_>,
    ) -> usize {
        let jobs = self
            .jobs
            .as_ref()
            .expect("the queue lives as long as the pool");
        let enqueued = Instant::now();
        let job = Job {
            step: timing.step,
            param,
            origin: timing.origin,
            enqueued,
            start_by: enqueued + timing.wait_bound,
        };
        // The queue holds the largest step, and a timed step keeps at most its size on it.
        match jobs.try_send(job) {
            Ok(()) => 1,
            Err(_) => {
                collected.take(RequestRecord::failed_without_running(
                    Failure::new(FailureClass::Io, "the pool's queue is not taking requests"),
                    timing.origin.elapsed(),
                ));
                0
            }
        }
    }
}

/// A timed step's clock: its release, its end, and how long a request may wait for a worker.
struct Timing {
    step: u32,
    origin: Instant,
    end: Instant,
    wait_bound: Duration,
}
