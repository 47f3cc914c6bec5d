//! What a hold step measured besides its queries: the connections it held, those it lost, and
//! what holding them cost each side (memory and CPU per held connection).

use serde::{Deserialize, Serialize};

/// One hold step's crowd. A field is None where its side could not be read (a server or a
/// pooler on another machine).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HoldStep {
    /// Connections up at the step's end.
    pub held: u32,
    /// Connections the step set out to open (its growth, and any replacement), whether
    /// they opened or failed.
    pub opened: u32,
    /// Of those, the ones opened in place of a connection an earlier step held that dropped
    /// or never opened: each was counted where it went missing, none silently.
    pub reopened: u32,
    /// Held connections that broke during the step (or since the step before): never
    /// reconnected in place.
    pub dropped: u32,
    /// pgstress's resident memory above its own before the first connection, per held
    /// connection, in KiB.
    pub client_kib_per_held: Option<f64>,
    /// The pooler's resident memory above its own before the first connection, per held
    /// connection, in KiB.
    pub pooler_kib_per_held: Option<f64>,
    /// The server's backends at the step's end (the postmaster's children that serve a
    /// session).
    pub server_backends: Option<u32>,
    /// Each server process's own memory (the resident pages it alone maps, and its page
    /// tables), mean, in KiB.
    pub server_kib_per_backend: Option<f64>,
    /// The server's own memory added since before the first connection, per held connection,
    /// in KiB.
    pub server_kib_per_held: Option<f64>,
    /// CPU time per second per held connection, in microseconds: what a held connection
    /// costs each side while it sends its queries.
    pub client_cpu_us_per_held: Option<f64>,
    pub pooler_cpu_us_per_held: Option<f64>,
    pub server_cpu_us_per_held: Option<f64>,
}

impl HoldStep {
    /// Whether every connection the step asked for was up at its end, none having dropped.
    pub fn kept_all(&self, asked: u32) -> bool {
        self.held >= asked && self.dropped == 0
    }
}

/// Memory above a baseline, per held connection, in KiB.
pub fn kib_per_held(now_kib: u64, before_kib: u64, held: u32) -> Option<f64> {
    (held > 0).then(|| now_kib.saturating_sub(before_kib) as f64 / f64::from(held))
}

/// CPU per held connection, in µs of CPU per second, from a mean percentage of the host's
/// `host_cores`.
pub fn cpu_us_per_held(mean_pct: f64, host_cores: f64, held: u32) -> Option<f64> {
    (held > 0).then(|| mean_pct / 100.0 * host_cores * 1e6 / f64::from(held))
}

/// A step held by several agents as one crowd: held, opened, reopened and dropped summed; the
/// client's memory and CPU per held connection as the agents' sum over all they held (an
/// agent without a figure leaves the figure out). The pooler's and the server's are not the
/// agents' to read.
pub fn merged(agents: &[&HoldStep]) -> HoldStep {
    let held: u32 = agents.iter().map(|a| a.held).sum();
    let per_held = |figure: fn(&HoldStep) -> Option<f64>| {
        let total: Option<f64> = agents
            .iter()
            .map(|a| figure(a).map(|per| per * f64::from(a.held)))
            .sum();
        total
            .filter(|_| held > 0)
            .map(|total| total / f64::from(held))
    };
    HoldStep {
        held,
        opened: agents.iter().map(|a| a.opened).sum(),
        reopened: agents.iter().map(|a| a.reopened).sum(),
        dropped: agents.iter().map(|a| a.dropped).sum(),
        client_kib_per_held: per_held(|a| a.client_kib_per_held),
        client_cpu_us_per_held: per_held(|a| a.client_cpu_us_per_held),
        ..HoldStep::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_keeps_all_only_with_every_connection_up_and_none_dropped() {
        let step = |held, dropped| HoldStep {
            held,
            dropped,
            ..HoldStep::default()
        };
        assert!(step(300, 0).kept_all(300));
        assert!(!step(299, 0).kept_all(300));
        assert!(
            !step(300, 1).kept_all(300),
            "a drop replaced is still a drop"
        );
        assert_eq!(kib_per_held(1_200, 200, 100), Some(10.0));
        assert_eq!(kib_per_held(100, 200, 100), Some(0.0));
        assert_eq!(kib_per_held(1_200, 200, 0), None);
        assert_eq!(cpu_us_per_held(50.0, 2.0, 100), Some(10_000.0));
    }

    #[test]
    fn agents_crowds_merge_into_one_with_the_client_cost_over_all_held() {
        let agent = |held, kib, cpu| HoldStep {
            held,
            opened: held + 1,
            reopened: 1,
            dropped: 2,
            client_kib_per_held: kib,
            client_cpu_us_per_held: cpu,
            pooler_kib_per_held: Some(1.0),
            ..HoldStep::default()
        };
        let (a, b) = (
            agent(100, Some(10.0), Some(4.0)),
            agent(300, Some(30.0), None),
        );
        let merged = merged(&[&a, &b]);
        assert_eq!(
            (merged.held, merged.opened, merged.reopened, merged.dropped),
            (400, 402, 2, 4)
        );
        // (100 × 10 + 300 × 30) KiB over 400 held.
        assert_eq!(merged.client_kib_per_held, Some(25.0));
        assert_eq!(merged.client_cpu_us_per_held, None, "one agent had none");
        assert_eq!(merged.pooler_kib_per_held, None, "not the agents' to read");
        assert_eq!(super::merged(&[]).client_kib_per_held, None);
    }
}
