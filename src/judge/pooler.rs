//! The pooler as a third side: when its one core was full (PgBouncer is one thread) or it
//! refused clients, the step measured the pooler, and the verdict names it, not the server.

use super::flags::fills;
use super::verdict::Limit;
use crate::model::outcome::FailureClass;
use crate::model::rules::{Flag, Thresholds};
use crate::model::step::StepResult;

/// The pooler's flags of one step. `pooler_cores`: the most CPUs the pooler can use (1 for
/// PgBouncer), None for all the host's. A one-thread pooler whose thread was runnable (running,
/// or ready and waiting for a CPU) the threshold's share of the step is saturated too: every
/// client waited for it, and on a host busy with other work it never shows a full core.
pub fn pooler_flags(
    step: &StepResult,
    pooler_cores: Option<f64>,
    host_cores: f64,
    t: &Thresholds,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let cores = pooler_cores.unwrap_or(host_cores);
    let busy = step
        .pooler
        .cpu
        .is_some_and(|cpu| fills(cpu.mean, host_cores, cores, t.saturated_cpu_pct));
    let one_thread = pooler_cores == Some(1.0);
    let runnable = step
        .pooler
        .runnable_pct
        .is_some_and(|pct| one_thread && pct >= t.saturated_cpu_pct);
    if busy || runnable {
        flags.push(Flag::PoolerSaturated);
    }
    if step.failures(FailureClass::PoolerTooManyClients) > 0 {
        flags.push(Flag::PoolerRefused);
    }
    flags
}

/// The first step (of those judged) with a pooler flag; a refusal says more than a busy core.
fn first_pooler_limit(judged: &[StepResult]) -> Option<Limit> {
    judged.iter().find_map(|step| {
        step.flags
            .iter()
            .filter(|f| f.is_pooler_limit())
            .min_by_key(|f| !f.withholds_load())
            .map(|flag| Limit::Pooler {
                flag: *flag,
                step: step.step,
                requests: step.requests,
            })
    })
}

/// The limit once the pooler is heard: the pooler's in place of the server's, and when its
/// flag came before the client's. In the same step a flag that kept load from the server
/// (clients refused, threads never started) says more than a busy CPU; otherwise the client's
/// wins the tie (a starved client cannot show a pooler's limit either).
pub fn with_pooler(limit: Option<Limit>, judged: &[StepResult]) -> Option<Limit> {
    let Some(pooler) = first_pooler_limit(judged) else {
        return limit;
    };
    let rank = |flag: &Flag, step: u32| (step, !flag.withholds_load());
    match (&limit, &pooler) {
        (
            Some(Limit::Client { flag, step, .. }),
            Limit::Pooler {
                flag: pooler_flag,
                step: pooler_step,
                ..
            },
        ) if rank(flag, *step) <= rank(pooler_flag, *pooler_step) => limit,
        _ => Some(pooler),
    }
}

/// The verdict's sentence for the pooler's limit.
pub fn sentence(flag: Flag, step: u32, requests: u32, broke: bool) -> String {
    let what = match flag {
        Flag::PoolerRefused => "the pooler refused clients (its max_client_conn)",
        _ => "the pooler's CPU was full (PgBouncer runs on one core)",
    };
    match broke {
        true => format!(
            "whose limit: possibly the pooler's — {flag} from step {step} ({requests} requests): \
             {what}; the numbers from there on measure the pooler as much as the server"
        ),
        false => format!(
            "the ramp may have measured the pooler, not the server — {flag} from step {step} \
             ({requests} requests): {what}; the server's capacity may be higher than shown"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::step::MeanPeak;
    use crate::test_support::{step_result, step_with_failures};

    fn busy(pct: f64) -> Option<MeanPeak> {
        Some(MeanPeak {
            mean: pct,
            peak: None,
        })
    }

    #[test]
    fn one_full_core_of_two_saturates_pgbouncer() {
        let t = Thresholds::default();
        let mut step = step_result(1, 50, 0);
        assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
        // 46% of a 2-core host is 0.92 of PgBouncer's one core.
        step.pooler.cpu = busy(46.0);
        assert_eq!(
            pooler_flags(&step, Some(1.0), 2.0, &t),
            vec![Flag::PoolerSaturated]
        );
        // A pooler that may use every core is not full at half of them.
        assert!(pooler_flags(&step, None, 2.0, &t).is_empty());
        step.pooler.cpu = busy(44.0);
        assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
    }

    #[test]
    fn a_thread_waiting_for_a_cpu_it_never_got_is_saturated_too() {
        let t = Thresholds::default();
        let mut step = step_result(1, 50, 0);
        // 10% of the host, but its thread runnable through the whole step.
        step.pooler.cpu = busy(10.0);
        step.pooler.runnable_pct = Some(95.0);
        assert_eq!(
            pooler_flags(&step, Some(1.0), 2.0, &t),
            vec![Flag::PoolerSaturated]
        );
        step.pooler.runnable_pct = Some(85.0);
        assert!(pooler_flags(&step, Some(1.0), 2.0, &t).is_empty());
        // One process among many (pgpool-II): its leader's thread says nothing of the rest.
        step.pooler.runnable_pct = Some(100.0);
        assert!(pooler_flags(&step, None, 2.0, &t).is_empty());
    }

    #[test]
    fn refused_clients_are_the_poolers_and_withhold_load() {
        let t = Thresholds::default();
        let step = step_with_failures(1, 101, 1, FailureClass::PoolerTooManyClients, 10);
        assert_eq!(
            pooler_flags(&step, Some(1.0), 2.0, &t),
            vec![Flag::PoolerRefused]
        );
        assert_eq!(step.server_failed(), 0, "not the server's failure");
    }

    fn flagged(step: u32, flag: Flag) -> StepResult {
        let mut result = step_result(step, 10 * step, 0);
        result.flags.push(flag);
        result
    }

    #[test]
    fn the_earlier_side_is_named_and_the_client_wins_a_tie() {
        let pooler_at_2 = [
            flagged(1, Flag::LaunchSpread),
            flagged(2, Flag::PoolerSaturated),
        ];
        let client = Some(Limit::Client {
            flag: Flag::LaunchSpread,
            step: 1,
            requests: 10,
            agent: None,
        });
        assert_eq!(with_pooler(client.clone(), &pooler_at_2), client);
        let steps = [
            flagged(1, Flag::PoolerSaturated),
            flagged(2, Flag::LaunchSpread),
        ];
        let late_client = Some(Limit::Client {
            flag: Flag::LaunchSpread,
            step: 2,
            requests: 20,
            agent: None,
        });
        let pooler = Some(Limit::Pooler {
            flag: Flag::PoolerSaturated,
            step: 1,
            requests: 10,
        });
        assert_eq!(with_pooler(late_client, &steps), pooler);
        assert_eq!(with_pooler(Some(Limit::Server), &steps), pooler);
        assert_eq!(with_pooler(None, &steps), pooler);
        assert_eq!(with_pooler(Some(Limit::Server), &[]), Some(Limit::Server));
        // Refused clients say more than a busy CPU in the same step.
        let refused = [flagged(1, Flag::PoolerRefused)];
        let busy_client = Some(Limit::Client {
            flag: Flag::ClientSaturated,
            step: 1,
            requests: 10,
            agent: None,
        });
        let refused_limit = with_pooler(busy_client, &refused);
        assert!(
            matches!(&refused_limit, Some(Limit::Pooler { flag, .. }) if *flag == Flag::PoolerRefused),
            "{refused_limit:?}"
        );
    }
}
