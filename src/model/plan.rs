//! The load a run asks for: the ramp, how requests arrive, the mode and what its step counts.

use std::time::Duration;

/// Rows of the demo table `sharding` unless asked otherwise.
pub const DEMO_ROWS: u64 = 100_000;

/// The names `--mode` takes, in `Mode`'s order.
pub const MODE_NAMES: [&str; 4] = ["burst", "pool", "rate", "hold"];

/// The ramp: step i (1-based) sends `start + (i - 1) * step` requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepPlan {
    pub steps: u32,
    pub start: u32,
    pub step: u32,
}

impl StepPlan {
    pub fn requests_at(&self, index: u32) -> u32 {
        self.start + (index - 1) * self.step
    }

    pub fn largest(&self) -> u32 {
        self.requests_at(self.steps)
    }

    pub fn total_requests(&self) -> u64 {
        (1..=self.steps)
            .map(|i| u64::from(self.requests_at(i)))
            .sum()
    }
}

/// When a rate step's requests are due.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced.
    Uniform,
    /// At random, as independent users arrive: the step's count, at uniformly drawn times.
    Poisson,
}

/// How the load is sent.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// A thread and a new connection per request, all released together.
    Burst,
    /// A fixed set of workers take the step's requests from a queue.
    Pool {
        /// None: chosen from the server's usable connections once they are known.
        workers: Option<u32>,
        connect_per_request: bool,
        /// Some: each step lasts this long, its size the requests kept on the queue (waiting
        /// or on a worker) all along, each answered one replaced by the next, like
        /// `pgbench -c SIZE -T DURATION`; None: each step's requests are queued once and
        /// drained.
        #[serde(default)]
        duration: Option<Duration>,
    },
    /// Step i offers `i * step` requests per second for `duration`.
    Rate {
        duration: Duration,
        arrival: Arrival,
        /// None: a thread per request.
        max_inflight: Option<u32>,
    },
    /// Step i holds its size of client connections, opened on top of those the step before
    /// held, each sending the query about every `every` for `duration`.
    Hold { every: Duration, duration: Duration },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Burst => MODE_NAMES[0],
            Mode::Pool { .. } => MODE_NAMES[1],
            Mode::Rate { .. } => MODE_NAMES[2],
            Mode::Hold { .. } => MODE_NAMES[3],
        }
    }

    /// What a step's size counts.
    pub fn unit(&self) -> &'static str {
        match self {
            Mode::Burst => CONCURRENT,
            Mode::Pool { .. } => "requests queued at once",
            Mode::Rate { .. } => "requests per second",
            Mode::Hold { .. } => HELD,
        }
    }

    /// At most how many connections a step of this size holds at once, known before any
    /// engine runs: a burst's every request, a pool's workers (its size when they are not
    /// given), a rate step's in-flight cap or, without one, all its requests, a hold step's
    /// crowd.
    pub fn most_connections(&self, size: u32) -> u32 {
        match self {
            Mode::Burst | Mode::Hold { .. } => size,
            Mode::Pool { workers, .. } => workers.map_or(size, |w| w.min(size)),
            Mode::Rate { max_inflight, .. } => {
                let requests = self.requests_for(size);
                max_inflight.map_or(requests, |cap| cap.min(requests))
            }
        }
    }

    /// Requests a step of this size sends: in rate mode the size is a rate per second; a timed
    /// pool step sends at least its size (as many more as its workers answer in its time).
    pub fn requests_for(&self, size: u32) -> u32 {
        match self {
            Mode::Rate { duration, .. } => {
                (f64::from(size) * duration.as_secs_f64()).round() as u32
            }
            _ => size,
        }
    }

    /// The most request records a step of this size may log: a hold step's connections each
    /// log their connect and a query at most every half `--every` (the jitter's shortest wait)
    /// over its duration; every other mode, a record per request.
    pub fn most_records(&self, size: u32) -> u32 {
        match self {
            Mode::Hold { every, duration } => {
                let shortest_wait = every.as_secs_f64() / 2.0;
                let queries = (duration.as_secs_f64() / shortest_wait).ceil() as u32 + 1;
                size.saturating_mul(queries.saturating_add(1))
            }
            _ => self.requests_for(size),
        }
    }

    /// A timed pool step's duration: its request count is not known before it ends.
    pub fn timed_pool(&self) -> Option<Duration> {
        match self {
            Mode::Pool { duration, .. } => *duration,
            _ => None,
        }
    }

    /// A step whose request count is known only after it ends, and how long it lasts: a
    /// timed pool step, or a hold step (its held connections' queries, after the opening).
    pub fn timed(&self) -> Option<Duration> {
        match self {
            Mode::Hold { duration, .. } => Some(*duration),
            _ => self.timed_pool(),
        }
    }

    /// The parameter values a step of this size draws: a timed step draws a deck of at
    /// least `POOL_DECK`, which its requests take in turn (again from the top when it runs out);
    /// a hold step a value per held connection, so that its values say its size (an agent's
    /// share of it too).
    pub fn values_for(&self, size: u32) -> u32 {
        match self.timed() {
            Some(_) if !matches!(self, Mode::Hold { .. }) => size.max(POOL_DECK),
            _ => self.requests_for(size),
        }
    }
}

/// The fewest parameter values a timed pool step draws for its requests to take in turn.
pub const POOL_DECK: u32 = 4096;

/// The unit of a hold step's load.
pub const HELD: &str = "connections held";

/// The unit of a burst step's load.
pub const CONCURRENT: &str = "concurrent requests";

/// Where the throwaway server and pgstress run: each on CPUs of its own (the lists chosen, or
/// half and half), or sharing them all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuChoice {
    #[default]
    Split,
    /// The lists given; an absent one is the CPUs the other does not take.
    Lists {
        server: Option<Vec<usize>>,
        client: Option<Vec<usize>>,
    },
    NoPin,
}

/// What a pool worker does when its kept connection fails: open a new one, after a capped
/// exponential backoff with jitter (re-resolving the target's hosts each time), or stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub enabled: bool,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            max: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_step_may_log_its_connect_and_a_query_every_half_every_per_connection() {
        let hold = Mode::Hold {
            every: Duration::from_secs(10),
            duration: Duration::from_secs(30),
        };
        // Waits of at least 5 s over 30 s: at most 7 queries, and the connect.
        assert_eq!(hold.most_records(1_000), 8_000);
        let long = Mode::Hold {
            every: Duration::from_secs(1),
            duration: Duration::from_secs(120),
        };
        assert_eq!(long.most_records(12_500), 12_500 * 242);
        assert_eq!(Mode::Burst.most_records(750), 750);
    }
}
