//! The metric families of a run, each declared once with its name, help and labels; the same
//! registry is encoded for the live endpoint (both text formats) and the end-of-run file.
//! Every family carries the run's id and mode as constant labels. No label holds a secret:
//! the values are pgstress's own words (outcomes, classes, sides) and the user's gate texts.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::model::outcome::{FailureClass, Side};

/// A label set of one pgstress word.
pub type Word = [(&'static str, &'static str); 1];
/// A label set of two.
pub type Words = [(&'static str, &'static str); 2];
/// A gauge of a figure with a fraction.
pub type Real = Gauge<f64, AtomicU64>;

/// What a request's end was: the four add up to the summary's `requests`.
pub const OUTCOMES: [&str; 4] = ["ok", "failed", "dropped", "unsent"];
/// The sides whose CPU is sampled.
pub const CPU_SIDES: [&str; 4] = ["host", "pgstress", "server", "pooler"];
/// The percentiles of the last step, exact from its HDR histogram.
pub const PERCENTILES: [(&str, f64); 3] = [("50", 50.0), ("90", 90.0), ("99", 99.0)];

/// Latency buckets, in seconds: the R10 series (ten a decade, each 1.25 times the one before)
/// from 0.1 ms to 100 s, so that `histogram_quantile` is within about 12% of the true
/// percentile at any latency a run can see.
pub fn latency_buckets() -> Vec<f64> {
    const R10: [f64; 10] = [1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0];
    // Through the decimal text, so that each bound is the double nearest its decimal value
    // and is written back as short as it was (0.000125, not 0.00012500000000000001).
    let bound = |mantissa: f64, exponent: i32| {
        format!("{mantissa}e{exponent}")
            .parse::<f64>()
            .expect("a decimal in scientific notation")
    };
    let mut buckets: Vec<f64> = (-4..2)
        .flat_map(|exponent| R10.map(|mantissa| bound(mantissa, exponent)))
        .collect();
    buckets.push(100.0);
    buckets
}

/// Every family of a run, as handles into its registry.
#[derive(Debug, Clone)]
pub struct Families {
    pub requests: Family<Word, Counter>,
    pub failures: Family<Words, Counter>,
    pub latency: Histogram,
    pub queue_wait: Histogram,
    pub steps: Family<Word, Counter>,
    pub client_cpu_wait: Counter<f64, AtomicU64>,
    pub step: Gauge,
    pub step_load: Gauge,
    pub step_requests: Gauge,
    pub step_ended: Gauge,
    pub in_flight: Gauge,
    pub cpu: Family<Word, Real>,
    pub server_sessions: Family<Word, Gauge>,
    pub pooler_waiting: Gauge,
    pub last_latency: Family<Word, Real>,
    pub last_throughput: Real,
    pub last_handled: Gauge,
    pub last_wait_share: Real,
    pub capacity: Gauge,
    pub breaking_step: Gauge,
    pub breaking_load: Gauge,
    pub complete: Gauge,
    pub gates: Family<[(&'static str, String); 1], Gauge>,
}

/// What labels every family of the run, and what describes the run once.
#[derive(Debug, Clone)]
pub struct RunLabels {
    /// The run's timestamp, as its log files are named: `11292026_092253`.
    pub run_id: String,
    pub mode: String,
    pub version: String,
    /// What a step's load counts, in the mode's words.
    pub load_unit: String,
    pub steps_planned: u32,
    pub max_connections: u32,
    pub usable_connections: u32,
}

/// A registry holding every family, the run's labels on each.
pub fn register(run: &RunLabels) -> (Registry, Families) {
    let labels = [
        (Cow::Borrowed("run_id"), Cow::Owned(run.run_id.clone())),
        (Cow::Borrowed("mode"), Cow::Owned(run.mode.clone())),
    ];
    let mut registry = Registry::with_prefix_and_labels("pgstress", labels.into_iter());
    let families = Families {
        requests: Family::default(),
        failures: Family::default(),
        latency: Histogram::new(latency_buckets()),
        queue_wait: Histogram::new(latency_buckets()),
        steps: Family::default(),
        client_cpu_wait: Counter::default(),
        step: Gauge::default(),
        step_load: Gauge::default(),
        step_requests: Gauge::default(),
        step_ended: Gauge::default(),
        in_flight: Gauge::default(),
        cpu: Family::default(),
        server_sessions: Family::default(),
        pooler_waiting: Gauge::default(),
        last_latency: Family::default(),
        last_throughput: Real::default(),
        last_handled: Gauge::default(),
        last_wait_share: Real::default(),
        capacity: Gauge::default(),
        breaking_step: Gauge::default(),
        breaking_load: Gauge::default(),
        complete: Gauge::default(),
        gates: Family::default(),
    };
    // Every series a run can have is there from the start, at zero: a rate over a counter
    // that appears late misses its first increase.
    for outcome in OUTCOMES {
        drop(families.requests.get_or_create(&[("outcome", outcome)]));
    }
    for class in FailureClass::ALL {
        drop(families.failures.get_or_create(&failure_labels(class)));
    }
    for handled in ["true", "false"] {
        drop(families.steps.get_or_create(&[("handled", handled)]));
    }
    register_run(&mut registry, run, &families);
    register_requests(&mut registry, &families);
    register_step(&mut registry, &families);
    register_sides(&mut registry, &families);
    register_verdict(&mut registry, &families);
    (registry, families)
}

/// A failure class's labels: its name and whose failure it is.
pub fn failure_labels(class: FailureClass) -> Words {
    let side = match class.side() {
        Side::Server => "server",
        Side::Client => "client",
        Side::Data => "data",
        Side::Pooler => "pooler",
    };
    [("class", class.name()), ("side", side)]
}

fn register_run(registry: &mut Registry, run: &RunLabels, families: &Families) {
    let info = Info::new(vec![
        ("version", run.version.clone()),
        ("load_unit", run.load_unit.clone()),
    ]);
    registry.register(
        "run",
        "The run: pgstress's version, the unit of a step's load",
        info,
    );
    let constant = |value: u32| {
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::from(value));
        gauge
    };
    registry.register(
        "steps_planned",
        "Steps in the run's plan",
        constant(run.steps_planned),
    );
    registry.register(
        "server_max_connections",
        "The server's max_connections",
        constant(run.max_connections),
    );
    registry.register(
        "server_usable_connections",
        "Connections the run's requests may open: max_connections less the reserved and the sessions open at the start",
        constant(run.usable_connections),
    );
    registry.register(
        "run_complete",
        "1 once the run has ended and every step's figures are in",
        families.complete.clone(),
    );
}

fn register_requests(registry: &mut Registry, families: &Families) {
    registry.register(
        "requests",
        "Requests of the run by outcome: ok, failed (by class in pgstress_request_failures_total), dropped (rate mode: due while no worker was free), unsent (a step cut short)",
        families.requests.clone(),
    );
    registry.register(
        "request_failures",
        "Failed requests by failure class, and whose failure the class is (server, client, data, pooler)",
        families.failures.clone(),
    );
    registry.register_with_unit(
        "request_latency",
        "Latency of the successful requests, as the user waits it (queue wait included)",
        Unit::Seconds,
        families.latency.clone(),
    );
    registry.register_with_unit(
        "request_queue_wait",
        "Wait of each request before it started: its time in the pool's queue, or its lag behind the rate schedule (none in burst mode)",
        Unit::Seconds,
        families.queue_wait.clone(),
    );
    registry.register(
        "steps",
        "Steps ended, by whether the server handled them",
        families.steps.clone(),
    );
    registry.register_with_unit(
        "client_cpu_wait",
        "Time pgstress's threads waited for a CPU during the steps, summed over the threads",
        Unit::Seconds,
        families.client_cpu_wait.clone(),
    );
}

fn register_step(registry: &mut Registry, families: &Families) {
    let gauges = [
        (
            "step",
            "The step in flight or last run, 1 for the first, 0 before it",
            &families.step,
        ),
        (
            "step_load",
            "That step's load, in the unit of pgstress_run_info",
            &families.step_load,
        ),
        (
            "step_requests",
            "That step's planned requests",
            &families.step_requests,
        ),
        (
            "step_requests_ended",
            "Requests of that step ended so far",
            &families.step_ended,
        ),
        (
            "requests_in_flight",
            "Requests of the step in flight not ended yet, at most the mode's concurrency (burst: the step's size, pool: the workers; rate: the step's requests due or not)",
            &families.in_flight,
        ),
    ];
    for (name, help, gauge) in gauges {
        registry.register(name, help, gauge.clone());
    }
}

fn register_sides(registry: &mut Registry, families: &Families) {
    registry.register(
        "cpu_ratio",
        "Share of all the host's CPUs in use in the latest sample: the whole host, pgstress, a local server, a local pooler",
        families.cpu.clone(),
    );
    registry.register(
        "server_sessions",
        "The run's own sessions on the server in the latest sample (pg_stat_activity): open, and active",
        families.server_sessions.clone(),
    );
    registry.register(
        "pooler_clients_waiting",
        "Clients waiting in the pooler's queue in the latest sample (its console's SHOW POOLS)",
        families.pooler_waiting.clone(),
    );
    registry.register_with_unit(
        "last_step_latency",
        "Latency percentiles of the last step's successful requests, exact (its HDR histogram)",
        Unit::Seconds,
        families.last_latency.clone(),
    );
    registry.register(
        "last_step_throughput",
        "Successful requests per second of the last step's wall time",
        families.last_throughput.clone(),
    );
    registry.register(
        "last_step_cpu_wait_ratio",
        "Share of the last step's request time that pgstress's threads spent waiting for a CPU",
        families.last_wait_share.clone(),
    );
}

fn register_verdict(registry: &mut Registry, families: &Families) {
    let gauges = [
        (
            "last_step_handled",
            "1 when the server handled the last step, else 0",
            &families.last_handled,
        ),
        (
            "capacity",
            "The verdict so far: the largest step's load handled before the breaking point, 0 for none",
            &families.capacity,
        ),
        (
            "breaking_point_step",
            "The verdict so far: the first step the server did not handle, 0 for none",
            &families.breaking_step,
        ),
        (
            "breaking_point_load",
            "That step's load, 0 for none",
            &families.breaking_load,
        ),
    ];
    for (name, help, gauge) in gauges {
        registry.register(name, help, gauge.clone());
    }
    registry.register(
        "gate_breached",
        "Each --fail-if gate once the run has ended: 1 breached, 0 held",
        families.gates.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buckets_rise_by_at_most_a_quarter_from_a_tenth_of_a_millisecond_to_100_s() {
        let buckets = latency_buckets();
        assert_eq!(buckets.first(), Some(&0.0001));
        assert_eq!(buckets.last(), Some(&100.0));
        assert_eq!(buckets.len(), 61);
        for pair in buckets.windows(2) {
            let ratio = pair[1] / pair[0];
            assert!((1.2..=1.28).contains(&ratio), "{pair:?}");
        }
    }
}
