//! The server-statistics probe: over one monitoring connection (not counted in any step),
//! connections by state from pg_stat_activity and transactions from pg_stat_database.

use postgres::Client;

use super::{Probe, StepTag};
use crate::model::sample::ServerStatsSample;

/// One reading of the server's own view of pgstress's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStatsReading {
    /// Sessions of the run's requests (by their application_name), the monitor left out.
    pub connections: u32,
    pub active: u32,
}

pub struct ServerStatsProbe {
    client: Option<Client>,
    /// The application_name of the run's requests: other sessions on the server are not its.
    application_name: String,
}

impl ServerStatsProbe {
    pub fn new(client: Client, application_name: String) -> Self {
        ServerStatsProbe {
            client: Some(client),
            application_name,
        }
    }
}

/// The run's own sessions: by the requests' application_name, the monitor left out (it may
/// carry the same name when the user set one).
const QUERY: &str = "SELECT count(*)::int, count(*) FILTER (WHERE state = 'active')::int
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND application_name = $1 AND pid <> pg_backend_pid()";

impl Probe for ServerStatsProbe {
    type Reading = Option<ServerStatsReading>;
    type Whole = ();
    type Sample = ServerStatsSample;

    fn read(&mut self) -> Option<ServerStatsReading> {
        let client = self.client.as_mut()?;
        // The unnamed statement, one round trip: behind a transaction-mode pooler a named one
        // may not be on the server connection the next transaction gets.
        let name = self.application_name.as_str();
        let rows = client.query_typed(QUERY, &[(&name, postgres::types::Type::TEXT)]);
        match rows.as_ref().map(|rows| rows.first()) {
            Ok(Some(row)) => Some(ServerStatsReading {
                connections: row.get::<_, i32>(0).max(0) as u32,
                active: row.get::<_, i32>(1).max(0) as u32,
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
        _before: &Option<ServerStatsReading>,
        after: &Option<ServerStatsReading>,
    ) -> Option<ServerStatsSample> {
        let after = (*after)?;
        Some(ServerStatsSample {
            step: tag.step,
            connections: after.connections,
            active: after.active,
        })
    }
}
