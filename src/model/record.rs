//! What requests measured, one record each, and a step's records before aggregation.

use std::time::Duration;

use crate::model::outcome::Failure;

/// What one request measured.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request started, from the step's release; None when it never ran.
    pub start_offset: Option<Duration>,
    /// From when the request should have started to when it did: its wait in the pool's
    /// queue, or its lag behind the rate schedule. None in burst mode.
    pub queue_wait: Option<Duration>,
    pub connect: Option<Duration>,
    pub query: Option<Duration>,
    /// What the user waits: the queue wait (if any) plus the service time.
    pub latency: Duration,
    pub outcome: Result<(), Failure>,
    /// Which host of the target's list the request's connection reached (from 0); None when
    /// it reached none, or the target has one host.
    pub node: Option<u8>,
    /// Which client sent it: the pool worker or the rate sender (from 0); None where each
    /// request is a client of its own (a thread per request). An outage is measured per client.
    pub client: Option<u32>,
}

impl RequestRecord {
    /// A request that never ran: its thread could not start, or it missed its deadline.
    pub fn failed_without_running(failure: Failure, latency: Duration) -> Self {
        RequestRecord {
            start_offset: None,
            queue_wait: None,
            connect: None,
            query: None,
            latency,
            outcome: Err(failure),
            node: None,
            client: None,
        }
    }

    /// The time from the request's actual start to its end (the latency without the wait).
    pub fn service(&self) -> Duration {
        self.latency
            .saturating_sub(self.queue_wait.unwrap_or_default())
    }

    /// From its start to its end, from the step's release; None when it never ran.
    pub fn in_flight(&self) -> Option<(Duration, Duration)> {
        self.start_offset
            .map(|start| (start, start + self.service()))
    }

    /// From its connection being ready to its end; None when it never had one. A request on a
    /// connection kept open (pool mode) ran a query without connecting: connected from its start.
    pub fn connected(&self) -> Option<(Duration, Duration)> {
        let (start, end) = self.in_flight()?;
        self.query?;
        Some(((start + self.connect.unwrap_or_default()).min(end), end))
    }

    /// The same request seen by someone who queued it `wait` before it started.
    pub fn after_waiting(mut self, wait: Duration) -> Self {
        self.queue_wait = Some(wait);
        self.latency += wait;
        self
    }
}

/// What one step measured, before aggregation.
#[derive(Debug, Default)]
pub struct StepRun {
    pub records: Vec<RequestRecord>,
    /// Requests the client could not send when they were due (rate mode): a client limit.
    pub dropped: u32,
    /// Requests of the plan never sent because the step was cut short (Ctrl-C, a stop).
    pub unsent: u32,
    /// From the step's start to its first request's release.
    pub launch: Duration,
    /// From the release to the last request's end (or the step's deadline).
    pub wall: Duration,
    /// Sent by agents: each one's share, in the order of `records`. Empty on one machine.
    pub agents: Vec<crate::model::fleet::AgentStep>,
    /// An agent was lost during the step (why): the step is incomplete and the run stops.
    pub lost: Option<String>,
    /// Hold mode: the connections held and what holding them cost.
    pub hold: Option<crate::model::hold::HoldStep>,
}

/// Requests of the step in flight that have ended so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub done: u32,
    pub ok: u32,
    pub failed: u32,
}

impl Tally {
    pub fn count(&mut self, record: &RequestRecord) {
        self.done += 1;
        match record.outcome {
            Ok(()) => self.ok += 1,
            Err(_) => self.failed += 1,
        }
    }
}

/// Told of each request's end while a step runs (live progress); the engine itself never
/// prints. Called on the thread that collects the results, so it must return quickly.
pub trait StepObserver {
    fn request_ended(&self, tally: Tally);
    /// The record of the request that just ended, before its `request_ended` (live metrics).
    /// Engines that hear only counts (agents' heartbeats) never call it.
    fn record_ended(&self, _record: &RequestRecord) {}
}
