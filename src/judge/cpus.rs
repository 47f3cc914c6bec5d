//! Whose CPUs filled first: each side's CPU over the CPUs it may run on, step by step.

use super::verdict::{CpusFilled, Filled, Judging};
use crate::model::rules::{Flag, STARVED_WAIT_SHARE};
use crate::model::step::StepResult;

/// A share of all the host's cores as a share of `cores` of them, in percent.
pub fn of_own_cpus(pct_of_host: f64, host_cores: f64, cores: f64) -> f64 {
    pct_of_host * host_cores / cores.max(0.01)
}

/// Each side's figures in one step: its mean over the step (as the flags judge it).
fn figures(step: &StepResult, judging: &Judging) -> CpusFilled {
    let host = judging.host_cores;
    let server_cores = judging.server_cores;
    let server_pct = match (step.cpu.server, server_cores) {
        (Some(server), Some(cores)) => Some(of_own_cpus(server.mean, host, cores)),
        _ => None,
    };
    let client_pct = step
        .cpu
        .process
        .map(|process| of_own_cpus(process.mean, host, judging.client_cores));
    CpusFilled {
        side: Filled::Neither,
        step: step.step,
        server_pct,
        server_cores,
        client_pct,
        client_cores: judging.client_cores,
        client_wait_share: step.cpu.client_wait_share,
        client_starved: step.cpu.starved(STARVED_WAIT_SHARE),
        too_short: 0,
        min_judged_ms: judging.min_judged_wall.as_secs_f64() * 1000.0,
    }
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
    let with_count = |figures: CpusFilled| CpusFilled {
        too_short,
        ..figures
    };
    let busiest = |f: &CpusFilled| f.server_pct.unwrap_or(0.0).max(f.client_pct.unwrap_or(0.0));
    if !measured.is_empty() && too_short == measured.len() as u32 {
        return measured
            .iter()
            .map(|step| figures(step, judging))
            .max_by(|a, b| busiest(a).total_cmp(&busiest(b)))
            .map(|figures| CpusFilled {
                side: Filled::Unjudged,
                ..with_count(figures)
            });
    }
    let all: Vec<CpusFilled> = measured
        .into_iter()
        .filter(|step| !short(step))
        .map(|step| with_count(figures(step, judging)))
        .collect();
    let full = |figures: &CpusFilled| {
        let server = figures.server_pct.is_some_and(|pct| pct >= threshold);
        let client =
            figures.client_pct.is_some_and(|pct| pct >= threshold) || figures.client_starved;
        match (server, client) {
            (true, true) => Some(Filled::Both),
            (true, false) => Some(Filled::Server),
            (false, true) => Some(Filled::Client),
            (false, false) => None,
        }
    };
    if let Some((side, figures)) = all.iter().find_map(|f| full(f).map(|side| (side, f))) {
        return Some(CpusFilled {
            side,
            ..figures.clone()
        });
    }
    all.into_iter()
        .max_by(|a, b| busiest(a).total_cmp(&busiest(b)))
}

/// The verdict's line on the CPUs.
pub fn sentence(filled: &CpusFilled) -> String {
    let cpus = |n: f64| {
        if n == 1.0 {
            "1 CPU".to_owned()
        } else {
            format!("{n} CPUs")
        }
    };
    let server = match (filled.server_pct, filled.server_cores) {
        (Some(pct), Some(cores)) => format!("the server used {pct:.0}% of its {}", cpus(cores)),
        _ => "the server's CPU is not seen from here".to_owned(),
    };
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
    use crate::model::step::MeanPeak;
    use crate::test_support::step_result;

    fn judging() -> Judging {
        Judging {
            host_cores: 2.0,
            client_cores: 1.0,
            server_cores: Some(1.0),
            saturated_cpu_pct: 90.0,
            ..Judging::default()
        }
    }

    fn step(n: u32, server: f64, client: f64) -> StepResult {
        let mut step = step_result(n, 10, 0);
        let mean = |mean| Some(MeanPeak { mean, peak: None });
        step.cpu.server = mean(server);
        step.cpu.process = mean(client);
        step
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
