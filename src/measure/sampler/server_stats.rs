//! The server-statistics probe: over one monitoring connection (not counted in any step),
//! connections by state from pg_stat_activity and transactions from pg_stat_database.

use postgres::Client;

use super::{Probe, StepTag};
use crate::model::sample::ServerStatsSample;

/// One reading of the server's own view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsReading {
    /// Client backends connected, the monitoring connection left out.
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
        // The unnamed statement, one round trip: behind a transaction-mode pooler a named one
        // may not be on the server connection the next transaction gets.
        let rows = client.query_typed(QUERY, &[]);
        match rows.as_ref().map(|rows| rows.first()) {
            Ok(Some(row)) => Some(ServerStatsReading {
                connections: row.get::<_, i32>(0).max(0) as u32,
                active: row.get::<_, i32>(1).max(0) as u32,
                xact_commit: row.get::<_, Option<i64>>(2).unwrap_or(0),
                xact_rollback: row.get::<_, Option<i64>>(3).unwrap_or(0),
            }),
            Ok(None) | Err(_) => {
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
