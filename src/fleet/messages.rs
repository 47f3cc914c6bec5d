//! What travels on the control connection. The agent speaks first (it dials out; agents never
//! listen); the password of the target never travels: each agent has its own target.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::fleet::AgentStep;
use crate::model::outcome::{Failure, FailureClass};
use crate::model::plan::Mode;
use crate::model::record::RequestRecord;
use crate::pg::request::{Prepare, RequestClient};

/// From the coordinator to an agent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// The coordinator's nonce, and its proof over the agent's (None without a token).
    Challenge {
        nonce: String,
        proof: Option<String>,
    },
    /// The agent's proof was right: the plan follows.
    Welcome,
    /// The coordinator will not work with this agent, and why.
    Refused {
        reason: String,
    },
    Plan(Box<AgentPlan>),
    /// A clock probe: `sent_ns` on the coordinator's clock.
    Ping {
        sent_ns: i64,
    },
    Step(StepOrder),
    /// The run is over: the agent exits.
    Finish,
}

/// From an agent to the coordinator.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToCoordinator {
    /// The peer's name, its version, its nonce, whether it holds a token, and whether it is a
    /// watcher (`pgstress watch`) rather than an agent.
    Hello {
        name: String,
        version: String,
        nonce: String,
        token: bool,
        #[serde(default)]
        watcher: bool,
    },
    /// The agent's proof over the coordinator's nonce.
    Proof {
        proof: String,
    },
    /// The agent will not work with this coordinator or this plan, and why.
    Refused {
        reason: String,
    },
    /// The agent reached its target and built its engine.
    Ready {
        engine: String,
    },
    /// The answer to a ping: the coordinator's time echoed, and the agent's when it answered.
    Pong {
        sent_ns: i64,
        agent_ns: i64,
    },
    /// Still running the step: the requests ended so far.
    Alive {
        done: u32,
        ok: u32,
        failed: u32,
    },
    Part(Box<PartReport>),
}

/// The step plan of one agent, in the types the coordinator validated: what every request
/// sends and how. The agent checks it against its own caps and builds its engine from it with
/// the code `pgstress run` uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPlan {
    /// The agent's number, from 1.
    pub index: u32,
    /// The run's mode with this agent's share of the workers (pool) or senders (rate).
    pub mode: Mode,
    pub query: String,
    pub timeout: Duration,
    pub allow_writes: bool,
    pub client: RequestClient,
    pub stack_kib: usize,
    /// None: as the agent's target calls for.
    pub prepare: Option<Prepare>,
    pub sample_every: Duration,
    pub saturated_cpu_pct: f64,
    /// The most requests of any step this agent gets.
    pub largest_share: u32,
    /// The longest the whole run can take, whatever the server does.
    pub bound: Duration,
}

/// One step's share: the parameters of its requests and when to release them.
#[derive(Debug, Serialize, Deserialize)]
pub struct StepOrder {
    pub step: u32,
    pub params: Vec<Option<String>>,
    /// The release time on the coordinator's clock, and the agent's clock minus the
    /// coordinator's as estimated just before: the agent opens its gate at the sum.
    pub release_ns: i64,
    pub offset_ns: i64,
}

/// What an agent measured of its share.
#[derive(Debug, Serialize, Deserialize)]
pub struct PartReport {
    pub step: u32,
    pub records: Vec<WireRecord>,
    pub dropped: u32,
    pub unsent: u32,
    pub launch_us: u64,
    pub wall_us: u64,
    /// How late the gate opened after the release time, on the agent's clock.
    pub gate_late_us: u64,
    pub summary: AgentStep,
}

/// One request, compactly: times in microseconds; a failure as its class name and message.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRecord {
    pub s: Option<u64>,
    pub w: Option<u64>,
    pub c: Option<u64>,
    pub q: Option<u64>,
    pub l: u64,
    pub f: Option<(String, String)>,
    /// The failure came before the target's first answer (`Failure::unanswered`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub u: bool,
    /// The host of the agent's target list it reached, when the list has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u8>,
    /// The agent's worker or sender that sent it (`RequestRecord::client`), from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u32>,
}

/// The clients of one agent in the fleet's numbering: agent `i`'s worker `w` is client
/// `i × CLIENTS_PER_AGENT + w` (agent 2's worker 5 is client 2000005), so that an outage counts
/// every worker of every agent as a client of its own.
pub const CLIENTS_PER_AGENT: u32 = 1_000_000;

/// An agent's client in the fleet's numbering; None (the step's requests as one client) past
/// what a u32 numbers, 4,294 agents, or for a worker number no agent has.
pub fn fleet_client(agent: usize, client: Option<u32>) -> Option<u32> {
    let client = client.filter(|&c| c < CLIENTS_PER_AGENT)?;
    (u32::try_from(agent).ok()?)
        .checked_mul(CLIENTS_PER_AGENT)?
        .checked_add(client)
}

/// The longest failure message a record carries across, in bytes: a failure's first line is
/// rarely above 200 bytes, but a server may quote a parameter value of any length back in it.
const WIRE_MESSAGE: usize = 512;

/// The most one record's JSON can take: five times of up to 20 digits with their keys (150
/// bytes), the longest class name and the brackets (under 60), the host and the worker (under
/// 30), and a message of `WIRE_MESSAGE` bytes that JSON may double (`"` and `\` are escaped in
/// two bytes; control characters, which take six, are replaced before). The test below builds
/// that record: 1217 bytes; an ordinary successful one takes 56.
pub const RECORD_BYTES: usize = 256 + 2 * WIRE_MESSAGE;

/// The most a part takes besides its records: the agent's summary, whose latency histogram
/// is the largest piece (every bucket from 1 µs to a day filled with distinct counts: 111 KB
/// with the rest of the summary, measured by the test below), with a margin of over ten.
pub const PART_BYTES: usize = 2 * 1024 * 1024;

/// The largest message an agent that proved the token may send the coordinator: a part of
/// `largest_share` records, each at its largest. Nothing else an agent sends comes close.
pub fn largest_from_agent(largest_share: u32) -> usize {
    (largest_share as usize)
        .saturating_mul(RECORD_BYTES)
        .saturating_add(PART_BYTES)
}

/// The largest message a coordinator that proved the token may send an agent. A step order
/// carries the share's parameter values, whose length pgstress does not bound (they are the
/// user's), so this cap is only far below what would exhaust memory.
pub const LARGEST_FROM_COORDINATOR: usize = 512 * 1024 * 1024;

/// A failure message as it crosses: control characters replaced by spaces, cut to
/// `WIRE_MESSAGE` bytes on a character boundary.
fn wire_message(message: &str) -> String {
    let mut kept = String::with_capacity(message.len().min(WIRE_MESSAGE));
    for ch in message.chars() {
        if kept.len() + ch.len_utf8() > WIRE_MESSAGE {
            break;
        }
        kept.push(if ch.is_control() { ' ' } else { ch });
    }
    kept
}

fn us(duration: Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}

impl From<&RequestRecord> for WireRecord {
    fn from(record: &RequestRecord) -> Self {
        WireRecord {
            s: record.start_offset.map(us),
            w: record.queue_wait.map(us),
            c: record.connect.map(us),
            q: record.query.map(us),
            l: us(record.latency),
            f: record.outcome.as_ref().err().map(|failure| {
                (
                    failure.class.name().to_owned(),
                    wire_message(&failure.message),
                )
            }),
            u: record
                .outcome
                .as_ref()
                .is_err_and(|failure| failure.unanswered),
            n: record.node,
            k: record.client,
        }
    }
}

impl WireRecord {
    /// The request as the coordinator counts it, its start moved by `shift` (from the agent's
    /// gate to the coordinator's release time), its client numbered across the fleet as sent
    /// by the `agent`-th agent.
    pub fn into_record(self, shift: Duration, agent: usize) -> RequestRecord {
        let time = Duration::from_micros;
        let outcome = match self.f {
            None => Ok(()),
            Some((class, message)) => {
                let class = FailureClass::ALL
                    .into_iter()
                    .find(|known| known.name() == class)
                    .unwrap_or(FailureClass::Io);
                Err(Failure {
                    unanswered: self.u,
                    ..Failure::new(class, message)
                })
            }
        };
        RequestRecord {
            start_offset: self.s.map(|s| time(s) + shift),
            queue_wait: self.w.map(time),
            connect: self.c.map(time),
            query: self.q.map(time),
            latency: time(self.l),
            outcome,
            node: self.n,
            client: fleet_client(agent, self.k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_crosses_with_its_class_and_its_start_moved() {
        let record = RequestRecord {
            start_offset: Some(Duration::from_micros(1500)),
            queue_wait: None,
            connect: Some(Duration::from_micros(700)),
            query: None,
            latency: Duration::from_micros(900),
            outcome: Err(Failure::new(FailureClass::TooManyClients, "too many")),
            node: None,
            client: None,
        };
        let json = serde_json::to_string(&WireRecord::from(&record)).unwrap();
        let wire: WireRecord = serde_json::from_str(&json).unwrap();
        let back = wire.into_record(Duration::from_micros(100), 0);
        assert_eq!(back.start_offset, Some(Duration::from_micros(1600)));
        assert_eq!(back.connect, record.connect);
        assert_eq!(back.latency, record.latency);
        let failure = back.outcome.unwrap_err();
        assert_eq!(failure.class, FailureClass::TooManyClients);
        assert_eq!(failure.message, "too many");
        assert!(!failure.unanswered);
        assert!(!json.contains("\"u\""), "{json}");
        let queued = RequestRecord {
            outcome: Err(Failure::unanswered("deadline passed while connecting")),
            ..record
        };
        let json = serde_json::to_string(&WireRecord::from(&queued)).unwrap();
        let wire: WireRecord = serde_json::from_str(&json).unwrap();
        let failure = wire.into_record(Duration::ZERO, 0).outcome.unwrap_err();
        assert!(failure.unanswered && failure.class == FailureClass::Timeout);
        // A worker's record keeps its worker, numbered across the fleet.
        let worker = RequestRecord {
            client: Some(5),
            ..queued
        };
        let json = serde_json::to_string(&WireRecord::from(&worker)).unwrap();
        let wire: WireRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(wire.into_record(Duration::ZERO, 2).client, Some(2_000_005));
        assert_eq!(fleet_client(1, None), None, "a thread per request");
        assert_eq!(fleet_client(4_294, Some(967_295)), Some(u32::MAX));
        assert_eq!(fleet_client(4_295, Some(0)), None, "past u32");
    }

    fn worst_record() -> WireRecord {
        let longest = FailureClass::ALL
            .into_iter()
            .max_by_key(|class| class.name().len())
            .unwrap();
        // Quotes and backslashes, the characters JSON doubles (control characters become
        // spaces first: see the next test).
        let message = "\"\\".repeat(WIRE_MESSAGE);
        let record = RequestRecord {
            start_offset: Some(Duration::MAX),
            queue_wait: Some(Duration::MAX),
            connect: Some(Duration::MAX),
            query: Some(Duration::MAX),
            latency: Duration::MAX,
            outcome: Err(Failure {
                unanswered: true,
                ..Failure::new(longest, message)
            }),
            node: Some(u8::MAX),
            client: Some(u32::MAX),
        };
        WireRecord::from(&record)
    }

    /// The caps come from these sizes: the largest record, the largest summary, and a part
    /// made of them under `largest_from_agent`; an ordinary record is far smaller.
    #[test]
    fn the_largest_part_an_agent_can_send_fits_its_cap() {
        let worst = serde_json::to_vec(&worst_record()).unwrap().len();
        assert!(worst <= RECORD_BYTES, "{worst} bytes");
        let ordinary = RequestRecord {
            start_offset: Some(Duration::from_millis(1234)),
            queue_wait: None,
            connect: Some(Duration::from_micros(850)),
            query: Some(Duration::from_micros(420)),
            latency: Duration::from_micros(1300),
            outcome: Ok(()),
            node: None,
            client: None,
        };
        let ordinary = serde_json::to_vec(&WireRecord::from(&ordinary))
            .unwrap()
            .len();
        // Every bucket from 1 µs to a day, each with its own count, deflates worst. (The
        // flags, a few short names, are left out: they are inside the margin.)
        let mut histogram = crate::model::step::histogram();
        let mut value = 1u64;
        let mut count = 1u64;
        while value < 24 * 3600 * 1_000_000 {
            histogram.record_n(value, count).unwrap();
            value = histogram.next_non_equivalent(value);
            count = count * 7919 % 1_000_003 + 1;
        }
        let summary = AgentStep {
            agent: "a".repeat(255),
            failures: FailureClass::ALL
                .into_iter()
                .map(|class| (class.name().to_owned(), u32::MAX))
                .collect(),
            latency_histogram_us: crate::model::hdr::encode(&histogram),
            host_cpu_pct: Some(100.0 / 3.0),
            process_cpu_pct: Some(100.0 / 3.0),
            client_wait_share: Some(1.0 / 3.0),
            ..AgentStep::default()
        };
        let share = 1000;
        let part = ToCoordinator::Part(Box::new(PartReport {
            step: u32::MAX,
            records: (0..share).map(|_| worst_record()).collect(),
            dropped: u32::MAX,
            unsent: u32::MAX,
            launch_us: u64::MAX,
            wall_us: u64::MAX,
            gate_late_us: u64::MAX,
            summary,
        }));
        let bytes = serde_json::to_vec(&part).unwrap().len();
        let besides = bytes - share as usize * worst;
        eprintln!(
            "largest record {worst} bytes, ordinary {ordinary}; a part besides its records {besides}; \
             {share} largest records: {bytes} of a cap of {}",
            largest_from_agent(share)
        );
        assert!(
            besides * 10 <= PART_BYTES,
            "{besides} bytes besides the records"
        );
        assert!(bytes <= largest_from_agent(share));
    }

    #[test]
    fn a_failure_message_crosses_cut_and_without_control_characters() {
        assert_eq!(wire_message("a\tb\nc"), "a b c");
        let long = "é".repeat(WIRE_MESSAGE);
        let cut = wire_message(&long);
        assert_eq!(cut.len(), WIRE_MESSAGE);
        assert!(cut.chars().all(|ch| ch == 'é'));
    }
}
