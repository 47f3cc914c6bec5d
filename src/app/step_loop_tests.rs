//! The step loop without PostgreSQL: a fake engine returns scripted steps, as hyperfine tests
//! its scheduler with a mock executor. What talks to a server is tested against real ones in
//! `tests/`.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::cli::RunArgs;
use crate::judge::verdict::{Filled, Limit};
use crate::measure::sampler::cpu::CpuProbe;
use crate::model::facts::ServerFacts;
use crate::model::outcome::{Failure, FailureClass};
use crate::model::record::RequestRecord;
use crate::model::rules::Flag;

/// Sends nothing: step i answers with `script[i - 1]` failures of `class` among its requests,
/// and looks at the summary on disk when each step starts.
struct FakeEngine {
    failures: Vec<u32>,
    class: FailureClass,
    summary: PathBuf,
    /// Per step run: (its number, requests asked for, steps already in the summary).
    seen: Vec<(u32, usize, usize)>,
    /// Each step's wall time: long enough to judge its CPU unless a test says otherwise.
    wall: Duration,
    /// The failures timed out before the target's first answer.
    unanswered: bool,
}

impl FakeEngine {
    fn new(failures: &[u32], class: FailureClass, summary: &Path) -> Self {
        FakeEngine {
            failures: failures.to_vec(),
            class,
            summary: summary.to_path_buf(),
            seen: Vec::new(),
            wall: Duration::from_millis(500),
            unanswered: false,
        }
    }
}

fn steps_in_summary(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json["steps"].as_array().map(Vec::len))
        .unwrap_or(0)
}

impl Engine for FakeEngine {
    fn describe(&self) -> String {
        "a fake engine".to_owned()
    }
    fn concurrency(&self, size: u32) -> Option<u32> {
        Some(size)
    }
    fn step_bound(&self, _size: u32) -> Duration {
        Duration::from_secs(1)
    }
    fn release_next_at(&mut self, _at: std::time::Instant) {}
    fn run_step(
        &mut self,
        step: u32,
        params: Vec<Option<String>>,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun {
        self.seen
            .push((step, params.len(), steps_in_summary(&self.summary)));
        let failed = self.failures[step as usize - 1] as usize;
        let record = |i: usize| RequestRecord {
            start_offset: Some(Duration::from_micros(i as u64)),
            queue_wait: None,
            connect: Some(Duration::from_millis(1)),
            query: Some(Duration::from_millis(1)),
            latency: Duration::from_millis(2),
            outcome: match (i < failed, self.unanswered) {
                (true, false) => Err(Failure::new(self.class, "scripted")),
                (true, true) => Err(Failure::unanswered("deadline passed while connecting")),
                (false, _) => Ok(()),
            },
            node: None,
            client: None,
        };
        let records: Vec<RequestRecord> = (0..params.len()).map(record).collect();
        // The first half seen live as they end; the rest only with the step.
        for record in records.iter().take(records.len() / 2) {
            if let Some(observer) = observer {
                observer.record_ended(record);
            }
        }
        StepRun {
            records,
            dropped: 0,
            unsent: 0,
            launch: Duration::from_micros(10),
            wall: self.wall,
            ..StepRun::default()
        }
    }
}

fn config(steps: u32, step: u32) -> RunConfig {
    let args = RunArgs {
        steps: Some(steps),
        step: Some(step),
        query: Some("SELECT 1".to_owned()),
        ..RunArgs::default()
    };
    RunConfig::from_args(args).expect("a valid plan")
}

fn facts(config: &RunConfig, engine: &dyn Engine) -> RunFacts {
    RunFacts {
        pgstress_version: "test".to_owned(),
        started_at: "now".to_owned(),
        plan: crate::app::setup::plan_facts(config, None, engine),
        target: "nowhere".to_owned(),
        nodes: Vec::new(),
        throwaway: false,
        pooler: None,
        pooler_limit: None,
        server: ServerFacts {
            version: "15".to_owned(),
            max_connections: 100,
            superuser_reserved_connections: 3,
            superuser: false,
            sessions_at_start: 0,
        },
        server_cpu_visible: false,
        server_stats_visible: false,
        server_source: Default::default(),
        client: CPUS.into(),
        cpus: Default::default(),
    }
}

const CPUS: ClientCpus = ClientCpus {
    host_cores: 2.0,
    allowed_cores: 2.0,
};

/// Runs the loop over the fake engine with logs in a fresh folder.
fn run_ramp(
    config: &RunConfig,
    engine: &mut FakeEngine,
    logs_dir: &Path,
    stop_requested: &dyn Fn() -> bool,
) -> (Ramp, String) {
    let facts = facts(config, engine);
    run_ramp_with(config, &facts, engine, logs_dir, stop_requested, None)
}

/// As `run_ramp`, with the run's facts given and, when given, its metrics counted live.
fn run_ramp_with(
    config: &RunConfig,
    facts: &RunFacts,
    engine: &mut FakeEngine,
    logs_dir: &Path,
    stop_requested: &dyn Fn() -> bool,
    metrics: Option<&RunMetrics>,
) -> (Ramp, String) {
    let mut logs = RunLogs::create(logs_dir, "test", false).expect("logs");
    let sampler = Sampler::start(
        "test-cpu",
        Duration::from_millis(10),
        CpuProbe::new(None, Instant::now(), Default::default()),
    )
    .expect("a sampler");
    let mut out = Vec::new();
    let mut printer = Printer::new(&mut out);
    let mut progress = Progress::new(config.plan.steps, true);
    let ramp = StepLoop {
        config,
        facts,
        cpus: CPUS,
        data: None,
        cpu_sampler: &sampler,
        stats_sampler: None,
        watcher: None,
        pooler: Default::default(),
        logs: &mut logs,
        printer: &mut printer,
        progress: &mut progress,
        metrics: metrics.map(|metrics| (metrics, true)),
        stop_requested,
        fault: None,
    }
    .run(engine)
    .expect("the ramp runs");
    drop(printer);
    (ramp, String::from_utf8(out).expect("utf-8 output"))
}

fn steps_log_rows(dir: &Path) -> usize {
    let text = std::fs::read_to_string(dir.join("test_steps.csv")).expect("a steps log");
    text.lines().count() - 1
}

#[test]
fn a_stop_rule_ends_the_ramp_after_the_step_that_trips_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(4, 10);
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 15, 0, 0], FailureClass::TooManyClients, &summary);
    let (ramp, out) = run_ramp(&config, &mut engine, dir.path(), &|| false);
    assert_eq!(
        engine.seen.len(),
        2,
        "no step after the one that tripped the rule"
    );
    assert_eq!(ramp.results.len(), 2);
    assert!(
        matches!(ramp.stopped, Some((2, StopReason::FailureRate { .. }))),
        "{:?}",
        ramp.stopped
    );
    assert_eq!(steps_log_rows(dir.path()), 2);
    assert!(out.contains("15 failed"), "{out}");
}

#[test]
fn a_stop_request_between_steps_keeps_what_was_measured() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(5, 10);
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0; 5], FailureClass::Timeout, &summary);
    let asked = Cell::new(0);
    let stop_after_two = || {
        asked.set(asked.get() + 1);
        asked.get() > 2
    };
    let (ramp, _) = run_ramp(&config, &mut engine, dir.path(), &stop_after_two);
    assert_eq!(ramp.results.len(), 2);
    assert_eq!(ramp.stopped, None, "a stop request is not a stop rule");
    assert_eq!(steps_log_rows(dir.path()), 2);
    assert_eq!(steps_in_summary(&summary), 2);
}

#[test]
fn the_summary_is_rewritten_after_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(3, 10);
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 0, 0], FailureClass::Timeout, &summary);
    run_ramp(&config, &mut engine, dir.path(), &|| false);
    let in_summary_at_start: Vec<usize> = engine.seen.iter().map(|s| s.2).collect();
    assert_eq!(in_summary_at_start, vec![0, 1, 2]);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.contains("\"complete\": false"),
        "the loop never marks a run complete"
    );
}

#[test]
fn each_step_has_its_planned_load_and_its_flags_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(3, 20);
    // The host's real CPU (other processes, this machine's load) must not add its own flag.
    config.thresholds.saturated_cpu_pct = f64::INFINITY;
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 3, 0], FailureClass::Spawn, &summary);
    let (ramp, _) = run_ramp(&config, &mut engine, dir.path(), &|| false);
    let asked: Vec<usize> = engine.seen.iter().map(|s| s.1).collect();
    assert_eq!(asked, vec![20, 40, 60]);
    let loads: Vec<u32> = ramp.results.iter().map(|r| r.load).collect();
    assert_eq!(loads, vec![20, 40, 60]);
    assert_eq!(ramp.results[1].flags, vec![Flag::SpawnFailed]);
    assert!(ramp.results[0].flags.is_empty());
    // Threads that never started are the client's: the run goes on, the server is not blamed.
    assert_eq!(ramp.results.len(), 3);
    let verdict = judge_run(&ramp, &config, &facts(&config, &engine));
    assert_eq!(verdict.breaking_point, None);
    assert_eq!(verdict.capacity, Some(60));
}

#[test]
fn the_metrics_end_each_step_with_its_counts_seen_live_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(3, 10);
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 4, 1], FailureClass::Timeout, &summary);
    let metrics = RunMetrics::new(&crate::output::metrics::RunLabels {
        run_id: "test".to_owned(),
        mode: "burst".to_owned(),
        version: "0".to_owned(),
        load_unit: "concurrent requests".to_owned(),
        steps_planned: 3,
        max_connections: 100,
        usable_connections: 96,
    });
    let facts = facts(&config, &engine);
    let (ramp, _) = run_ramp_with(
        &config,
        &facts,
        &mut engine,
        dir.path(),
        &|| false,
        Some(&metrics),
    );
    let text = metrics.text();
    let value = |series: &str| -> u32 {
        let line = text.lines().find(|l| l.starts_with(series)).unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let labels = "run_id=\"test\",mode=\"burst\"";
    let ok: u32 = ramp.results.iter().map(|r| r.ok).sum();
    let failed: u32 = ramp.results.iter().map(|r| r.failed).sum();
    assert_eq!((ok, failed), (55, 5));
    let requests = |outcome: &str| {
        value(&format!(
            "pgstress_requests_total{{{labels},outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!((requests("ok"), requests("failed")), (ok, failed));
    assert_eq!(
        value(&format!(
            "pgstress_request_latency_seconds_count{{{labels}}}"
        )),
        ok
    );
    assert_eq!(value(&format!("pgstress_step{{{labels}}}")), 3);
    assert_eq!(
        value(&format!("pgstress_breaking_point_step{{{labels}}}")),
        2
    );
}

#[test]
fn steps_too_short_to_judge_say_so_and_make_no_cpu_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(3, 20);
    // Any CPU at all would fill a side: only the steps' length keeps the flags off.
    config.thresholds.saturated_cpu_pct = 0.0;
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 0, 0], FailureClass::Timeout, &summary);
    engine.wall = Duration::from_millis(5);
    let (ramp, _) = run_ramp(&config, &mut engine, dir.path(), &|| false);
    for step in &ramp.results {
        assert_eq!(
            step.flags,
            vec![Flag::TooShortToJudge],
            "step {}",
            step.step
        );
    }
    let verdict = judge_run(&ramp, &config, &facts(&config, &engine));
    assert_eq!(verdict.limit, None);
    let cpus = verdict.cpus_filled.as_ref().expect("CPU figures");
    assert_eq!((cpus.side, cpus.too_short), (Filled::Unjudged, 3));
    let text = verdict.sentences().join("\n");
    assert!(
        text.contains("CPUs: not judged: every step lasted under 100ms"),
        "{text}"
    );
    // The same steps, long enough: both sides' flags, and a CPU verdict.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::new(&[0, 0, 0], FailureClass::Timeout, &summary);
    let (ramp, _) = run_ramp(&config, &mut engine, dir.path(), &|| false);
    assert!(ramp.results[0].flags.contains(&Flag::ClientSaturated));
    assert!(!ramp.results[0].flags.contains(&Flag::TooShortToJudge));
}

#[test]
fn through_a_pooler_connections_never_answered_beside_answered_ones_are_the_poolers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(2, 20);
    config.thresholds.saturated_cpu_pct = f64::INFINITY;
    let summary = dir.path().join("test_summary.json");
    let mut engine = FakeEngine::new(&[0, 8], FailureClass::Timeout, &summary);
    engine.unanswered = true;
    let mut through_pgpool = facts(&config, &engine);
    through_pgpool.pooler = Some("pgpool-II".to_owned());
    let (ramp, _) = run_ramp_with(
        &config,
        &through_pgpool,
        &mut engine,
        dir.path(),
        &|| false,
        None,
    );
    let second = &ramp.results[1];
    assert_eq!(second.failures(FailureClass::PoolerQueued), 8);
    assert_eq!(second.failures(FailureClass::Timeout), 0);
    assert_eq!(second.flags, vec![Flag::PoolerQueued]);
    let verdict = judge_run(&ramp, &config, &through_pgpool);
    assert_eq!(verdict.breaking_point, None, "not the server's failures");
    assert!(
        matches!(
            &verdict.limit,
            Some(Limit::Pooler {
                flag: Flag::PoolerQueued,
                step: 2,
                ..
            })
        ),
        "{:?}",
        verdict.limit
    );
    // Straight to the server, the same timeouts are the server's: a breaking point.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::new(&[0, 8], FailureClass::Timeout, &summary);
    engine.unanswered = true;
    let (ramp, _) = run_ramp(&config, &mut engine, dir.path(), &|| false);
    assert_eq!(ramp.results[1].failures(FailureClass::Timeout), 8);
    let verdict = judge_run(&ramp, &config, &facts(&config, &engine));
    assert_eq!(verdict.breaking_point.map(|bp| bp.step), Some(2));
}
