//! Clocks across machines. Each side reads its own monotonic clock (nanoseconds since the
//! process began); before every step the coordinator estimates each agent's offset from a few
//! ping exchanges, keeping the one with the smallest round trip (NTP's rule): whatever the
//! delays each way, the estimate is off by at most half that round trip.

use std::time::{Duration, Instant};

/// A test-only offset added to an agent's clock, in milliseconds, so that the tests can show
/// the offset estimate cancelling it. Not an option: only a build with the `test-hooks`
/// feature (which `cargo test` turns on, a release build leaves off) reads it.
#[cfg(feature = "test-hooks")]
pub const TEST_SKEW_VAR: &str = "PGSTRESS_TEST_CLOCK_SKEW_MS";

/// This process's clock for the control protocol.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    skew_ns: i64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            epoch: Instant::now(),
            skew_ns: test_skew_ms().saturating_mul(1_000_000),
        }
    }

    pub fn now_ns(&self) -> i64 {
        self.epoch.elapsed().as_nanos() as i64 + self.skew_ns
    }

    /// The moment this clock reads `ns` (the epoch, for a reading before it).
    pub fn instant_at(&self, ns: i64) -> Instant {
        let since_epoch = (ns - self.skew_ns).max(0) as u64;
        self.epoch + Duration::from_nanos(since_epoch)
    }
}

#[cfg(feature = "test-hooks")]
fn test_skew_ms() -> i64 {
    std::env::var(TEST_SKEW_VAR)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

#[cfg(not(feature = "test-hooks"))]
fn test_skew_ms() -> i64 {
    0
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// One ping: sent and received on the coordinator's clock, answered on the agent's.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub sent: i64,
    pub answered: i64,
    pub received: i64,
}

/// The agent's clock minus the coordinator's, and the bound on the estimate's error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    pub offset_ns: i64,
    pub error_ns: i64,
}

/// The estimate from the exchange with the smallest round trip: the agent answered somewhere
/// within it, so taking its middle errs by at most half of it.
pub fn estimate(exchanges: &[Exchange]) -> Option<Offset> {
    let best = exchanges
        .iter()
        .filter(|e| e.received >= e.sent)
        .min_by_key(|e| e.received - e.sent)?;
    let round_trip = best.received - best.sent;
    Some(Offset {
        offset_ns: best.answered - (best.sent + round_trip / 2),
        error_ns: (round_trip + 1) / 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    /// Pings through links slower one way than the other, with jitter: the estimate is always
    /// within its bound of the true offset, and the bound is half the fastest round trip.
    #[test]
    fn the_estimate_is_within_half_the_best_round_trip_under_asymmetric_delays() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for trial in 0..500 {
            let true_offset: i64 = rng.random_range(-5_000_000_000..5_000_000_000);
            let (base_out, base_back) = match trial % 3 {
                0 => (50_000, 5_000_000), // the way back 100 times slower
                1 => (8_000_000, 30_000), // the way out slower
                _ => (200_000, 200_000),
            };
            let mut clock = 1_000_000_000i64;
            let exchanges: Vec<Exchange> = (0..5)
                .map(|_| {
                    let out = base_out + rng.random_range(0..3_000_000);
                    let back = base_back + rng.random_range(0..3_000_000);
                    let sent = clock;
                    clock += out + back + 1_000_000;
                    Exchange {
                        sent,
                        answered: sent + out + true_offset,
                        received: sent + out + back,
                    }
                })
                .collect();
            let estimate = estimate(&exchanges).unwrap();
            let best = exchanges.iter().map(|e| e.received - e.sent).min().unwrap();
            assert_eq!(estimate.error_ns, (best + 1) / 2);
            let off_by = (estimate.offset_ns - true_offset).abs();
            assert!(
                off_by <= estimate.error_ns,
                "trial {trial}: off by {off_by} ns, bound {} ns",
                estimate.error_ns
            );
        }
        assert_eq!(estimate(&[]), None);
    }

    #[test]
    fn a_skewed_clock_reads_ahead_and_finds_its_instants() {
        let clock = Clock {
            epoch: Instant::now(),
            skew_ns: 2_000_000_000,
        };
        assert!(clock.now_ns() >= 2_000_000_000);
        let at = clock.instant_at(clock.now_ns() + 50_000_000);
        let ahead = at.saturating_duration_since(Instant::now());
        assert!(ahead > Duration::from_millis(20) && ahead <= Duration::from_millis(50));
    }
}
