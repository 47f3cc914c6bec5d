//! Whose CPUs filled first: each side's CPU over the CPUs it may run on, step by step.

use super::verdict::{CpusFilled, Filled, Judging};
use crate::model::rules::{Flag, STARVED_WAIT_SHARE};
use crate::model::server_cpu::ServerSource;
use crate::model::step::StepResult;

use crate::model::server_cpu::of_own_cpus;

/// Each side's figures in one step: its mean over the step (as the flags judge it), and
/// whether the server's filled by its own rule (measured, or its sessions' estimate).
fn figures(step: &StepResult, judging: &Judging) -> (CpusFilled, bool) {
    let host = judging.host_cores;
    let server = &step.server_cpu;
    let client_pct = step
        .cpu
        .process
        .map(|process| of_own_cpus(process.mean, host, judging.client_cores));
    let figures = CpusFilled {
        side: Filled::Neither,
        step: step.step,
        server_pct: server.own.map(|own| own.mean),
        server_cores: server.cores,
        server_source: server.source,
        server_sessions_on_cpu: server.sessions_on_cpu,
        client_pct,
        client_cores: judging.client_cores,
        client_wait_share: step.cpu.client_wait_share,
        client_starved: step.cpu.starved(STARVED_WAIT_SHARE),
        too_short: 0,
        min_judged_ms: judging.min_judged_wall.as_secs_f64() * 1000.0,
    };
    (figures, server.saturated(judging.saturated_cpu_pct))
}

/// The first step in which a side's CPUs filled, and which; else the busiest step's figures.
/// Steps too short to judge a CPU on are left out: when every step was, the busiest of them
/// is shown as `Unjudged`.
pub fn filled_first(steps: &[StepResult], judging: &Judging) -> Option<CpusFilled> {
    let threshold = judging.saturated_cpu_pct;
    let measured: Vec<&StepResult> = steps
        .iter()
        .filter(|step| step.cpu.process.is_some())
        .collect();
    let short = |step: &StepResult| step.flags.contains(&Flag::TooShortToJudge);
    let too_short = measured.iter().filter(|step| short(step)).count() as u32;
    let with_count = |(figures, server): (CpusFilled, bool)| {
        (
            CpusFilled {
                too_short,
                ..figures
            },
            server,
        )
    };
    let busiest = |f: &CpusFilled| f.server_pct.unwrap_or(0.0).max(f.client_pct.unwrap_or(0.0));
    if !measured.is_empty() && too_short == measured.len() as u32 {
        return measured
            .iter()
            .map(|step| with_count(figures(step, judging)).0)
            .max_by(|a, b| busiest(a).total_cmp(&busiest(b)))
            .map(|figures| CpusFilled {
                side: Filled::Unjudged,
                ..figures
            });
    }
    let all: Vec<(CpusFilled, bool)> = measured
        .into_iter()
        .filter(|step| !short(step))
        .map(|step| with_count(figures(step, judging)))
        .collect();
    let full = |(figures, server): &(CpusFilled, bool)| {
        let client =
            figures.client_pct.is_some_and(|pct| pct >= threshold) || figures.client_starved;
        match (*server, client) {
            (true, true) => Some(Filled::Both),
            (true, false) => Some(Filled::Server),
            (false, true) => Some(Filled::Client),
            (false, false) => None,
        }
    };
    if let Some((side, (figures, _))) = all.iter().find_map(|f| full(f).map(|side| (side, f))) {
        return Some(CpusFilled {
            side,
            ..figures.clone()
        });
    }
    all.into_iter()
        .map(|(figures, _)| figures)
        .max_by(|a, b| busiest(a).total_cmp(&busiest(b)))
}

/// "1 CPU", "2 CPUs", "1.5 CPUs".
pub fn cpus(n: f64) -> String {
    if n == 1.0 {
        "1 CPU".to_owned()
    } else {
        format!("{n} CPUs")
    }
}

/// The server's half of the CPU line, in the words its source allows.
fn server_words(filled: &CpusFilled) -> String {
    let sessions = filled.server_sessions_on_cpu;
    match (filled.server_source, filled.server_pct, filled.server_cores) {
        (ServerSource::SqlEstimate, Some(pct), Some(cores)) => format!(
            "the server's sessions on CPU averaged {:.1} on its {} ({pct:.0}%: the sampled \
             estimate from pg_stat_activity, not a measurement of its CPU)",
            sessions.unwrap_or(pct * cores / 100.0),
            cpus(cores)
        ),
        (ServerSource::SqlEstimate, _, _) => format!(
            "the server's CPU is not seen from here (its sessions on CPU averaged {:.1}, sampled \
             from pg_stat_activity; give --server-cores to judge them against its CPUs)",
            sessions.unwrap_or(0.0)
        ),
        (ServerSource::Watcher, Some(pct), Some(cores)) => format!(
            "the server used {pct:.0}% of its {} (measured by its watcher)",
            cpus(cores)
        ),
        (_, Some(pct), Some(cores)) => format!("the server used {pct:.0}% of its {}", cpus(cores)),
        _ => "the server's CPU is not seen from here".to_owned(),
    }
}

/// The verdict's line on the CPUs.
pub fn sentence(filled: &CpusFilled) -> String {
    let server = server_words(filled);
    let client = match filled.client_pct {
        Some(pct) => format!("pgstress {pct:.0}% of its {}", cpus(filled.client_cores)),
        None => "pgstress's CPU was not measured".to_owned(),
    };
    let wait = filled
        .client_wait_share
        .map(|share| {
            format!(
                ", its threads waiting for a CPU {:.0}% of its requests' time",
                share * 100.0
            )
        })
        .unwrap_or_default();
    let figures = format!("{server}, {client}{wait}");
    let step = filled.step;
    let min = humantime::format_duration(std::time::Duration::from_millis(
        filled.min_judged_ms.round() as u64,
    ));
    let short = match filled.too_short {
        0 => String::new(),
        1 => format!(" (1 step lasted under {min}, too short to judge)"),
        n => format!(" ({n} steps lasted under {min}, too short to judge)"),
    };
    let line = match filled.side {
        Filled::Unjudged => {
            return format!(
                "CPUs: not judged: every step lasted under {min}, too short to measure a \
                 CPU over (each side's CPU a few clock ticks, its threads' wait the release's \
                 instant); make the steps last longer (pool mode: --duration); at its busiest \
                 (step {step}) {figures}"
            );
        }
        Filled::Neither => {
            format!("CPUs: neither side's filled; at its busiest (step {step}) {figures}")
        }
        Filled::Both => format!("CPUs: both sides' filled at step {step}: {figures}"),
        Filled::Server => format!("CPUs: the server's filled first, at step {step}: {figures}"),
        Filled::Client => format!("CPUs: pgstress's filled first, at step {step}: {figures}"),
    };
    format!("{line}{short}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::activity::{Activity, ActivitySample};
    use crate::model::server_cpu::ServerCpu;
    use crate::model::step::MeanPeak;
    use crate::test_support::step_result;

    fn judging() -> Judging {
        Judging {
            host_cores: 2.0,
            client_cores: 1.0,
            saturated_cpu_pct: 90.0,
            ..Judging::default()
        }
    }

    fn step(n: u32, server: f64, client: f64) -> StepResult {
        let mut step = step_result(n, 10, 0);
        let mean = |mean| Some(MeanPeak { mean, peak: None });
        step.cpu.server = mean(server);
        step.cpu.process = mean(client);
        // The server on one of the host's two CPUs.
        step.server_cpu = ServerCpu::of(step.cpu.server, None, 2.0, Some(1.0));
        step
    }

    /// A step whose server is seen over SQL alone: `on_cpu` sessions on CPU at every sample.
    fn remote(n: u32, on_cpu: u32, cores: Option<f64>) -> StepResult {
        let mut step = step_result(n, 10, 0);
        step.cpu.process = Some(MeanPeak {
            mean: 10.0,
            peak: None,
        });
        let sample = ActivitySample {
            events: vec![("CPU".to_owned(), on_cpu)],
        };
        let activity = Activity::of(&[sample.clone(), sample]).unwrap();
        step.server_cpu = ServerCpu::of(None, Some(&activity), 2.0, cores);
        step
    }

    #[test]
    fn a_server_seen_over_sql_is_named_as_the_sampled_estimate() {
        let steps = [remote(1, 0, Some(2.0)), remote(2, 3, Some(2.0))];
        let filled = filled_first(&steps, &judging()).unwrap();
        assert_eq!((filled.side, filled.step), (Filled::Server, 2));
        assert_eq!(filled.server_source, ServerSource::SqlEstimate);
        assert_eq!(filled.server_pct, Some(150.0));
        let line = sentence(&filled);
        assert!(
            line.contains("the server's filled first, at step 2: the server's sessions on CPU averaged 3.0 on its 2 CPUs (150%: the sampled estimate"),
            "{line}"
        );
        // 1.9 of 2 cores would fill a measured CPU, not the estimate: sessions on CPU must
        // reach the cores.
        let mut under = remote(1, 2, Some(2.0));
        under.server_cpu.own = under
            .server_cpu
            .own
            .map(|own| MeanPeak { mean: 95.0, ..own });
        let neither = filled_first(&[under], &judging()).unwrap();
        assert_eq!(neither.side, Filled::Neither);
        // Without its cores: the sessions are named, not judged.
        let unjudged = filled_first(&[remote(1, 4, None)], &judging()).unwrap();
        assert_eq!(unjudged.side, Filled::Neither);
        let line = sentence(&unjudged);
        assert!(
            line.contains("not seen from here (its sessions on CPU averaged 4.0")
                && line.contains("--server-cores"),
            "{line}"
        );
        let measured = sentence(&filled_first(&[step(1, 49.0, 10.0)], &judging()).unwrap());
        assert!(!measured.contains("estimate"), "{measured}");
    }

    #[test]
    fn the_side_whose_own_cpus_fill_first_is_named() {
        // 49% of a 2-core host is 98% of the server's one CPU.
        let steps = [
            step(1, 30.0, 10.0),
            step(2, 49.0, 20.0),
            step(3, 50.0, 48.0),
        ];
        let filled = filled_first(&steps, &judging()).unwrap();
        assert_eq!((filled.side, filled.step), (Filled::Server, 2));
        assert_eq!(filled.server_pct, Some(98.0));
        assert_eq!(filled.client_pct, Some(40.0));
        let line = sentence(&filled);
        assert!(
            line.contains("the server's filled first, at step 2"),
            "{line}"
        );
        assert!(
            line.contains("98% of its 1 CPU") && line.contains("pgstress 40%"),
            "{line}"
        );
    }

    #[test]
    fn steps_too_short_to_judge_are_left_out_and_counted() {
        // Step 1 reads the server full over a few milliseconds: not judged.
        let mut short = step(1, 50.0, 10.0);
        short.flags.push(Flag::TooShortToJudge);
        let steps = [short.clone(), step(2, 30.0, 48.0)];
        let judging = Judging {
            min_judged_wall: std::time::Duration::from_millis(100),
            ..judging()
        };
        let filled = filled_first(&steps, &judging).unwrap();
        assert_eq!(
            (filled.side, filled.step, filled.too_short),
            (Filled::Client, 2, 1)
        );
        let line = sentence(&filled);
        assert!(
            line.starts_with("CPUs: pgstress's filled first, at step 2")
                && line.ends_with("(1 step lasted under 100ms, too short to judge)"),
            "{line}"
        );
        // Every step too short: no side named, the busiest shown for what it is.
        let mut also_short = step(2, 10.0, 5.0);
        also_short.flags.push(Flag::TooShortToJudge);
        let unjudged = filled_first(&[short, also_short], &judging).unwrap();
        assert_eq!(
            (unjudged.side, unjudged.step, unjudged.too_short),
            (Filled::Unjudged, 1, 2)
        );
        let line = sentence(&unjudged);
        assert!(
            line.starts_with("CPUs: not judged: every step lasted under 100ms")
                && line.contains("--duration")
                && line.contains("at its busiest (step 1)"),
            "{line}"
        );
        let two = CpusFilled {
            too_short: 2,
            ..filled
        };
        assert!(sentence(&two).ends_with("(2 steps lasted under 100ms, too short to judge)"));
    }

    #[test]
    fn a_starved_client_fills_its_cpus() {
        let mut starved = step(1, 20.0, 19.0);
        starved.cpu.client_wait_share = Some(STARVED_WAIT_SHARE);
        let filled = filled_first(&[starved], &judging()).unwrap();
        assert_eq!(filled.side, Filled::Client);
        let quiet = filled_first(&[step(1, 10.0, 5.0), step(2, 20.0, 5.0)], &judging()).unwrap();
        assert_eq!((quiet.side, quiet.step), (Filled::Neither, 2));
        assert_eq!(filled_first(&[], &judging()), None);
    }
}
