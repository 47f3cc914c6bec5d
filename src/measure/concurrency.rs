//! Achieved concurrency: how many of a step's requests overlapped, from their own instants.

use std::time::Duration;

use crate::model::record::RequestRecord;
use crate::model::step::Concurrency;

impl Concurrency {
    /// The step's peaks; `asked` is set by whoever knows the mode.
    pub fn of(records: &[RequestRecord]) -> Self {
        let in_flight: Vec<_> = records
            .iter()
            .filter_map(RequestRecord::in_flight)
            .collect();
        let connected: Vec<_> = records
            .iter()
            .filter_map(RequestRecord::connected)
            .collect();
        Concurrency {
            asked: None,
            started: in_flight.len() as u32,
            connected: connected.len() as u32,
            peak_in_flight: peak(&in_flight),
            peak_connected: peak(&connected),
        }
    }
}

/// The most spans that cover one instant. A span ending as another starts does not overlap it.
fn peak(spans: &[(Duration, Duration)]) -> u32 {
    // Ends sort before starts at the same instant.
    let mut events: Vec<(Duration, i32)> = spans
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end, -1)])
        .collect();
    events.sort_unstable();
    let mut running = 0i32;
    let mut most = 0i32;
    for (_, change) in events {
        running += change;
        most = most.max(running);
    }
    most as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::{Failure, FailureClass};
    use crate::model::step::Shortfall;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A request started at `start`, connected `connect` later, ended `query` after that.
    fn request(start: u64, connect: Option<u64>, query: u64) -> RequestRecord {
        RequestRecord {
            start_offset: Some(ms(start)),
            queue_wait: None,
            connect: connect.map(ms),
            query: Some(ms(query)),
            latency: ms(connect.unwrap_or(0) + query),
            outcome: Ok(()),
            node: None,
            client: None,
        }
    }

    fn refused(start: u64) -> RequestRecord {
        let mut record = RequestRecord::failed_without_running(
            Failure::new(FailureClass::TooManyClients, "full"),
            ms(200),
        );
        record.start_offset = Some(ms(start));
        record
    }

    #[test]
    fn overlapping_spans_peak_and_touching_ones_do_not() {
        assert_eq!(
            peak(&[(ms(0), ms(10)), (ms(5), ms(15)), (ms(10), ms(20))]),
            2
        );
        assert_eq!(peak(&[(ms(0), ms(10)), (ms(10), ms(20))]), 1);
        assert_eq!(peak(&[]), 0);
    }

    #[test]
    fn a_burst_served_one_after_another_is_short_of_connections_not_of_threads() {
        // Ten threads start together; the server accepts one connection every 10 ms and each
        // query takes 2 ms: all ten are in flight, never more than one connected.
        let records: Vec<_> = (0..10).map(|k| request(0, Some(10 * (k + 1)), 2)).collect();
        let mut concurrency = Concurrency::of(&records);
        assert_eq!((concurrency.started, concurrency.connected), (10, 10));
        assert_eq!(concurrency.peak_in_flight, 10);
        assert_eq!(concurrency.peak_connected, 1);
        assert_eq!(concurrency.shortfall(), None, "nothing was asked");
        concurrency.asked = Some(10);
        assert_eq!(concurrency.shortfall(), Some(Shortfall::AcceptedSlowly));
    }

    #[test]
    fn threads_that_start_after_the_others_ended_are_the_clients_shortfall() {
        let records: Vec<_> = (0..10).map(|k| request(20 * k, Some(5), 5)).collect();
        let concurrency = Concurrency {
            asked: Some(10),
            ..Concurrency::of(&records)
        };
        assert_eq!(concurrency.peak_in_flight, 1);
        assert_eq!(concurrency.shortfall(), Some(Shortfall::StartedLate));
    }

    #[test]
    fn a_burst_that_overlaps_reaches_its_concurrency_whatever_was_refused() {
        let mut records: Vec<_> = (0..9).map(|k| request(k, Some(5), 100)).collect();
        records.push(request(30, Some(5), 100));
        records.extend((0..5).map(refused));
        let concurrency = Concurrency {
            asked: Some(15),
            ..Concurrency::of(&records)
        };
        assert_eq!((concurrency.started, concurrency.connected), (15, 10));
        assert_eq!(concurrency.peak_connected, 10);
        assert_eq!(concurrency.peak_in_flight, 15);
        assert_eq!(
            concurrency.shortfall(),
            None,
            "10 connected of the 10 accepted"
        );
        // The tenth connection came after the first nine ended: 9 of 10 is still reached.
        let late = Concurrency {
            peak_connected: 8,
            ..concurrency
        };
        assert_eq!(late.shortfall(), Some(Shortfall::AcceptedSlowly));
    }

    #[test]
    fn a_kept_connection_is_connected_from_the_requests_start() {
        let records = vec![request(0, None, 10), request(5, None, 10)];
        let concurrency = Concurrency::of(&records);
        assert_eq!(
            (concurrency.peak_in_flight, concurrency.peak_connected),
            (2, 2)
        );
        let never_ran = RequestRecord::failed_without_running(
            Failure::new(FailureClass::Spawn, "no thread"),
            ms(0),
        );
        assert_eq!(Concurrency::of(&[never_ran]), Concurrency::default());
    }
}
