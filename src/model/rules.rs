//! The rules a step is judged by: the flags it may carry, when they are raised, when a run stops.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// pgstress used the threshold's share of its own CPUs, or its threads waited for a CPU.
    ClientSaturated,
    /// The requests of the step did not start together.
    LaunchSpread,
    /// The step has more requests than the server accepts at once.
    OverMaxConnections,
    /// The local server used the threshold's share of the CPUs it may run on.
    ServerSaturated,
    /// The postmaster's single thread was running or waiting for its CPU the threshold's share
    /// of the step (read by a watcher): no connection is accepted faster, whatever the
    /// backends' CPUs. The connection-storm limit.
    PostmasterSaturated,
    /// Rate mode: the client could not send the offered rate (requests dropped, or started
    /// late behind their schedule).
    RateNotMet,
    /// Some request threads could not be started: the client's thread or memory limit.
    SpawnFailed,
    /// Some requests failed on pgstress's own limits (open files, ports, memory) or a panic.
    ClientErrors,
    /// Some requests failed for their data: a value the table lacks, or one the server cannot
    /// read. They say nothing about the server.
    DataErrors,
    /// The step was cut short: part of its plan was never sent. It never counts towards the
    /// capacity.
    Partial,
    /// The step's requests were not in flight together as the mode asked: its threads started
    /// too late to overlap (the client's).
    StartedLate,
    /// The requests were in flight together but the server accepted their connections one
    /// after another, so fewer held one at once than were asked for (the server's).
    AcceptedSlowly,
    /// A local pooler used the threshold's share of the CPUs it can use (PgBouncer: one core).
    PoolerSaturated,
    /// A pooler refused some of the step's clients (its max_client_conn): that load never
    /// reached the server.
    PoolerRefused,
    /// Connections that never got their first answer while others on the same target did,
    /// in front of a pooler: held in its queue past their deadline (pgpool-II's
    /// num_init_children, all busy). That load never reached the server.
    PoolerQueued,
    /// The step was too short to measure a CPU over (`Thresholds::min_judged_wall`): no CPU
    /// flag is raised on it, on either side, and no verdict on the CPUs rests on it.
    TooShortToJudge,
}

impl Flag {
    pub const ALL: [Flag; 16] = [
        Flag::ClientSaturated,
        Flag::LaunchSpread,
        Flag::OverMaxConnections,
        Flag::ServerSaturated,
        Flag::PostmasterSaturated,
        Flag::RateNotMet,
        Flag::SpawnFailed,
        Flag::ClientErrors,
        Flag::DataErrors,
        Flag::Partial,
        Flag::StartedLate,
        Flag::AcceptedSlowly,
        Flag::PoolerSaturated,
        Flag::PoolerRefused,
        Flag::PoolerQueued,
        Flag::TooShortToJudge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::ClientSaturated => "client-saturated",
            Flag::LaunchSpread => "launch-spread",
            Flag::OverMaxConnections => "over-max-connections",
            Flag::ServerSaturated => "server-saturated",
            Flag::PostmasterSaturated => "postmaster-saturated",
            Flag::RateNotMet => "rate-not-met",
            Flag::SpawnFailed => "spawn-failed",
            Flag::ClientErrors => "client-errors",
            Flag::DataErrors => "data-errors",
            Flag::Partial => "partial",
            Flag::StartedLate => "started-late",
            Flag::AcceptedSlowly => "accepted-slowly",
            Flag::PoolerSaturated => "pooler-saturated",
            Flag::PoolerRefused => "pooler-refused",
            Flag::PoolerQueued => "pooler-queued",
            Flag::TooShortToJudge => "too-short-to-judge",
        }
    }

    /// The flag of a logged name (`client-saturated`); None for a name this version lacks.
    pub fn from_name(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|flag| flag.name() == name)
    }

    /// Whether the flag says the step's whole load never reached the server (requests
    /// dropped, threads that never started): such a step cannot count towards the capacity.
    pub fn withholds_load(self) -> bool {
        matches!(
            self,
            Flag::RateNotMet
                | Flag::SpawnFailed
                | Flag::ClientErrors
                | Flag::Partial
                | Flag::PoolerRefused
                | Flag::PoolerQueued
        )
    }

    /// Whether the flag says the load generator, not the server, may be the limit.
    pub fn is_client_limit(self) -> bool {
        matches!(
            self,
            Flag::ClientSaturated
                | Flag::LaunchSpread
                | Flag::RateNotMet
                | Flag::SpawnFailed
                | Flag::ClientErrors
                | Flag::StartedLate
        )
    }
}

impl Flag {
    /// Whether the flag says the pooler between pgstress and the server may be the limit.
    pub fn is_pooler_limit(self) -> bool {
        matches!(
            self,
            Flag::PoolerSaturated | Flag::PoolerRefused | Flag::PoolerQueued
        )
    }
}

/// Written under its name, as in the logs.
impl serde::Serialize for Flag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Read under its name; a name this version lacks is refused, not dropped.
impl<'de> serde::Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <String as serde::Deserialize>::deserialize(deserializer)?;
        Flag::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown flag `{name}`")))
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flags of a step, joined for a CSV field or a terminal line.
pub fn join(flags: &[Flag]) -> String {
    flags.iter().map(|f| f.name()).collect::<Vec<_>>().join(";")
}

/// When a flag is raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU mean over a step, in percent of its own CPUs, from which a side counts as saturated
    /// (a server seen over SQL alone: its sessions on CPU reaching its cores instead).
    pub saturated_cpu_pct: f64,
    /// Launch spread above this share of the step's wall time...
    pub spread_ratio: f64,
    /// ...or above this duration raises `launch-spread`.
    pub spread_max: Duration,
    /// pgstress's threads waiting for a CPU this share of the time its requests were in flight
    /// raises `client-saturated` (see docs/verdict.md for the measurements behind it).
    pub starved_wait_share: f64,
    /// A step shorter than this is too short to judge a CPU on (`too-short-to-judge`): see
    /// `min_judged_wall`.
    pub min_judged_wall: Duration,
}

/// The default of `Thresholds::starved_wait_share`.
pub const STARVED_WAIT_SHARE: f64 = 0.1;

/// The coarsest unit of the CPU accounting the flags read: a clock tick (USER_HZ is 100 on
/// every Linux pgstress runs on), in which the kernel counts the CPU of the children a process
/// has reaped (a server's backends that ended within the step) and the host's CPU. pgstress's
/// own CPU, its threads' wait and the live processes' CPU are counted to the nanosecond.
pub const CPU_TICK: Duration = Duration::from_millis(10);

/// The fewest clock ticks a step lasts for its CPU to be judged: one tick's error is then at
/// most a tenth of one CPU, as far as the 90% threshold is from 80%. docs/verdict.md has the
/// measurements: shorter steps read their sides' CPU and wait share far from what the same
/// load reads over a longer step.
pub const MIN_JUDGED_TICKS: u32 = 10;

/// The shortest step whose CPU is judged: ten clock ticks, and at least the sampling interval
/// (`--sample-every`): the run's own resolution on the CPU, below which it measured no
/// interval of its own inside the step.
pub fn min_judged_wall(sample_every: Duration) -> Duration {
    (CPU_TICK * MIN_JUDGED_TICKS).max(sample_every)
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            saturated_cpu_pct: 90.0,
            spread_ratio: 0.10,
            spread_max: Duration::from_millis(100),
            starved_wait_share: STARVED_WAIT_SHARE,
            min_judged_wall: CPU_TICK * MIN_JUDGED_TICKS,
        }
    }
}

/// The rules that end a run early. `--no-stop` turns all of them off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRules {
    /// Stop when a step's failure rate reaches this share.
    pub failure_rate: Option<f64>,
    /// Stop when a step's p99 latency exceeds this.
    pub p99: Option<Duration>,
    /// Stop when every request of a step timed out or was refused.
    pub unresponsive: bool,
}

impl StopRules {
    pub fn none() -> Self {
        StopRules {
            failure_rate: None,
            p99: None,
            unresponsive: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_judged_from_ten_ticks_and_one_sampling_interval() {
        assert_eq!(
            min_judged_wall(Duration::from_millis(10)),
            Duration::from_millis(100)
        );
        assert_eq!(
            min_judged_wall(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        assert_eq!(
            min_judged_wall(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn flags_have_names_that_read_back() {
        let names: Vec<String> = Flag::ALL.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            names,
            [
                "client-saturated",
                "launch-spread",
                "over-max-connections",
                "server-saturated",
                "postmaster-saturated",
                "rate-not-met",
                "spawn-failed",
                "client-errors",
                "data-errors",
                "partial",
                "started-late",
                "accepted-slowly",
                "pooler-saturated",
                "pooler-refused",
                "pooler-queued",
                "too-short-to-judge"
            ]
        );
        for flag in Flag::ALL {
            assert_eq!(Flag::from_name(flag.name()), Some(flag));
        }
        assert_eq!(Flag::from_name("slow"), None);
        assert_eq!(
            join(&[Flag::RateNotMet, Flag::SpawnFailed]),
            "rate-not-met;spawn-failed"
        );
        assert_eq!(join(&[]), "");
    }

    #[test]
    fn which_flags_are_the_clients_and_which_withhold_load() {
        let client: Vec<Flag> = Flag::ALL
            .into_iter()
            .filter(|f| f.is_client_limit())
            .collect();
        assert_eq!(
            client,
            [
                Flag::ClientSaturated,
                Flag::LaunchSpread,
                Flag::RateNotMet,
                Flag::SpawnFailed,
                Flag::ClientErrors,
                Flag::StartedLate
            ]
        );
        let withheld: Vec<Flag> = Flag::ALL
            .into_iter()
            .filter(|f| f.withholds_load())
            .collect();
        assert_eq!(
            withheld,
            [
                Flag::RateNotMet,
                Flag::SpawnFailed,
                Flag::ClientErrors,
                Flag::Partial,
                Flag::PoolerRefused,
                Flag::PoolerQueued
            ]
        );
        let pooler: Vec<Flag> = Flag::ALL
            .into_iter()
            .filter(|f| f.is_pooler_limit())
            .collect();
        assert_eq!(
            pooler,
            [
                Flag::PoolerSaturated,
                Flag::PoolerRefused,
                Flag::PoolerQueued
            ]
        );
        assert!(!Flag::TooShortToJudge.is_client_limit());
        assert!(!Flag::TooShortToJudge.is_pooler_limit());
        assert!(!Flag::TooShortToJudge.withholds_load());
    }

    #[test]
    fn default_thresholds_and_no_stop_rules() {
        let t = Thresholds::default();
        assert_eq!(
            (t.saturated_cpu_pct, t.spread_ratio, t.spread_max),
            (90.0, 0.10, Duration::from_millis(100))
        );
        assert_eq!(t.min_judged_wall, Duration::from_millis(100));
        let none = StopRules::none();
        assert_eq!(
            (none.failure_rate, none.p99, none.unresponsive),
            (None, None, false)
        );
    }
}
