//! An outage as the clients saw it: when the server stopped answering, when it answered again,
//! how long each client waited, and what failed in between. Times are from the step's release.

use std::time::Duration;

use serde::Serialize;

use crate::model::outcome::FailureClass;

/// The width of the bins throughput is counted in, to tell when it is back.
pub const BIN: Duration = Duration::from_millis(100);
/// Throughput is back when it holds at least this share of the median before the outage.
pub const BACK_SHARE: f64 = 0.95;
/// How far before the outage the median throughput is taken.
pub const BASELINE: Duration = Duration::from_secs(10);

/// One client's outage: from its last success before its first failure to its first success
/// after (a pool worker, a rate sender; with a thread per request, the schedule as a whole).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientGap {
    /// The worker or sender, from 0; None: every request of the step, as one client.
    pub client: Option<u32>,
    /// The end of its last success before the first failure (the step's release if none).
    #[serde(serialize_with = "seconds")]
    pub from: Duration,
    /// The end of its first success after; None: it had none before the step ended.
    #[serde(serialize_with = "maybe_seconds")]
    pub to: Option<Duration>,
    #[serde(serialize_with = "seconds")]
    pub gap: Duration,
    /// Its failures inside the gap, by class.
    #[serde(serialize_with = "by_class")]
    pub failures: Vec<(FailureClass, u32)>,
}

/// A step's outage, for the run and per client.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outage {
    /// The start of the first request that failed on the server's side.
    #[serde(serialize_with = "seconds")]
    pub start: Duration,
    /// The end of the first request that started after `start` and succeeded, on any client.
    #[serde(serialize_with = "maybe_seconds")]
    pub first_success: Option<Duration>,
    /// The start of the first 100 ms bin from which throughput holds `BACK_SHARE` of the
    /// median before; None: not back by the step's last request.
    #[serde(serialize_with = "maybe_seconds")]
    pub end: Option<Duration>,
    /// Successes per 100 ms bin before the outage (the median of up to `BASELINE`).
    pub baseline_per_bin: Option<f64>,
    /// The server's failures from `start` to `end` (or the step's end), by class.
    #[serde(serialize_with = "by_class")]
    pub failures: Vec<(FailureClass, u32)>,
    /// Per-client gaps' median, 99th percentile and maximum, in seconds.
    #[serde(serialize_with = "seconds")]
    pub gap_p50: Duration,
    #[serde(serialize_with = "seconds")]
    pub gap_p99: Duration,
    #[serde(serialize_with = "seconds")]
    pub gap_max: Duration,
    /// Clients that had no success after their first failure before the step ended.
    pub unrecovered: u32,
    pub gaps: Vec<ClientGap>,
    /// The step in 100 ms bins from its release: successes (by their end) and the server's
    /// failures (when they showed the server gone), `[ok, failed]` each.
    pub timeline: Vec<[u32; 2]>,
    /// The step's requests that did not overlap the outage: what the step is judged on when
    /// the load came back from an outage from outside (docs/outages.md).
    pub apart: Apart,
    /// Those that ended before it began: what the step is judged on when pgstress caused the
    /// fault, whose aftermath (a restarted server's cold cache, a promoted standby's
    /// checkpoint) is pgstress's doing too.
    pub before: Apart,
    /// The fault pgstress caused on its own server during the step (`--fault`), as written;
    /// None when the outage came from outside.
    pub caused_by: Option<String>,
    /// The fault began before the step's release (in the pause before it, or in an earlier
    /// step whose outage ran on into it): nothing of the step came before it, and the step
    /// is judged on its requests after the outage.
    pub fault_began_before: bool,
}

/// Requests of a step that ran wholly outside its outage window: ended before the window, or
/// due after it (their wait for a free worker counted, not only their run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Apart {
    pub sent: u32,
    /// Those that failed on the server's side.
    pub server_failed: u32,
    /// Their latency's p99 (the wait included), in milliseconds; None without a success.
    pub p99_ms: Option<f64>,
}

impl Outage {
    /// From the first failure to throughput back; None when it was not back.
    pub fn duration(&self) -> Option<Duration> {
        self.end.map(|end| end.saturating_sub(self.start))
    }

    pub fn failed(&self) -> u32 {
        self.failures.iter().map(|(_, n)| n).sum()
    }

    /// Whether the step is judged apart from the outage: the fault was pgstress's own, or
    /// throughput came back within the step. An outage that never ended is the server's.
    pub fn judged_apart(&self) -> bool {
        self.caused_by.is_some() || self.end.is_some()
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn maybe_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => seconds(d, s),
        None => s.serialize_none(),
    }
}

/// Counts by class as an object: `{"refused": 1100, "shutdown": 112}`.
fn by_class<S: serde::Serializer>(counts: &[(FailureClass, u32)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(counts.len()))?;
    for (class, count) in counts {
        map.serialize_entry(class.name(), count)?;
    }
    map.end()
}
