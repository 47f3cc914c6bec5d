//! Whose limit the verdict names: the server's CPUs without a breaking point, an agent's share.

use super::*;
use crate::model::plan::CONCURRENT;
use crate::model::server_cpu::ServerCpu;
use crate::test_support::step_result;

fn judging(steps_planned: u32) -> Judging {
    Judging {
        steps_planned,
        unit: CONCURRENT,
        ..Judging::default()
    }
}

#[test]
fn a_server_whose_cpus_filled_is_the_limit_without_a_breaking_point() {
    use crate::model::step::MeanPeak;
    let busy = |n, server, client| {
        let mut step = step_result(n, 50 * n, 0);
        step.cpu.server = Some(MeanPeak {
            mean: server,
            peak: None,
        });
        step.cpu.process = Some(MeanPeak {
            mean: client,
            peak: None,
        });
        step.server_cpu = ServerCpu::of(step.cpu.server, None, 2.0, Some(1.0));
        step
    };
    let pinned = Judging {
        host_cores: 2.0,
        client_cores: 1.0,
        saturated_cpu_pct: 90.0,
        ..judging(15)
    };
    // 48% of a 2-core host is 96% of the server's one CPU; pgstress 10% of its own.
    let steps = vec![busy(1, 48.0, 5.0), busy(2, 49.0, 5.0)];
    let verdict = Verdict::judge(&steps, &pinned, None);
    assert_eq!(verdict.breaking_point, None);
    assert_eq!(verdict.limit, Some(Limit::Server));
    let lines = verdict.sentences();
    assert!(lines[0].starts_with("no breaking point"), "{lines:?}");
    assert!(
        lines[1].starts_with("whose limit: the server's CPUs")
            && lines[1].contains("no request failed"),
        "{lines:?}"
    );
    // Both sides full is no answer; neither full is none either.
    let both = vec![busy(1, 48.0, 46.0)];
    assert_eq!(Verdict::judge(&both, &pinned, None).limit, None);
    let quiet = vec![busy(1, 20.0, 5.0)];
    assert_eq!(Verdict::judge(&quiet, &pinned, None).limit, None);
    assert!(!lines[1].contains("estimate"), "{lines:?}");
}

#[test]
fn a_server_seen_over_sql_is_the_limit_by_the_sampled_estimate() {
    use crate::model::activity::{Activity, ActivitySample};
    use crate::model::step::MeanPeak;
    let mut step = step_result(1, 50, 0);
    step.cpu.process = Some(MeanPeak {
        mean: 5.0,
        peak: None,
    });
    let on_cpu = ActivitySample {
        events: vec![("CPU".to_owned(), 3)],
    };
    let activity = Activity::of(&[on_cpu]).unwrap();
    step.server_cpu = ServerCpu::of(None, Some(&activity), 2.0, Some(1.0));
    let judging = Judging {
        host_cores: 2.0,
        client_cores: 1.0,
        saturated_cpu_pct: 90.0,
        ..judging(1)
    };
    let verdict = Verdict::judge(&[step], &judging, None);
    assert_eq!(verdict.limit, Some(Limit::Server));
    let lines = verdict.sentences();
    assert!(
        lines[1].starts_with(
            "whose limit: the server's CPUs (by the sampled estimate: its sessions on CPU reached its cores)"
        ),
        "{lines:?}"
    );
    assert!(
        lines[2].contains("the server's filled first")
            && lines[2].contains("sessions on CPU averaged 3.0 on its 1 CPU")
            && lines[2].contains("the sampled estimate"),
        "{lines:?}"
    );
}

#[test]
fn a_client_flag_raised_by_an_agent_names_the_agent() {
    let mut steps = vec![step_result(1, 50, 0), step_result(2, 100, 9)];
    steps[1].flags = vec![Flag::ClientSaturated];
    steps[1].limiting_agents = vec![
        (Flag::LaunchSpread, "agent-1".to_owned()),
        (Flag::ClientSaturated, "agent-3".to_owned()),
    ];
    let verdict = Verdict::judge(&steps, &judging(2), None);
    assert!(
        matches!(&verdict.limit, Some(Limit::Client { agent: Some(name), .. }) if name == "agent-3"),
        "{:?}",
        verdict.limit
    );
    let line = verdict.sentences().join("\n");
    assert!(
        line.contains("client-saturated from step 2 (100 requests, on agent agent-3)"),
        "{line}"
    );
}
