//! Reads an outage from a step's records: each request's start, end, outcome and client. The
//! run's outage starts at the first request that failed on the server's side and ends when
//! throughput, in 100 ms bins, is back at 95% of its median before; each client's gap runs
//! from its last success before its first failure to its first success after.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::outage::{Apart, BACK_SHARE, BASELINE, BIN, ClientGap, Outage};
use crate::model::outcome::{FailureClass, Side};
use crate::model::record::RequestRecord;

/// A request that ran, as the outage sees it.
#[derive(Clone, Copy)]
struct Event {
    client: Option<u32>,
    start: Duration,
    end: Duration,
    /// None: a success; else the class of the server's failure.
    failed: Option<FailureClass>,
}

/// The requests that ran and either succeeded or failed on the server's side: a failure of
/// the client's own or of the data says nothing about whether the server answers.
fn events(records: &[RequestRecord]) -> Vec<Event> {
    let mut events: Vec<Event> = (records.iter())
        .filter_map(|record| {
            let (start, end) = record.in_flight()?;
            let failed = match &record.outcome {
                Ok(()) => None,
                Err(f) if f.class.side() == Side::Server => Some(f.class),
                Err(_) => return None,
            };
            let client = record.client;
            Some(Event {
                client,
                start,
                end,
                failed,
            })
        })
        .collect();
    events.sort_by_key(|e| e.start);
    events
}

/// When a failure shows the server gone: a failure the server or the network announced
/// (refused, shutdown, starting...) at its end, when it came, since the request may have
/// started long before the fault; a timeout at its start, the latest moment the server was
/// still known to answer.
fn seen(event: &Event) -> Option<Duration> {
    match event.failed? {
        FailureClass::Timeout => Some(event.start),
        _ => Some(event.end),
    }
}

/// The step's outage, if a request failed on the server's side after one had succeeded: a
/// step that never had the server is not an outage but a server that was never there.
pub fn of(records: &[RequestRecord]) -> Option<Outage> {
    let events = events(records);
    let start = events.iter().filter_map(seen).min()?;
    let had_the_server = events.iter().any(|e| e.failed.is_none() && e.end <= start);
    had_the_server.then(|| measured(records, &events, start, false))
}

/// The outage of a step a fault pgstress caused reached into from before its release (in
/// the pause before it, or from an earlier step): the server was known gone, so its failures
/// are an outage even when no success came before them (then without a baseline, throughput
/// is back at the first success's bin). Its window runs on until every client that failed
/// is back: a pool's sessions the fault closed in the pause fail on their first use, each
/// when its worker comes to it, after the server and the throughput are back.
pub fn through_fault(records: &[RequestRecord]) -> Option<Outage> {
    let events = events(records);
    let start = events.iter().filter_map(seen).min()?;
    Some(measured(records, &events, start, true))
}

fn measured(
    records: &[RequestRecord],
    events: &[Event],
    start: Duration,
    until_clients_back: bool,
) -> Outage {
    let first_success = (events.iter())
        .filter(|e| e.failed.is_none() && e.start >= start)
        .map(|e| e.end)
        .min();
    let horizon = events.iter().map(|e| e.start).max().unwrap_or(start);
    let bins = success_bins(events);
    let baseline = baseline(&bins, start);
    let end = first_success.and_then(|first| back_at(&bins, first, horizon, baseline));
    let gaps = client_gaps(events, horizon);
    let until = match end {
        Some(end) if until_clients_back => (gaps.iter())
            .map(|gap| gap.to.unwrap_or(Duration::MAX))
            .fold(end, Duration::max),
        Some(end) => end,
        None => Duration::MAX,
    };
    let failures = count_classes(
        (events.iter())
            .filter(|e| seen(e).is_some_and(|at| at >= start && at <= until))
            .filter_map(|e| e.failed),
    );
    let (apart, before) = apart(records, start, until);
    let mut sorted: Vec<Duration> = gaps.iter().map(|g| g.gap).collect();
    sorted.sort();
    Outage {
        start,
        first_success,
        end,
        baseline_per_bin: baseline,
        failures,
        gap_p50: nearest_rank(&sorted, 50.0),
        gap_p99: nearest_rank(&sorted, 99.0),
        gap_max: sorted.last().copied().unwrap_or_default(),
        unrecovered: gaps.iter().filter(|g| g.to.is_none()).count() as u32,
        gaps,
        timeline: timeline(events),
        apart,
        before,
        caused_by: None,
        fault_began_before: false,
    }
}

/// Where a request lies against the outage's window, from `start` to `until`.
#[derive(PartialEq)]
enum Place {
    /// Ended before the window began.
    Before,
    /// Ran or was due (its wait included) during the window.
    Inside,
    /// Due after the window ended; or never ran, with no time to place it, so counted against
    /// the server if the server failed it, as without an outage.
    After,
}

fn place(record: &RequestRecord, start: Duration, until: Duration) -> Place {
    match record.in_flight() {
        Some((_, end)) if end < start => Place::Before,
        Some((began, _))
            if began.saturating_sub(record.queue_wait.unwrap_or_default()) <= until =>
        {
            Place::Inside
        }
        _ => Place::After,
    }
}

/// The step's requests that did not overlap the outage's window (`before`: those that ended
/// before it only), sent ones only.
fn apart(records: &[RequestRecord], start: Duration, until: Duration) -> (Apart, Apart) {
    let sent = (records.iter())
        .filter(|r| !(r.outcome.as_ref()).is_err_and(|f| f.class == FailureClass::Spawn));
    let placed: Vec<(&RequestRecord, Place)> = sent.map(|r| (r, place(r, start, until))).collect();
    let figures = |wanted: &dyn Fn(&Place) -> bool| {
        let mut latencies = Vec::new();
        let mut apart = Apart::default();
        for (record, _) in placed.iter().filter(|(_, at)| wanted(at)) {
            apart.sent += 1;
            match &record.outcome {
                Ok(()) => latencies.push(record.latency),
                Err(failure) if failure.class.side() == Side::Server => apart.server_failed += 1,
                Err(_) => {}
            }
        }
        latencies.sort();
        apart.p99_ms =
            (!latencies.is_empty()).then(|| nearest_rank(&latencies, 99.0).as_secs_f64() * 1000.0);
        apart
    };
    (
        figures(&|at| *at != Place::Inside),
        figures(&|at| *at == Place::Before),
    )
}

/// Successes and failures per 100 ms bin, for the report's timeline.
fn timeline(events: &[Event]) -> Vec<[u32; 2]> {
    let mut bins: Vec<[u32; 2]> = Vec::new();
    for event in events {
        let (at, side) = match seen(event) {
            Some(at) => (at, 1),
            None => (event.end, 0),
        };
        let bin = bin_of(at);
        if bins.len() <= bin {
            bins.resize(bin + 1, [0, 0]);
        }
        bins[bin][side] += 1;
    }
    bins
}

/// Successes per 100 ms bin, by their end.
fn success_bins(events: &[Event]) -> Vec<u32> {
    let mut bins = Vec::new();
    for event in events.iter().filter(|e| e.failed.is_none()) {
        let bin = bin_of(event.end);
        if bins.len() <= bin {
            bins.resize(bin + 1, 0);
        }
        bins[bin] += 1;
    }
    bins
}

fn bin_of(at: Duration) -> usize {
    (at.as_nanos() / BIN.as_nanos()) as usize
}

/// The median successes per bin over the bins that ended before the outage began (at most
/// `BASELINE` of them); None when not one whole bin came before.
fn baseline(bins: &[u32], start: Duration) -> Option<f64> {
    let before = bin_of(start).min(bins.len());
    let from = before.saturating_sub((BASELINE.as_nanos() / BIN.as_nanos()) as usize);
    let mut counts: Vec<u32> = bins[from..before].to_vec();
    if counts.is_empty() {
        return None;
    }
    counts.sort_unstable();
    let middle = counts.len() / 2;
    Some(match counts.len() % 2 {
        1 => f64::from(counts[middle]),
        _ => f64::from(counts[middle - 1] + counts[middle]) / 2.0,
    })
}

/// Bins that must hold after the one the outage ends at: "stays back" is read over a second.
const HOLD_BINS: usize = 10;

/// The start of the first bin, from the first success's on, that holds `BACK_SHARE` of the
/// baseline itself and on average over the next second (the bins up to the step's last
/// request only: past it the load tails off). Without a baseline, the first success's bin.
fn back_at(
    bins: &[u32],
    first_success: Duration,
    horizon: Duration,
    baseline: Option<f64>,
) -> Option<Duration> {
    let from = bin_of(first_success);
    let Some(baseline) = baseline else {
        return Some(BIN * from as u32);
    };
    let wanted = BACK_SHARE * baseline;
    let last = bin_of(horizon).min(bins.len());
    (from..last)
        .find(|&bin| {
            let window = &bins[bin..(bin + HOLD_BINS).min(last)];
            let mean = window.iter().map(|&n| f64::from(n)).sum::<f64>() / window.len() as f64;
            f64::from(bins[bin]) >= wanted && mean >= wanted
        })
        .map(|bin| BIN * bin as u32)
}

/// Each client's gap, for the clients that failed: from the end of the last success it saw
/// before it saw its first failure, to the end of its first success sent after it saw it.
fn client_gaps(events: &[Event], horizon: Duration) -> Vec<ClientGap> {
    let mut by_client: BTreeMap<Option<u32>, Vec<&Event>> = BTreeMap::new();
    for event in events {
        by_client.entry(event.client).or_default().push(event);
    }
    (by_client.into_iter())
        .filter_map(|(client, events)| {
            let failure = events.iter().find(|e| e.failed.is_some())?;
            // What the client last saw succeed before it saw the failure: with concurrent
            // requests of one client, one sent before the fault may end long after it.
            let from = (events.iter())
                .filter(|e| e.failed.is_none() && e.end <= failure.end)
                .map(|e| e.end)
                .max()
                .unwrap_or_default();
            let back = (events.iter())
                .filter(|e| e.failed.is_none() && e.start >= failure.end)
                .min_by_key(|e| e.end);
            let to = back.map(|e| e.end);
            let until = back.map_or(Duration::MAX, |e| e.start);
            let failures = count_classes(
                (events.iter())
                    .filter(|e| e.failed.is_some() && e.start >= failure.start && e.start < until)
                    .filter_map(|e| e.failed),
            );
            let gap = to.unwrap_or(horizon.max(failure.end)).saturating_sub(from);
            Some(ClientGap {
                client,
                from,
                to,
                gap,
                failures,
            })
        })
        .collect()
}

fn count_classes(classes: impl Iterator<Item = FailureClass>) -> Vec<(FailureClass, u32)> {
    let mut counts = [0u32; FailureClass::ALL.len()];
    for class in classes {
        counts[class.index()] += 1;
    }
    (FailureClass::ALL.iter().copied())
        .filter(|class| counts[class.index()] > 0)
        .map(|class| (class, counts[class.index()]))
        .collect()
}

/// The nearest-rank percentile of sorted values (zero for none).
fn nearest_rank(sorted: &[Duration], percentile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
#[path = "outage_tests.rs"]
mod tests;
