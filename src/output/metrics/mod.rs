//! The run's metrics for Prometheus: requests by outcome and failure class, latency
//! histograms, the step in flight, each side's CPU, the server's sessions and the verdict so
//! far, kept in `prometheus-client`'s registry (Prometheus's own Rust client, which encodes both
//! the Prometheus text format and OpenMetrics) and served live by `endpoint`.
//!
//! A request is counted the moment it ends, as the engine hands its record over; when the step
//! ends, its records as the step logged them are counted again less those already counted, so
//! the totals are the summary's exactly, whatever arrived late or never (a timeout pgstress
//! filled in, a thread that never started, an agent's share that came whole at the end).

pub mod endpoint;
mod families;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

pub use families::RunLabels;
use families::{CPU_SIDES, Families, PERCENTILES, failure_labels};

use crate::judge::verdict::Verdict;
use crate::model::outcome::FailureClass;
use crate::model::record::{RequestRecord, StepRun};
use crate::model::sample::{CpuSample, PoolerViewSample, ServerStatsSample};
use crate::model::step::StepResult;

/// The content type of the Prometheus text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// The content type of OpenMetrics' text format, version 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What tells one record from another within a step, as far as the metrics see it.
type Fingerprint = (Option<FailureClass>, Duration, Option<Duration>);

fn fingerprint(record: &RequestRecord) -> Fingerprint {
    let class = record.outcome.as_ref().err().map(|failure| failure.class);
    (class, record.latency, record.queue_wait)
}

/// The step in flight, as the live counts saw it.
#[derive(Debug, Default)]
struct Live {
    /// The records of the step counted as they ended, by fingerprint.
    seen: HashMap<Fingerprint, u32>,
    requests: u32,
    concurrency: Option<u32>,
}

/// One run's metrics, shared by the step loop, the samplers and the endpoint.
#[derive(Debug)]
pub struct RunMetrics {
    registry: Registry,
    families: Families,
    live: Mutex<Live>,
}

/// A step as it ended: its records, its aggregate, and the verdict on the steps so far.
pub struct StepEnd<'a> {
    pub run: &'a StepRun,
    pub result: &'a StepResult,
    pub handled: bool,
    pub verdict: &'a Verdict,
}

impl RunMetrics {
    pub fn new(run: &RunLabels) -> Self {
        let (registry, families) = families::register(run);
        RunMetrics {
            registry,
            families,
            live: Mutex::new(Live::default()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A step starts: its index, its load, its requests and how many of them may run at once.
    pub fn begin_step(&self, step: u32, load: u32, requests: u32, concurrency: Option<u32>) {
        let f = &self.families;
        *self.live() = Live {
            seen: HashMap::new(),
            requests,
            concurrency,
        };
        f.step.set(i64::from(step));
        f.step_load.set(i64::from(load));
        f.step_requests.set(i64::from(requests));
        self.step_progress(0);
    }

    /// A request of the step in flight ended: counted now.
    pub fn record_ended(&self, record: &RequestRecord) {
        *self.live().seen.entry(fingerprint(record)).or_insert(0) += 1;
        self.count(record);
    }

    /// `ended` requests of the step in flight have ended so far.
    pub fn step_progress(&self, ended: u32) {
        let live = self.live();
        let pending = live.requests.saturating_sub(ended);
        let in_flight = live.concurrency.map_or(pending, |most| pending.min(most));
        self.families.step_ended.set(i64::from(ended));
        self.families.in_flight.set(i64::from(in_flight));
    }

    fn count(&self, record: &RequestRecord) {
        let f = &self.families;
        match &record.outcome {
            Ok(()) => {
                f.requests.get_or_create(&[("outcome", "ok")]).inc();
                f.latency.observe(record.latency.as_secs_f64());
            }
            Err(failure) => {
                f.requests.get_or_create(&[("outcome", "failed")]).inc();
                f.failures
                    .get_or_create(&failure_labels(failure.class))
                    .inc();
            }
        }
        if let Some(wait) = record.queue_wait {
            f.queue_wait.observe(wait.as_secs_f64());
        }
    }

    /// The step ended: its records not counted yet, its requests never sent, its figures and
    /// the verdict so far.
    pub fn end_step(&self, end: &StepEnd<'_>) {
        let f = &self.families;
        let mut seen = std::mem::take(&mut self.live().seen);
        for record in &end.run.records {
            match seen.get_mut(&fingerprint(record)) {
                Some(left) if *left > 0 => *left -= 1,
                _ => self.count(record),
            }
        }
        let never_sent = [("dropped", end.run.dropped), ("unsent", end.run.unsent)];
        for (outcome, count) in never_sent {
            f.requests
                .get_or_create(&[("outcome", outcome)])
                .inc_by(u64::from(count));
        }
        let handled = if end.handled { "true" } else { "false" };
        f.steps.get_or_create(&[("handled", handled)]).inc();
        self.step_figures(end.result, end.handled);
        self.verdict(end.verdict);
        self.step_progress(end.run.records.len() as u32);
        f.in_flight.set(0);
    }

    fn step_figures(&self, result: &StepResult, handled: bool) {
        let f = &self.families;
        let or_nan = |value: Option<f64>| value.unwrap_or(f64::NAN);
        for (label, percentile) in PERCENTILES {
            // Whole microseconds, as measured: 0.003001, not 0.0030009999999999999.
            let seconds = (result.latency_ms(percentile)).map(|ms| (ms * 1000.0).round() / 1e6);
            f.last_latency
                .get_or_create(&[("percentile", label)])
                .set(or_nan(seconds));
        }
        f.last_throughput.set(result.throughput());
        f.last_handled.set(i64::from(handled));
        f.last_wait_share.set(or_nan(result.cpu.client_wait_share));
        if let Some(wait_ms) = result.cpu.client_wait_ms {
            f.client_cpu_wait.inc_by(wait_ms / 1000.0);
        }
    }

    fn verdict(&self, verdict: &Verdict) {
        let f = &self.families;
        f.capacity.set(i64::from(verdict.capacity.unwrap_or(0)));
        let (step, load) = verdict
            .breaking_point
            .as_ref()
            .map_or((0, 0), |bp| (bp.step, bp.load));
        f.breaking_step.set(i64::from(step));
        f.breaking_load.set(i64::from(load));
    }

    /// A CPU sample: each side's share of the host's CPUs.
    pub fn cpu_sample(&self, sample: &CpuSample) {
        let shares = [
            Some(sample.host_cpu_pct),
            Some(sample.process_cpu_pct),
            sample.server_cpu_pct,
            sample.pooler_cpu_pct,
        ];
        for (side, pct) in CPU_SIDES.into_iter().zip(shares) {
            if let Some(pct) = pct {
                let gauge = self.families.cpu.get_or_create(&[("side", side)]);
                gauge.set(pct / 100.0);
            }
        }
    }

    /// A reading of the run's sessions on the server.
    pub fn server_sample(&self, sample: &ServerStatsSample) {
        let sessions = &self.families.server_sessions;
        let states = [("open", sample.connections), ("active", sample.active)];
        for (state, count) in states {
            sessions
                .get_or_create(&[("state", state)])
                .set(i64::from(count));
        }
    }

    /// A reading of the pooler's own view.
    pub fn pooler_sample(&self, sample: &PoolerViewSample) {
        (self.families.pooler_waiting).set(i64::from(sample.clients_waiting));
    }

    /// The run ended: the gates as judged (text, and why breached), and the run complete.
    pub fn finish(&self, gates: &[(String, Option<String>)]) {
        for (gate, breached) in gates {
            let gauge = self.families.gates.get_or_create(&[("gate", gate.clone())]);
            gauge.set(i64::from(breached.is_some()));
        }
        self.families.complete.set(1);
    }

    /// Every family in the Prometheus text format (0.0.4): what `promtool`, the Pushgateway and
    /// node_exporter's textfile collector read.
    pub fn text(&self) -> String {
        let mut out = String::new();
        // Writing into a String fails only on a metric's own error, which these never raise.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Every family in OpenMetrics' text format, ending with `# EOF`.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
