//! The pooler's own view: PgBouncer's admin console (`SHOW POOLS` every interval, `SHOW STATS`
//! at a step's edges) over one connection of its own, as a stats user. The console speaks the
//! simple query protocol only.

use postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use super::{Probe, StepTag};
use crate::model::sample::{PoolerStatsWhole, PoolerViewSample};

/// One reading: the pools now, and at a step's edges the cumulative statistics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PoolerReading {
    pools: PoolerViewSample,
    /// Microseconds clients waited for a server connection, and transactions, since start.
    totals: Option<(u64, u64)>,
}

pub struct PoolerViewProbe {
    client: Option<Client>,
}

impl PoolerViewProbe {
    pub fn new(client: Client) -> Self {
        PoolerViewProbe {
            client: Some(client),
        }
    }

    fn rows(&mut self, command: &str) -> Option<Vec<SimpleQueryRow>> {
        let client = self.client.as_mut()?;
        match client.simple_query(command) {
            Ok(messages) => Some(
                messages
                    .into_iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    })
                    // The console's own database is not the load's.
                    .filter(|row| row.try_get("database").ok().flatten() != Some("pgbouncer"))
                    .collect(),
            ),
            Err(_) => {
                // A console that went away stays quiet: the steps report the failures.
                self.client = None;
                None
            }
        }
    }
}

fn number(row: &SimpleQueryRow, column: &str) -> u64 {
    row.try_get(column)
        .ok()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The pools summed: clients waiting, and the longest wait (`maxwait` s + `maxwait_us`).
pub fn pools_of(rows: &[SimpleQueryRow]) -> PoolerViewSample {
    PoolerViewSample {
        clients_waiting: rows.iter().map(|r| number(r, "cl_waiting") as u32).sum(),
        max_wait_ms: rows
            .iter()
            .map(|r| number(r, "maxwait") as f64 * 1000.0 + number(r, "maxwait_us") as f64 / 1000.0)
            .fold(0.0, f64::max),
    }
}

impl Probe for PoolerViewProbe {
    type Reading = Option<PoolerReading>;
    type Sample = PoolerViewSample;
    type Whole = PoolerStatsWhole;

    fn read(&mut self) -> Option<PoolerReading> {
        let rows = self.rows("SHOW POOLS")?;
        Some(PoolerReading {
            pools: pools_of(&rows),
            totals: None,
        })
    }

    fn read_edge(&mut self) -> Option<PoolerReading> {
        let pools = self.read()?;
        let stats = self.rows("SHOW STATS")?;
        let sum = |column| stats.iter().map(|r| number(r, column)).sum::<u64>();
        Some(PoolerReading {
            totals: Some((sum("total_wait_time"), sum("total_xact_count"))),
            ..pools
        })
    }

    fn whole(
        &mut self,
        _tag: StepTag,
        begin: &Option<PoolerReading>,
        end: &Option<PoolerReading>,
    ) -> Option<PoolerStatsWhole> {
        let ((wait_begin, xact_begin), (wait_end, xact_end)) = ((*begin)?.totals?, (*end)?.totals?);
        Some(PoolerStatsWhole {
            wait_ms: wait_end.saturating_sub(wait_begin) as f64 / 1000.0,
            transactions: xact_end.saturating_sub(xact_begin),
        })
    }

    fn sample(
        &mut self,
        _tag: StepTag,
        _before: &Option<PoolerReading>,
        after: &Option<PoolerReading>,
    ) -> Option<PoolerViewSample> {
        after.map(|reading| reading.pools)
    }
}
