//! The server-statistics probe: over one monitoring connection (not counted in any step),
//! the run's sessions by state from pg_stat_activity. The connection is pgstress's lean one:
//! through the `postgres` crate's runtime a reading cost 0.15 ms of CPU, on it 0.09 ms.

use std::time::{Duration, Instant};

use crate::pg::wire::Connection;

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
    connection: Option<Connection>,
    /// The application_name of the run's requests: other sessions on the server are not its.
    application_name: String,
    /// The most a reading may take; past it the monitor is given up.
    deadline: Duration,
}

impl ServerStatsProbe {
    pub fn new(connection: Connection, application_name: String, deadline: Duration) -> Self {
        ServerStatsProbe {
            connection: Some(connection),
            application_name,
            deadline,
        }
    }
}

/// A count as the query returns it (`int`), never below zero.
fn count(value: Option<&Option<String>>) -> Option<u32> {
    let value: i64 = value?.as_deref()?.parse().ok()?;
    Some(value.max(0) as u32)
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
        let connection = self.connection.as_mut()?;
        connection.set_deadline(Instant::now() + self.deadline);
        // The unnamed statement, one round trip: behind a transaction-mode pooler a named one
        // may not be on the server connection the next transaction gets.
        let row = connection.first_row(QUERY, Some(&self.application_name));
        let reading = match row {
            Ok(Some(row)) => count(row.first()).zip(count(row.get(1))),
            Ok(None) | Err(_) => None,
        };
        match reading {
            Some((connections, active)) => Some(ServerStatsReading {
                connections,
                active,
            }),
            None => {
                // A monitor that lost its server stays quiet: the steps report the failures.
                self.connection = None;
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
