//! The server-statistics probe: over one monitoring connection (not counted in any step), one
//! query a sample reads what any server shows over SQL: the run's sessions by state, every
//! client's active sessions by wait event (`pg_stat_activity`), and the database's own
//! counters (`pg_stat_database`). The connection is pgstress's lean one: through the
//! `postgres` crate's runtime a reading cost 0.15 ms of CPU, on it 0.09 ms (its cost on the
//! server: docs/performance.md).

use std::time::{Duration, Instant};

use crate::pg::wire::Connection;

use super::{Probe, StepTag};
use crate::model::activity::{ActivitySample, DatabaseCounts};
use crate::model::sample::ServerStatsSample;

/// One reading of the server's own view.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerStatsReading {
    /// Sessions of the run's requests (by their application_name), the monitor left out.
    pub connections: u32,
    pub active: u32,
    /// Every client's active sessions by event, the monitor left out.
    pub activity: ActivitySample,
    pub counts: DatabaseCounts,
    /// Read at a step's edge: its end's reading finds the step's requests all ended.
    pub edge: bool,
}

pub struct ServerStatsProbe {
    connection: Option<Connection>,
    /// `query()` for this server.
    query: String,
    /// The application_name of the run's requests: other sessions on the server are not its.
    application_name: String,
    /// The most a reading may take; past it the monitor is given up.
    deadline: Duration,
    /// The run's sessions close after each request (all but a pool's kept connections).
    sessions_close: bool,
}

impl ServerStatsProbe {
    pub fn new(
        connection: Connection,
        application_name: String,
        deadline: Duration,
        sessions_close: bool,
    ) -> Self {
        let mut connection = connection;
        connection.set_deadline(Instant::now() + deadline);
        let version = connection
            .first_row("SELECT current_setting('server_version_num')", None)
            .ok()
            .flatten()
            .and_then(|row| counter(row.first()));
        ServerStatsProbe {
            query: query(version.is_none_or(|v| v >= SESSIONS_SINCE)),
            connection: Some(connection),
            application_name,
            deadline,
            sessions_close,
        }
    }
}

/// A count as the query returns it (`int`), never below zero.
fn count(value: Option<&Option<String>>) -> Option<u32> {
    let value: i64 = value?.as_deref()?.parse().ok()?;
    Some(value.max(0) as u32)
}

/// A counter as the query returns it (`bigint`, or NULL where this server lacks it).
fn counter(value: Option<&Option<String>>) -> Option<i64> {
    value?.as_deref()?.parse().ok()
}

/// The active sessions as the query aggregates them: a line `COUNT EVENT` per event.
pub fn parse_events(text: Option<&str>) -> ActivitySample {
    let events = text
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (count, event) = line.split_once(' ')?;
            Some((event.to_owned(), count.parse().ok()?))
        })
        .collect();
    ActivitySample { events }
}

/// The columns of one row of `query()`, read; None when the row is not one.
pub fn parse_row(row: &[Option<String>]) -> Option<ServerStatsReading> {
    let at = |i: usize| row.get(i);
    Some(ServerStatsReading {
        connections: count(at(0))?,
        active: count(at(1))?,
        activity: parse_events(at(2)?.as_deref()),
        counts: DatabaseCounts {
            xact_commit: counter(at(3)),
            xact_rollback: counter(at(4)),
            sessions: counter(at(5)),
            sessions_abandoned: counter(at(6)),
            sessions_fatal: counter(at(7)),
            deadlocks: counter(at(8)),
            temp_bytes: counter(at(9)),
        },
        edge: false,
    })
}

/// The longest the step's end waits for its sessions to close, and how often it looks.
const CLOSING_WAIT: Duration = Duration::from_millis(500);
const CLOSING_POLL: Duration = Duration::from_millis(10);

/// One round trip a sample. The sessions are clients' (and their parallel workers, which run
/// their queries on CPUs of their own), never the server's own processes (checkpointer,
/// autovacuum, walsenders) nor the monitor. The run's own sessions are those of the requests'
/// application_name (the monitor may carry the same when the user set one). A session is on
/// CPU when active with no wait event. The functions behind `pg_stat_activity` and
/// `pg_stat_database` are called directly: the views' joins and columns cost four times the
/// planning (docs/performance.md). A server before PostgreSQL 14 counts no sessions.
pub fn query(sessions_counted: bool) -> String {
    let sessions = match sessions_counted {
        true => {
            "pg_stat_get_db_sessions(d.oid), pg_stat_get_db_sessions_abandoned(d.oid),
       pg_stat_get_db_sessions_fatal(d.oid)"
        }
        false => "NULL, NULL, NULL",
    };
    format!(
        "WITH a AS (
    SELECT backend_type = 'client backend' AND application_name = $1 AS ours,
           state = 'active' AS active,
           coalesce(wait_event_type || ':' || wait_event, 'CPU') AS event
    FROM pg_stat_get_activity(NULL)
    WHERE backend_type IN ('client backend', 'parallel worker') AND pid <> pg_backend_pid()
)
SELECT (SELECT count(*) FROM a WHERE ours)::int,
       (SELECT count(*) FROM a WHERE ours AND active)::int,
       (SELECT string_agg(n || ' ' || event, E'\\n' ORDER BY event)
          FROM (SELECT event, count(*) AS n FROM a WHERE active GROUP BY event) e),
       pg_stat_get_db_xact_commit(d.oid), pg_stat_get_db_xact_rollback(d.oid),
       {sessions},
       pg_stat_get_db_deadlocks(d.oid), pg_stat_get_db_temp_bytes(d.oid)
FROM pg_database d WHERE d.datname = current_database()"
    )
}

/// PostgreSQL 14 added the session counters.
const SESSIONS_SINCE: i64 = 140_000;

impl Probe for ServerStatsProbe {
    type Reading = Option<ServerStatsReading>;
    /// The database's counters over the step.
    type Whole = DatabaseCounts;
    type Sample = ServerStatsSample;

    fn read(&mut self) -> Option<ServerStatsReading> {
        let connection = self.connection.as_mut()?;
        connection.set_deadline(Instant::now() + self.deadline);
        // The unnamed statement, one round trip: behind a transaction-mode pooler a named one
        // may not be on the server connection the next transaction gets.
        let row = connection.first_row(&self.query, Some(&self.application_name));
        let reading = match row {
            Ok(Some(row)) => parse_row(&row),
            Ok(None) | Err(_) => None,
        };
        if reading.is_none() {
            // A monitor that lost its server stays quiet: the steps report the failures.
            self.connection = None;
        }
        reading
    }

    fn read_edge(&mut self) -> Option<ServerStatsReading> {
        self.read().map(|reading| ServerStatsReading {
            edge: true,
            ..reading
        })
    }

    /// The end, once the step's sessions have gone where they close after each request: a
    /// backend flushes its counts to `pg_stat_database` as it exits, before it leaves
    /// `pg_stat_activity`, so a session still closing would leave its counts to the next
    /// step. Read again until none of the run's is left, for at most `CLOSING_WAIT`.
    fn read_end(&mut self) -> Option<ServerStatsReading> {
        let give_up = Instant::now() + CLOSING_WAIT;
        let mut reading = self.read_edge()?;
        while self.sessions_close && reading.connections > 0 && Instant::now() < give_up {
            std::thread::sleep(CLOSING_POLL);
            reading = self.read_edge()?;
        }
        Some(reading)
    }

    fn whole(
        &mut self,
        _tag: StepTag,
        begin: &Option<ServerStatsReading>,
        end: &Option<ServerStatsReading>,
    ) -> Option<DatabaseCounts> {
        let (begin, end) = (begin.as_ref()?, end.as_ref()?);
        Some(end.counts.since(&begin.counts))
    }

    fn sample(
        &mut self,
        tag: StepTag,
        _before: &Option<ServerStatsReading>,
        after: &Option<ServerStatsReading>,
    ) -> Option<ServerStatsSample> {
        let after = after.as_ref()?;
        Some(ServerStatsSample {
            step: tag.step,
            connections: after.connections,
            active: after.active,
            // The step's end is read once its requests have ended: an idle server there says
            // nothing of the step.
            activity: (!after.edge).then(|| after.activity.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn a_row_is_read_into_sessions_events_and_counters() {
        let row = text(&[
            Some("5"),
            Some("3"),
            Some("2 CPU\n1 Timeout:PgSleep\nbad line\nx IO:DataFileRead"),
            Some("120"),
            Some("4"),
            None,
            None,
            None,
            Some("0"),
            Some("8192"),
        ]);
        let reading = parse_row(&row).unwrap();
        assert_eq!((reading.connections, reading.active), (5, 3));
        assert_eq!(
            reading.activity.events,
            vec![("CPU".to_owned(), 2), ("Timeout:PgSleep".to_owned(), 1)]
        );
        assert_eq!(reading.counts.xact_commit, Some(120));
        assert_eq!(reading.counts.sessions, None, "a server before 14");
        assert_eq!(reading.counts.temp_bytes, Some(8192));
        assert!(!reading.edge);
        // No active session: string_agg of nothing is NULL.
        let idle = parse_row(&text(&[Some("0"), Some("0"), None])).unwrap();
        assert_eq!(idle.activity, ActivitySample::default());
        assert_eq!(idle.counts, DatabaseCounts::default());
        assert_eq!(parse_row(&text(&[Some("x"), Some("0"), None])), None);
        assert_eq!(parse_row(&text(&[Some("1"), Some("0")])), None);
    }

    #[test]
    fn the_query_reads_the_session_counters_where_the_server_has_them() {
        assert!(query(true).contains("pg_stat_get_db_sessions_fatal(d.oid)"));
        let old = query(false);
        assert!(!old.contains("sessions") && old.contains("NULL, NULL, NULL"));
        // The same columns either way, the one parameter the requests' name.
        for text in [query(true), old] {
            assert_eq!(text.matches("$1").count(), 1);
            assert!(text.contains("pg_stat_get_db_xact_commit(d.oid)"), "{text}");
            assert!(
                text.ends_with("WHERE d.datname = current_database()"),
                "{text}"
            );
        }
        // benches/sampling_cost.sh times this very query.
        let bench = include_str!("../../../benches/sampling_cost.sh");
        assert!(
            bench.contains(&query(true).replace("$1", "'pgstress'")),
            "benches/sampling_cost.sh times another query than the sampler's"
        );
    }

    #[test]
    fn the_end_of_a_step_counts_sessions_not_activity() {
        let mut probe = ServerStatsProbe {
            connection: None,
            query: query(true),
            application_name: "pgstress".to_owned(),
            deadline: Duration::from_secs(1),
            sessions_close: true,
        };
        assert_eq!(probe.read_end(), None, "nor at the end");
        assert_eq!(probe.read(), None, "no connection, no reading");
        let tag = StepTag {
            step: 2,
            requests: 10,
        };
        let reading = |edge, commits| ServerStatsReading {
            connections: 4,
            active: 2,
            activity: parse_events(Some("2 CPU")),
            counts: DatabaseCounts {
                xact_commit: Some(commits),
                ..DatabaseCounts::default()
            },
            edge,
        };
        let regular = probe.sample(tag, &None, &Some(reading(false, 1))).unwrap();
        assert_eq!(regular.activity.unwrap().active(), 2);
        let end = probe.sample(tag, &None, &Some(reading(true, 1))).unwrap();
        assert_eq!((end.step, end.connections, end.activity), (2, 4, None));
        let whole = probe.whole(tag, &Some(reading(true, 10)), &Some(reading(true, 25)));
        assert_eq!(whole.unwrap().xact_commit, Some(15));
        assert_eq!(probe.whole(tag, &None, &Some(reading(true, 25))), None);
    }
}
