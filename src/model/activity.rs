//! The server's sessions as it reports them itself, from SQL alone: average active sessions
//! (AAS) split by wait class, sampled from `pg_stat_activity`, and its own counters from
//! `pg_stat_database` over a step. What any server shows, wherever pgstress runs.

use serde::{Deserialize, Serialize};

/// What an active session was doing when sampled: on a CPU (or waiting for one: PostgreSQL
/// reports no wait event for either) or waiting, by `wait_event_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitClass {
    Cpu,
    LwLock,
    Lock,
    Io,
    Ipc,
    Client,
    Timeout,
    BufferPin,
    Extension,
    Activity,
    /// A wait event type this version does not know (a later PostgreSQL's).
    Other,
}

impl WaitClass {
    pub const ALL: [WaitClass; 11] = [
        WaitClass::Cpu,
        WaitClass::LwLock,
        WaitClass::Lock,
        WaitClass::Io,
        WaitClass::Ipc,
        WaitClass::Client,
        WaitClass::Timeout,
        WaitClass::BufferPin,
        WaitClass::Extension,
        WaitClass::Activity,
        WaitClass::Other,
    ];

    /// The class of a `wait_event_type`; no wait event is the CPU.
    pub fn of_type(wait_event_type: Option<&str>) -> WaitClass {
        let Some(kind) = wait_event_type else {
            return WaitClass::Cpu;
        };
        WaitClass::ALL
            .into_iter()
            .find(|class| *class != WaitClass::Cpu && class.wait_event_type() == kind)
            .unwrap_or(WaitClass::Other)
    }

    /// `pg_stat_activity`'s own name (`CPU` for no wait event).
    pub fn wait_event_type(self) -> &'static str {
        match self {
            WaitClass::Cpu => "CPU",
            WaitClass::LwLock => "LWLock",
            WaitClass::Lock => "Lock",
            WaitClass::Io => "IO",
            WaitClass::Ipc => "IPC",
            WaitClass::Client => "Client",
            WaitClass::Timeout => "Timeout",
            WaitClass::BufferPin => "BufferPin",
            WaitClass::Extension => "Extension",
            WaitClass::Activity => "Activity",
            WaitClass::Other => "Other",
        }
    }

    pub fn index(self) -> usize {
        WaitClass::ALL
            .iter()
            .position(|class| *class == self)
            .expect("every class is in ALL")
    }
}

/// The name of an event as logged: `CPU`, or `Type:Event` (`Timeout:PgSleep`).
pub fn event_name(wait_event_type: Option<&str>, wait_event: Option<&str>) -> String {
    match (wait_event_type, wait_event) {
        (None, _) => WaitClass::Cpu.wait_event_type().to_owned(),
        (Some(kind), Some(event)) => format!("{kind}:{event}"),
        (Some(kind), None) => kind.to_owned(),
    }
}

/// The class of a logged event name.
pub fn class_of_event(event: &str) -> WaitClass {
    match event.split_once(':') {
        Some((kind, _)) => WaitClass::of_type(Some(kind)),
        None if event == WaitClass::Cpu.wait_event_type() => WaitClass::Cpu,
        None => WaitClass::of_type(Some(event)),
    }
}

/// One sample of the active sessions: how many were at each event (`CPU` or `Type:Event`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivitySample {
    pub events: Vec<(String, u32)>,
}

impl ActivitySample {
    pub fn active(&self) -> u32 {
        self.events.iter().map(|(_, n)| n).sum()
    }

    pub fn in_class(&self, class: WaitClass) -> u32 {
        self.events
            .iter()
            .filter(|(event, _)| class_of_event(event) == class)
            .map(|(_, n)| n)
            .sum()
    }
}

/// How many busiest events a step keeps.
pub const TOP_EVENTS: usize = 3;

/// A step's active sessions: every mean is over the step's samples, in sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub samples: u32,
    /// Average active sessions (AAS), and the most active at one sample.
    pub mean: f64,
    pub peak: u32,
    /// AAS by class, indexed by `WaitClass::index`.
    pub by_class: [f64; WaitClass::ALL.len()],
    /// The most sessions on CPU at one sample.
    pub cpu_peak: u32,
    /// The busiest events (CPU among them), busiest first, with their AAS.
    pub top_events: Vec<(String, f64)>,
}

impl Activity {
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a ActivitySample>) -> Option<Self> {
        let samples: Vec<&ActivitySample> = samples.into_iter().collect();
        if samples.is_empty() {
            return None;
        }
        let n = samples.len() as f64;
        let mut by_class = [0.0; WaitClass::ALL.len()];
        let mut events: Vec<(String, f64)> = Vec::new();
        for sample in &samples {
            for (event, count) in &sample.events {
                by_class[class_of_event(event).index()] += f64::from(*count) / n;
                match events.iter_mut().find(|(name, _)| name == event) {
                    Some((_, sum)) => *sum += f64::from(*count) / n,
                    None => events.push((event.clone(), f64::from(*count) / n)),
                }
            }
        }
        // Busiest first; a tie by name, so that the same samples always log the same line.
        events.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        events.truncate(TOP_EVENTS);
        let cpu = |s: &&ActivitySample| s.in_class(WaitClass::Cpu);
        Some(Activity {
            samples: samples.len() as u32,
            mean: samples.iter().map(|s| f64::from(s.active())).sum::<f64>() / n,
            peak: samples.iter().map(|s| s.active()).max().unwrap_or(0),
            by_class,
            cpu_peak: samples.iter().map(cpu).max().unwrap_or(0),
            top_events: events,
        })
    }

    pub fn in_class(&self, class: WaitClass) -> f64 {
        self.by_class[class.index()]
    }

    /// AAS on CPU: sessions running or waiting for a CPU, on average.
    pub fn on_cpu(&self) -> f64 {
        self.in_class(WaitClass::Cpu)
    }

    /// The busiest events in one field: `CPU 2.95;Timeout:PgSleep 0.05`.
    pub fn top_events_text(&self) -> String {
        let events: Vec<String> = self
            .top_events
            .iter()
            .map(|(event, aas)| format!("{event} {aas:.2}"))
            .collect();
        events.join(";")
    }
}

/// The server's own counters for the target's database (`pg_stat_database`): cumulative in a
/// reading, a step's difference in a step. A counter this server lacks (sessions before
/// PostgreSQL 14) or that was reset during the step is None.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseCounts {
    pub xact_commit: Option<i64>,
    pub xact_rollback: Option<i64>,
    pub sessions: Option<i64>,
    pub sessions_abandoned: Option<i64>,
    pub sessions_fatal: Option<i64>,
    pub deadlocks: Option<i64>,
    pub temp_bytes: Option<i64>,
}

impl DatabaseCounts {
    /// What the counters grew by since `begin`; a counter that went back (reset) is None.
    pub fn since(&self, begin: &DatabaseCounts) -> DatabaseCounts {
        let delta = |end: Option<i64>, begin: Option<i64>| {
            end.zip(begin)
                .map(|(end, begin)| end - begin)
                .filter(|d| *d >= 0)
        };
        DatabaseCounts {
            xact_commit: delta(self.xact_commit, begin.xact_commit),
            xact_rollback: delta(self.xact_rollback, begin.xact_rollback),
            sessions: delta(self.sessions, begin.sessions),
            sessions_abandoned: delta(self.sessions_abandoned, begin.sessions_abandoned),
            sessions_fatal: delta(self.sessions_fatal, begin.sessions_fatal),
            deadlocks: delta(self.deadlocks, begin.deadlocks),
            temp_bytes: delta(self.temp_bytes, begin.temp_bytes),
        }
    }
}

#[cfg(test)]
#[path = "activity_tests.rs"]
mod tests;
