//! The flags of one step, each raised and held back by its rule.

use super::*;
use crate::model::activity::{Activity, ActivitySample};
use crate::model::server_cpu::ServerCpu;
use crate::model::step::{CpuSummary, MeanPeak};
use crate::test_support::step_result;
use std::time::Duration;

const TWO_CORES: ClientCpus = ClientCpus {
    host_cores: 2.0,
    allowed_cores: 2.0,
};

/// Means as given, peaks above them: the flags judge the means.
fn cpu(host: f64, process: f64, server: Option<f64>) -> CpuSummary {
    let series = |mean: f64| {
        Some(MeanPeak {
            mean,
            peak: Some((mean * 1.5).min(100.0)),
        })
    };
    CpuSummary {
        host: series(host),
        process: series(process),
        process_own: None,
        server: server.and_then(series),
        client_wait_ms: None,
        client_wait_share: None,
        client_cpus_busy_pct: None,
    }
}

fn burst(usable_connections: Option<u32>) -> StepContext {
    StepContext {
        starts_together: true,
        scheduled: false,
        concurrency: None,
        usable_connections,
    }
}

/// A step whose server, when its CPU is given, is on this 2-core host with all of it.
fn step_with(cpu: CpuSummary, spread_ms: u64, wall_ms: u64, requests: u32) -> StepResult {
    let mut step = step_result(1, requests, 0);
    step.cpu = cpu;
    step.server_cpu = ServerCpu::of(cpu.server, None, 2.0, None);
    step.launch_spread = Duration::from_millis(spread_ms);
    step.wall = Duration::from_millis(wall_ms);
    step
}

/// The step's server pinned to one of the host's two CPUs.
fn server_on_one_cpu(mut step: StepResult) -> StepResult {
    step.server_cpu = ServerCpu::of(step.cpu.server, None, 2.0, Some(1.0));
    step
}

#[test]
fn quiet_step_has_no_flags() {
    let step = step_with(cpu(40.0, 10.0, Some(30.0)), 5, 500, 50);
    assert!(diagnose(&step, &burst(Some(97)), &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn a_busy_host_alone_flags_nothing() {
    let step = step_with(cpu(95.0, 10.0, None), 5, 500, 50);
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn threads_waiting_for_a_cpu_saturate_the_client() {
    let t = Thresholds::default();
    let mut step = step_with(cpu(95.0, 10.0, None), 5, 500, 50);
    step.cpu.client_wait_share = Some(t.starved_wait_share);
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::ClientSaturated]
    );
    step.cpu.client_wait_share = Some(t.starved_wait_share * 0.99);
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &t).is_empty());
}

#[test]
fn the_server_is_judged_against_its_own_cpus() {
    // 49% of a 2-core host is 0.98 cores: saturated on the one CPU it is pinned to.
    let step = step_with(cpu(90.0, 20.0, Some(49.0)), 1, 500, 10);
    let pinned = server_on_one_cpu(step.clone());
    assert_eq!(
        diagnose(&pinned, &burst(None), &TWO_CORES, &Thresholds::default()),
        vec![Flag::ServerSaturated]
    );
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn a_short_step_without_a_peak_is_judged_on_its_mean() {
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 100, 10);
    step.cpu.server = Some(MeanPeak {
        mean: 95.0,
        peak: None,
    });
    step.server_cpu = ServerCpu::of(step.cpu.server, None, 2.0, None);
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()),
        vec![Flag::ServerSaturated]
    );
}

#[test]
fn a_step_too_short_to_judge_raises_no_cpu_flag_on_either_side() {
    let t = Thresholds::default();
    // Both sides full, and pgstress's threads waiting: over the shortest judged step, both
    // flags; a millisecond shorter, neither, and the step says why.
    let mut step = step_with(cpu(99.0, 95.0, Some(95.0)), 1, 100, 10);
    step.cpu.client_wait_share = Some(0.5);
    assert_eq!(t.min_judged_wall, Duration::from_millis(100));
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::ClientSaturated, Flag::ServerSaturated]
    );
    step.wall = Duration::from_millis(99);
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::TooShortToJudge]
    );
    // The other flags are still raised on it: they are not read from the CPU.
    step.unsent = 1;
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::Partial, Flag::TooShortToJudge]
    );
    // The bound follows the run's: a step of 1 s is too short beside a 2 s sampling.
    let sampled_slowly = Thresholds {
        min_judged_wall: Duration::from_secs(2),
        ..t
    };
    step.wall = Duration::from_secs(1);
    step.unsent = 0;
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &sampled_slowly),
        vec![Flag::TooShortToJudge]
    );
}

#[test]
fn process_pinned_to_one_core_is_saturated_at_half_the_host() {
    // 46% of a 2-core host is 0.92 cores: saturated when pinned to one core, not otherwise.
    let step = step_with(cpu(50.0, 46.0, None), 5, 500, 50);
    let pinned = ClientCpus {
        host_cores: 2.0,
        allowed_cores: 1.0,
    };
    assert_eq!(
        diagnose(&step, &burst(None), &pinned, &Thresholds::default()),
        vec![Flag::ClientSaturated]
    );
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn a_peak_alone_flags_neither_side() {
    // A burst's release: pgstress at 48% of the host (0.96 of its one CPU) for one sample,
    // 5% over the step; the server the same way.
    let mut step = step_with(cpu(55.0, 5.0, Some(10.0)), 5, 8_000, 650);
    let peaked = |mean| {
        Some(MeanPeak {
            mean,
            peak: Some(48.0),
        })
    };
    step.cpu.process = peaked(5.0);
    step.cpu.server = peaked(10.0);
    let pinned = ClientCpus {
        host_cores: 2.0,
        allowed_cores: 1.0,
    };
    let mut step = server_on_one_cpu(step);
    let t = Thresholds::default();
    assert!(diagnose(&step, &burst(None), &pinned, &t).is_empty());
    step.cpu.process = peaked(46.0);
    assert_eq!(
        diagnose(&step, &burst(None), &pinned, &t),
        vec![Flag::ClientSaturated]
    );
}

#[test]
fn late_starts_raise_launch_spread() {
    let thresholds = Thresholds::default();
    // 120 ms is above the 100 ms bound even for a long step.
    let long = step_with(cpu(10.0, 5.0, None), 120, 10_000, 50);
    assert_eq!(
        diagnose(&long, &burst(None), &TWO_CORES, &thresholds),
        vec![Flag::LaunchSpread]
    );
    // 30 ms is above 10% of a 200 ms step.
    let short = step_with(cpu(10.0, 5.0, None), 30, 200, 50);
    assert_eq!(
        diagnose(&short, &burst(None), &TWO_CORES, &thresholds),
        vec![Flag::LaunchSpread]
    );
    let tight = step_with(cpu(10.0, 5.0, None), 10, 200, 50);
    assert!(diagnose(&tight, &burst(None), &TWO_CORES, &thresholds).is_empty());
}

#[test]
fn step_above_usable_connections_is_flagged() {
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 500, 98);
    step.concurrency.peak_in_flight = 98;
    assert_eq!(
        diagnose(&step, &burst(Some(97)), &TWO_CORES, &Thresholds::default()),
        vec![Flag::OverMaxConnections]
    );
    assert!(diagnose(&step, &burst(Some(98)), &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn pool_is_judged_by_its_workers_not_its_queue() {
    let step = step_with(cpu(10.0, 5.0, None), 400, 500, 500);
    let pool = StepContext {
        starts_together: false,
        scheduled: false,
        concurrency: Some(90),
        usable_connections: Some(97),
    };
    assert!(diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()).is_empty());
}

#[test]
fn drops_or_lag_in_rate_mode_mean_the_rate_was_not_met() {
    let rate = StepContext {
        starts_together: false,
        scheduled: true,
        concurrency: None,
        usable_connections: None,
    };
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
    assert!(diagnose(&step, &rate, &TWO_CORES, &Thresholds::default()).is_empty());
    step.dropped = 3;
    assert_eq!(
        diagnose(&step, &rate, &TWO_CORES, &Thresholds::default()),
        vec![Flag::RateNotMet]
    );
    assert!(Flag::RateNotMet.is_client_limit());
}

#[test]
fn threads_that_could_not_start_are_a_client_limit() {
    let pool = StepContext::default();
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
    assert!(diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()).is_empty());
    step.by_class[FailureClass::Spawn.index()] = 4;
    step.failed = 4;
    assert_eq!(
        diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()),
        vec![Flag::SpawnFailed]
    );
    assert!(Flag::SpawnFailed.is_client_limit());
}

#[test]
fn a_step_cut_short_is_partial() {
    let pool = StepContext::default();
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
    assert!(diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()).is_empty());
    step.unsent = 3;
    assert_eq!(
        diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()),
        vec![Flag::Partial]
    );
}

#[test]
fn the_clients_own_failures_and_the_datas_are_flagged_apart() {
    let pool = StepContext::default();
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
    step.by_class[FailureClass::Client.index()] = 2;
    step.by_class[FailureClass::NoRow.index()] = 1;
    step.by_class[FailureClass::TooManyClients.index()] = 5;
    step.failed = 8;
    assert_eq!(
        diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()),
        vec![Flag::ClientErrors, Flag::DataErrors]
    );
    assert!(Flag::ClientErrors.is_client_limit() && Flag::ClientErrors.withholds_load());
    assert!(!Flag::DataErrors.is_client_limit() && !Flag::DataErrors.withholds_load());
    assert_eq!(step.server_failed(), 5);
}

#[test]
fn busy_local_server_is_flagged() {
    let step = step_with(cpu(60.0, 5.0, Some(92.0)), 1, 500, 10);
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()),
        vec![Flag::ServerSaturated]
    );
}

#[test]
fn launch_spread_starts_above_either_bound() {
    let t = Thresholds {
        saturated_cpu_pct: 90.0,
        spread_ratio: 0.5,
        spread_max: Duration::from_millis(300),
        ..Thresholds::default()
    };
    let quiet = cpu(10.0, 5.0, None);
    // Exactly half of a 400 ms step, and exactly the bound: neither is above.
    let half = step_with(quiet, 200, 400, 50);
    assert!(diagnose(&half, &burst(None), &TWO_CORES, &t).is_empty());
    let at_max = step_with(quiet, 300, 10_000, 50);
    assert!(diagnose(&at_max, &burst(None), &TWO_CORES, &t).is_empty());
    let over_half = step_with(quiet, 201, 400, 50);
    assert_eq!(
        diagnose(&over_half, &burst(None), &TWO_CORES, &t),
        vec![Flag::LaunchSpread]
    );
}

#[test]
fn lag_behind_the_schedule_alone_means_the_rate_was_not_met() {
    let t = Thresholds {
        spread_max: Duration::from_millis(1),
        ..Thresholds::default()
    };
    let rate = StepContext {
        starts_together: false,
        scheduled: true,
        concurrency: None,
        usable_connections: None,
    };
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
    // 1 ms is exact in the histogram: a lag at the bound is not above it.
    step.queue_wait.record(1000).unwrap();
    assert_eq!(step.queue_wait_ms(99.0), Some(1.0));
    assert!(diagnose(&step, &rate, &TWO_CORES, &t).is_empty());
    step.queue_wait.record_n(2000, 10).unwrap();
    assert_eq!(
        diagnose(&step, &rate, &TWO_CORES, &t),
        vec![Flag::RateNotMet]
    );
    // Without a schedule a wait is the pool's queue, no client limit.
    let pool = StepContext {
        scheduled: false,
        ..rate
    };
    assert!(diagnose(&step, &pool, &TWO_CORES, &t).is_empty());
}

#[test]
fn a_concurrency_not_reached_names_its_side() {
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 10);
    step.concurrency.asked = Some(10);
    step.concurrency.started = 10;
    step.concurrency.connected = 10;
    step.concurrency.peak_in_flight = 10;
    step.concurrency.peak_connected = 9;
    let t = Thresholds::default();
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &t).is_empty());
    step.concurrency.peak_connected = 3;
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::AcceptedSlowly]
    );
    assert!(!Flag::AcceptedSlowly.is_client_limit());
    step.concurrency.peak_in_flight = 4;
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::StartedLate]
    );
    assert!(Flag::StartedLate.is_client_limit() && !Flag::StartedLate.withholds_load());
}

#[test]
fn a_server_seen_only_over_sql_is_saturated_when_its_sessions_on_cpu_reach_its_cores() {
    let sessions = |cpu: u32, sleeping: u32| ActivitySample {
        events: vec![
            ("CPU".to_owned(), cpu),
            ("Timeout:PgSleep".to_owned(), sleeping),
        ],
    };
    let t = Thresholds::default();
    let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 10);
    let busy = Activity::of(&[sessions(2, 0), sessions(1, 0)]).unwrap();
    step.server_cpu = ServerCpu::of(None, Some(&busy), 2.0, Some(1.0));
    assert_eq!(
        diagnose(&step, &burst(None), &TWO_CORES, &t),
        vec![Flag::ServerSaturated]
    );
    // Four sessions asleep and one on CPU half the time: not its CPU.
    let asleep = Activity::of(&[sessions(1, 4), sessions(0, 4)]).unwrap();
    step.server_cpu = ServerCpu::of(None, Some(&asleep), 2.0, Some(1.0));
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &t).is_empty());
    // No core count: nothing to judge the sessions against.
    step.server_cpu = ServerCpu::of(None, Some(&busy), 2.0, None);
    assert!(diagnose(&step, &burst(None), &TWO_CORES, &t).is_empty());
}

#[test]
fn a_postmaster_runnable_nine_tenths_of_the_step_is_saturated_apart_from_the_backends() {
    use crate::model::watch::Watched;
    let watched = |runnable: f64, cpu: f64| Watched {
        postmaster_runnable_pct: Some(runnable),
        postmaster_cpu_pct: Some(cpu),
        ..Watched::default()
    };
    let t = Thresholds::default();
    let flags_of = |step: &StepResult| diagnose(step, &burst(None), &TWO_CORES, &t);
    // The server's CPU is far from full: the postmaster's thread is the limit on its own,
    // by its runnable time (here it ran a twelfth of it, waiting for its CPU the rest).
    let mut step = step_with(cpu(40.0, 10.0, Some(20.0)), 5, 500, 50);
    step.watched = Some(watched(90.0, 7.5));
    let flags = flags_of(&step);
    assert!(flags.contains(&Flag::PostmasterSaturated), "{flags:?}");
    assert!(!flags.contains(&Flag::ServerSaturated), "{flags:?}");
    step.watched = Some(watched(89.9, 89.9));
    assert!(!flags_of(&step).contains(&Flag::PostmasterSaturated));
    // Without a watcher's figures, or on a step too short to judge, never.
    step.watched = None;
    assert!(!flags_of(&step).contains(&Flag::PostmasterSaturated));
    step.watched = Some(watched(100.0, 100.0));
    step.wall = Duration::from_millis(20);
    assert!(!flags_of(&step).contains(&Flag::PostmasterSaturated));
    assert!(!Flag::PostmasterSaturated.is_client_limit());
}
