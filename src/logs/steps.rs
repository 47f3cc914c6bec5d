//! `<ts>_steps.csv`: one row per step with everything the step measured. The same row, typed,
//! is each step's entry in the JSON summary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CsvFile, LogError};
use crate::model::activity::{Activity, WaitClass};
use crate::model::outage::Outage;
use crate::model::outcome::FailureClass;
use crate::model::server_cpu::ServerSource;
use crate::model::step::{MeanPeak, StepResult};
use crate::model::watch::Watched;

pub use super::steps_header::STEPS_HEADER;

/// One step as logged. Field names are the CSV columns; None is an empty field (JSON null).
/// Read back by `pgstress compare`, where a column an older version did not write is empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepRow {
    pub step: u32,
    pub requests: u32,
    pub ok: u32,
    pub failed: u32,
    pub refused: u32,
    pub too_many_clients: u32,
    pub auth: u32,
    pub timeout: u32,
    pub query: u32,
    pub no_row: u32,
    pub spawn: u32,
    pub io: u32,
    /// Rate mode: offered but not sent (no free worker when due).
    pub dropped: u32,
    pub wall_s: f64,
    pub throughput_rps: f64,
    pub launch_spread_ms: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub connect_p50_ms: Option<f64>,
    pub connect_p99_ms: Option<f64>,
    /// The wait before a request started: pool queue, or rate schedule lag.
    pub queue_wait_p50_ms: Option<f64>,
    pub queue_wait_p99_ms: Option<f64>,
    /// Start to end, without the wait: rate mode's uncorrected latency.
    pub service_p50_ms: Option<f64>,
    pub service_p99_ms: Option<f64>,
    pub host_cpu_mean: Option<f64>,
    pub host_cpu_peak: Option<f64>,
    pub process_cpu_mean: Option<f64>,
    pub process_cpu_peak: Option<f64>,
    pub server_cpu_mean: Option<f64>,
    pub server_cpu_peak: Option<f64>,
    pub server_connections_peak: Option<u32>,
    pub server_active_peak: Option<u32>,
    /// `pg_stat_database` over the step: the server's count, as it flushed it (docs/logs.md).
    pub server_xact_commit: Option<i64>,
    pub server_xact_rollback: Option<i64>,
    /// Diagnosis flags joined with `;`.
    pub flags: String,
    /// pgstress's own limits (open files, ports, memory) or a panic in a request.
    pub client: u32,
    /// Values the server rejected as malformed (SQLSTATE class 22).
    pub bad_value: u32,
    /// The failures that were the server's: what the verdict and the stop rules judge.
    pub server_failed: u32,
    /// Requests sent per second, successful or not (`throughput_rps` counts successes).
    pub attempts_rps: f64,
    /// Planned but never sent: the step was cut short (`partial`).
    pub unsent: u32,
    /// How long pgstress's threads waited for a CPU in the step, summed over the threads.
    pub client_cpu_wait_ms: Option<f64>,
    /// That wait over the CPU time pgstress's CPUs offered in the step.
    pub client_cpu_wait_share: Option<f64>,
    /// How busy pgstress's CPUs were in the step, whoever ran on them.
    pub client_cpus_busy_pct: Option<f64>,
    /// The concurrency the mode asked for: the step's size (burst), its workers (pool); empty
    /// in rate mode.
    pub concurrency_asked: Option<u32>,
    /// The most requests in flight at one moment, from their own start and end.
    pub peak_in_flight: u32,
    /// The most requests holding a connection at one moment (`server_connections_peak` is the
    /// server's sampled view of the same).
    pub peak_connected: u32,
    /// Clients a pooler refused (PgBouncer's max_client_conn): the pooler's limit.
    pub pooler_too_many_clients: u32,
    /// A local pooler's CPU, as a share of all the host's cores like the other sides'.
    pub pooler_cpu_mean: Option<f64>,
    pub pooler_cpu_peak: Option<f64>,
    /// The share of the step PgBouncer's thread was running or waiting for a CPU.
    pub pooler_runnable_pct: Option<f64>,
    /// PgBouncer's `SHOW POOLS`: the most clients waiting for a server connection at once...
    pub pooler_clients_waiting_peak: Option<u32>,
    /// ...and the longest wait it reported (`maxwait`).
    pub pooler_max_wait_ms: Option<f64>,
    /// PgBouncer's `SHOW STATS` over the step: the wait for a server per transaction.
    pub pooler_avg_wait_ms: Option<f64>,
    /// Requests that reached a read-only server where they needed one that writes.
    pub read_only: u32,
    /// Requests that reached each host of the target's list, in its order, `;`-separated
    /// (the summary's `facts.nodes` names them); empty with one host.
    pub requests_by_node: String,
    /// Connections held in the pooler's queue until their deadline, never answered while
    /// others were (pgpool-II's num_init_children): the pooler's limit.
    pub pooler_queued: u32,
    /// Where the server side's figures came from: local, watcher, sql-estimate or none.
    pub server_source: ServerSource,
    /// The CPUs the server is judged against.
    pub server_cores: Option<f64>,
    /// pgstress's CPU over the CPUs it may use (what `client-saturated` judges).
    pub process_cpu_own_mean: Option<f64>,
    pub process_cpu_own_peak: Option<f64>,
    /// The server's CPU over its own CPUs (what `server-saturated` judges): measured (local,
    /// watcher), or its sessions on CPU over its cores (sql-estimate, which may pass 100).
    pub server_cpu_own_mean: Option<f64>,
    pub server_cpu_own_peak: Option<f64>,
    /// `pg_stat_activity` samples of the step: every client's active sessions, the monitor
    /// left out, averaged (AAS), at most, and by wait class.
    pub server_aas_samples: Option<u32>,
    pub server_aas_mean: Option<f64>,
    pub server_aas_peak: Option<u32>,
    pub server_aas_cpu: Option<f64>,
    pub server_aas_lwlock: Option<f64>,
    pub server_aas_lock: Option<f64>,
    pub server_aas_io: Option<f64>,
    pub server_aas_ipc: Option<f64>,
    pub server_aas_client: Option<f64>,
    pub server_aas_timeout: Option<f64>,
    pub server_aas_bufferpin: Option<f64>,
    pub server_aas_extension: Option<f64>,
    pub server_aas_activity: Option<f64>,
    pub server_aas_other: Option<f64>,
    /// The busiest events and their AAS, `;`-separated: `CPU 2.95;Timeout:PgSleep 0.05`.
    pub server_wait_events: String,
    /// `pg_stat_database` over the step, for the target's database (with
    /// `server_xact_commit` and `server_xact_rollback`): the server's own counts.
    pub server_sessions: Option<i64>,
    pub server_sessions_abandoned: Option<i64>,
    pub server_sessions_fatal: Option<i64>,
    pub server_deadlocks: Option<i64>,
    pub server_temp_bytes: Option<i64>,
    /// Requests the server dropped or refused while shutting down (57P01, 57P02).
    pub shutdown: u32,
    /// Requests the server refused while starting up (57P03).
    pub starting: u32,
    /// The step's outage (docs/outages.md), empty without one; times in seconds from the
    /// step's release, as in the summary: its first failure, the first success after, when
    /// throughput was back (empty: not back), and its length (first failure to back).
    pub outage_start_s: Option<f64>,
    pub outage_first_success_s: Option<f64>,
    pub outage_end_s: Option<f64>,
    pub outage_s: Option<f64>,
    /// The per-client gaps' median, 99th percentile and maximum.
    pub outage_gap_p50_s: Option<f64>,
    pub outage_gap_p99_s: Option<f64>,
    pub outage_gap_max_s: Option<f64>,
    /// The server's failures inside the outage, and by class: `refused 1100;shutdown 112`.
    pub outage_failed: Option<u32>,
    pub outage_failures: String,
    /// Clients with no success after their first failure before the step ended.
    pub outage_unrecovered: Option<u32>,
    /// The fault pgstress caused during the step (`restart@30s`); empty: none, or from outside.
    pub outage_caused_by: String,
    /// Requests of the schedule neither ok, failed, dropped nor unsent: 0 unless pgstress lost
    /// count of one.
    pub lost: u32,
    /// A watcher's figures of the server's host over the step (empty without one): its busy
    /// share of all its CPUs; the postmaster's thread over one CPU, running, and running or
    /// waiting for it (what `postmaster-saturated` judges); the backends' summed wait for a
    /// CPU; the least memory available; the busiest disk's busy share.
    pub server_host_cpu_mean: Option<f64>,
    pub postmaster_cpu_pct: Option<f64>,
    pub postmaster_runnable_pct: Option<f64>,
    pub server_backends_wait_ms: Option<f64>,
    pub server_mem_available_mb: Option<f64>,
    pub server_disk_busy_mean: Option<f64>,
    pub server_disk_busy_peak: Option<f64>,
    /// Hold mode (empty otherwise): connections up at the step's end, opened by the step, of
    /// those opened in place of one missing, and held ones that broke (`model::hold`).
    pub held: Option<u32>,
    pub held_opened: Option<u32>,
    pub held_reopened: Option<u32>,
    pub held_dropped: Option<u32>,
    /// Memory per held connection above each side's own before the first one, in KiB; the
    /// server's backends and each one's own memory (private pages and page tables).
    pub client_kib_per_held: Option<f64>,
    pub pooler_kib_per_held: Option<f64>,
    pub server_backends: Option<u32>,
    pub server_kib_per_backend: Option<f64>,
    pub server_kib_per_held: Option<f64>,
    /// CPU time per second per held connection, in microseconds, each side.
    pub client_cpu_us_per_held: Option<f64>,
    pub pooler_cpu_us_per_held: Option<f64>,
    pub server_cpu_us_per_held: Option<f64>,
}

/// Rounded for the log: a tenth of a percent, a microsecond.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl StepRow {
    pub fn of(step: &StepResult) -> Self {
        let ms = |value: Option<f64>| value.map(|v| round(v, 3));
        let mean = |series: Option<MeanPeak>| series.map(|s| round(s.mean, 1));
        let peak = |series: Option<MeanPeak>| series.and_then(|s| s.peak).map(|p| round(p, 1));
        let class = |c: FailureClass| step.failures(c);
        let view = step.pooler.view;
        let server = step.server.as_ref();
        let counts = server.and_then(|s| s.counts).unwrap_or_default();
        StepRow {
            step: step.step,
            requests: step.requests,
            ok: step.ok,
            failed: step.failed,
            refused: class(FailureClass::Refused),
            too_many_clients: class(FailureClass::TooManyClients),
            auth: class(FailureClass::Auth),
            timeout: class(FailureClass::Timeout),
            query: class(FailureClass::Query),
            no_row: class(FailureClass::NoRow),
            spawn: class(FailureClass::Spawn),
            io: class(FailureClass::Io),
            dropped: step.dropped,
            wall_s: round(step.wall.as_secs_f64(), 6),
            throughput_rps: round(step.throughput(), 1),
            launch_spread_ms: round(step.launch_spread.as_secs_f64() * 1000.0, 3),
            latency_p50_ms: ms(step.latency_ms(50.0)),
            latency_p90_ms: ms(step.latency_ms(90.0)),
            latency_p99_ms: ms(step.latency_ms(99.0)),
            latency_max_ms: ms(step.latency_max_ms()),
            connect_p50_ms: ms(step.connect_ms(50.0)),
            connect_p99_ms: ms(step.connect_ms(99.0)),
            queue_wait_p50_ms: ms(step.queue_wait_ms(50.0)),
            queue_wait_p99_ms: ms(step.queue_wait_ms(99.0)),
            service_p50_ms: ms(step.service_ms(50.0)),
            service_p99_ms: ms(step.service_ms(99.0)),
            host_cpu_mean: mean(step.cpu.host),
            host_cpu_peak: peak(step.cpu.host),
            process_cpu_mean: mean(step.cpu.process),
            process_cpu_peak: peak(step.cpu.process),
            server_cpu_mean: mean(step.cpu.server),
            server_cpu_peak: peak(step.cpu.server),
            server_connections_peak: server.map(|s| s.connections_peak),
            server_active_peak: server.map(|s| s.active_peak),
            server_xact_commit: counts.xact_commit,
            server_xact_rollback: counts.xact_rollback,
            flags: crate::model::rules::join(&step.flags),
            client: class(FailureClass::Client),
            bad_value: class(FailureClass::BadValue),
            server_failed: step.server_failed(),
            attempts_rps: round(step.attempts_per_second(), 1),
            unsent: step.unsent,
            client_cpu_wait_ms: step.cpu.client_wait_ms.map(|ms| round(ms, 3)),
            client_cpu_wait_share: step.cpu.client_wait_share.map(|share| round(share, 3)),
            client_cpus_busy_pct: step.cpu.client_cpus_busy_pct.map(|pct| round(pct, 1)),
            concurrency_asked: step.concurrency.asked,
            peak_in_flight: step.concurrency.peak_in_flight,
            peak_connected: step.concurrency.peak_connected,
            pooler_too_many_clients: class(FailureClass::PoolerTooManyClients),
            pooler_cpu_mean: mean(step.pooler.cpu),
            pooler_cpu_peak: peak(step.pooler.cpu),
            pooler_runnable_pct: step.pooler.runnable_pct.map(|pct| round(pct, 1)),
            pooler_clients_waiting_peak: view.and_then(|v| v.clients_waiting_peak),
            pooler_max_wait_ms: ms(view.and_then(|v| v.max_wait_ms)),
            pooler_avg_wait_ms: ms(view.and_then(|v| v.avg_wait_ms)),
            read_only: class(FailureClass::ReadOnly),
            requests_by_node: (step.by_node.iter().map(u32::to_string))
                .collect::<Vec<_>>()
                .join(";"),
            shutdown: class(FailureClass::Shutdown),
            starting: class(FailureClass::Starting),
            pooler_queued: class(FailureClass::PoolerQueued),
            lost: step.lost,
            ..StepRow::default()
        }
        .with_server_side(step)
        .with_outage(step.outage.as_ref())
        .with_hold(step)
    }

    /// The outage's columns, empty without one.
    fn with_outage(self, outage: Option<&Outage>) -> Self {
        let Some(outage) = outage else {
            return self;
        };
        let s = |d: Duration| round(d.as_secs_f64(), 3);
        let classes: Vec<String> = (outage.failures.iter())
            .map(|(class, n)| format!("{class} {n}"))
            .collect();
        StepRow {
            outage_start_s: Some(s(outage.start)),
            outage_first_success_s: outage.first_success.map(s),
            outage_end_s: outage.end.map(s),
            outage_s: outage.duration().map(s),
            outage_gap_p50_s: Some(s(outage.gap_p50)),
            outage_gap_p99_s: Some(s(outage.gap_p99)),
            outage_gap_max_s: Some(s(outage.gap_max)),
            outage_failed: Some(outage.failed()),
            outage_failures: classes.join(";"),
            outage_unrecovered: Some(outage.unrecovered),
            outage_caused_by: outage.caused_by.clone().unwrap_or_default(),
            ..self
        }
    }

    /// Hold mode's columns: the crowd held and what it cost each side.
    fn with_hold(self, step: &StepResult) -> Self {
        let Some(hold) = &step.hold else {
            return self;
        };
        let r = |value: Option<f64>| value.map(|v| round(v, 2));
        StepRow {
            held: Some(hold.held),
            held_opened: Some(hold.opened),
            held_reopened: Some(hold.reopened),
            held_dropped: Some(hold.dropped),
            client_kib_per_held: r(hold.client_kib_per_held),
            pooler_kib_per_held: r(hold.pooler_kib_per_held),
            server_backends: hold.server_backends,
            server_kib_per_backend: r(hold.server_kib_per_backend),
            server_kib_per_held: r(hold.server_kib_per_held),
            client_cpu_us_per_held: r(hold.client_cpu_us_per_held),
            pooler_cpu_us_per_held: r(hold.pooler_cpu_us_per_held),
            server_cpu_us_per_held: r(hold.server_cpu_us_per_held),
            ..self
        }
    }

    /// The server side's columns: its CPU by its source, its sessions, its counters.
    fn with_server_side(self, step: &StepResult) -> Self {
        let mean = |series: Option<MeanPeak>| series.map(|s| round(s.mean, 1));
        let peak = |series: Option<MeanPeak>| series.and_then(|s| s.peak).map(|p| round(p, 1));
        let activity = step.server.as_ref().and_then(|s| s.activity.as_ref());
        let aas = |class: WaitClass| activity.map(|a| round(a.in_class(class), 2));
        let counts = step
            .server
            .as_ref()
            .and_then(|s| s.counts)
            .unwrap_or_default();
        let cpu = &step.server_cpu;
        StepRow {
            server_source: cpu.source,
            server_cores: cpu.cores,
            process_cpu_own_mean: mean(step.cpu.process_own),
            process_cpu_own_peak: peak(step.cpu.process_own),
            server_cpu_own_mean: mean(cpu.own),
            server_cpu_own_peak: peak(cpu.own),
            server_aas_samples: activity.map(|a| a.samples),
            server_aas_mean: activity.map(|a| round(a.mean, 2)),
            server_aas_peak: activity.map(|a| a.peak),
            server_aas_cpu: aas(WaitClass::Cpu),
            server_aas_lwlock: aas(WaitClass::LwLock),
            server_aas_lock: aas(WaitClass::Lock),
            server_aas_io: aas(WaitClass::Io),
            server_aas_ipc: aas(WaitClass::Ipc),
            server_aas_client: aas(WaitClass::Client),
            server_aas_timeout: aas(WaitClass::Timeout),
            server_aas_bufferpin: aas(WaitClass::BufferPin),
            server_aas_extension: aas(WaitClass::Extension),
            server_aas_activity: aas(WaitClass::Activity),
            server_aas_other: aas(WaitClass::Other),
            server_wait_events: activity.map(Activity::top_events_text).unwrap_or_default(),
            server_sessions: counts.sessions,
            server_sessions_abandoned: counts.sessions_abandoned,
            server_sessions_fatal: counts.sessions_fatal,
            server_deadlocks: counts.deadlocks,
            server_temp_bytes: counts.temp_bytes,
            ..self
        }
        .with_watched(step.watched.as_ref())
    }

    /// A watcher's columns.
    fn with_watched(self, watched: Option<&Watched>) -> Self {
        let Some(w) = watched else {
            return self;
        };
        let one = |value: Option<f64>| value.map(|v| round(v, 1));
        StepRow {
            server_host_cpu_mean: one(w.host_cpu.map(|h| h.mean)),
            postmaster_cpu_pct: one(w.postmaster_cpu_pct),
            postmaster_runnable_pct: one(w.postmaster_runnable_pct),
            server_backends_wait_ms: one(w.backends_wait_ms),
            server_mem_available_mb: one(w.mem_available_mb_min),
            server_disk_busy_mean: one(w.disk_busy.map(|d| d.mean)),
            server_disk_busy_peak: one(w.disk_busy.and_then(|d| d.peak)),
            ..self
        }
    }
}

pub struct StepsCsv {
    file: CsvFile,
}

impl StepsCsv {
    pub fn create(path: PathBuf) -> Result<Self, LogError> {
        Ok(StepsCsv {
            file: CsvFile::create(path, Some(&STEPS_HEADER))?,
        })
    }

    pub fn write_step(&mut self, step: &StepResult) -> Result<(), LogError> {
        self.file.serialize(&StepRow::of(step))?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

#[cfg(test)]
#[path = "steps_tests.rs"]
mod tests;
