//! The server-statistics probe: over one monitoring connection (not counted in any step),
//! connections by state from pg_stat_activity and transactions from pg_stat_database.

use postgres::Client;

use super::{Probe, StepTag};

/// One reading of the server's own view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsReading {
    /// Client backends connected, the monitoring connection left out.
    pub connections: u32,
    pub active: u32,
    pub xact_commit: i64,
    pub xact_rollback: i64,
}

/// One sample: the connections seen at its end, the transactions since the previous reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStatsSample {
    pub step: u32,
    pub connections: u32,
    pub active: u32,
    pub xact_commit: i64,
    pub xact_rollback: i64,
}

pub struct ServerStatsProbe {
    client: Option<Client>,
}

impl ServerStatsProbe {
    pub fn new(client: Client) -> Self {
        ServerStatsProbe {
            client: Some(client),
        }
    }
}

/// The monitor leaves itself out of the counts: it is connected, and active while it asks.
const QUERY: &str = "SELECT count(*) FILTER (WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int,
       count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active' AND pid <> pg_backend_pid())::int,
       (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
       (SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database())
FROM pg_stat_activity";

impl Probe for ServerStatsProbe {
    type Reading = Option<ServerStatsReading>;
    type Sample = ServerStatsSample;

    fn read(&mut self) -> Option<ServerStatsReading> {
        let client = self.client.as_mut()?;
        match client.query_one(QUERY, &[]) {
            Ok(row) => Some(ServerStatsReading {
                connections: row.get::<_, i32>(0).max(0) as u32,
                active: row.get::<_, i32>(1).max(0) as u32,
                xact_commit: row.get::<_, Option<i64>>(2).unwrap_or(0),
                xact_rollback: row.get::<_, Option<i64>>(3).unwrap_or(0),
            }),
            Err(_) => {
                // A monitor that lost its server stays quiet: the steps report the failures.
                self.client = None;
                None
            }
        }
    }

    fn sample(
        &mut self,
        tag: StepTag,
        before: &Option<ServerStatsReading>,
        after: &Option<ServerStatsReading>,
    ) -> Option<ServerStatsSample> {
        let after = (*after)?;
        let before = before.unwrap_or(after);
        Some(ServerStatsSample {
            step: tag.step,
            connections: after.connections,
            active: after.active,
            xact_commit: after.xact_commit - before.xact_commit,
            xact_rollback: after.xact_rollback - before.xact_rollback,
        })
    }
}

/// What the server saw during one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsSummary {
    pub connections_peak: u32,
    pub active_peak: u32,
    pub xact_commit: i64,
    pub xact_rollback: i64,
}

impl ServerStatsSummary {
    pub fn of(samples: &[ServerStatsSample]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        Some(ServerStatsSummary {
            connections_peak: samples.iter().map(|s| s.connections).max().unwrap_or(0),
            active_peak: samples.iter().map(|s| s.active).max().unwrap_or(0),
            // Each reading is a transaction of the monitor's own, counted by the next one.
            xact_commit: (samples.iter().map(|s| s.xact_commit).sum::<i64>()
                - samples.len() as i64)
                .max(0),
            xact_rollback: samples.iter().map(|s| s.xact_rollback).sum(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_peaks_and_sums_transactions() {
        let sample = |connections, xact_commit| ServerStatsSample {
            step: 1,
            connections,
            active: connections / 2,
            xact_commit,
            xact_rollback: 0,
        };
        let summary = ServerStatsSummary::of(&[sample(4, 10), sample(9, 5), sample(2, 1)]).unwrap();
        assert_eq!(summary.connections_peak, 9);
        assert_eq!(summary.active_peak, 4);
        assert_eq!(
            summary.xact_commit,
            16 - 3,
            "the monitor's own three readings left out"
        );
        assert_eq!(ServerStatsSummary::of(&[]), None);
    }
}
