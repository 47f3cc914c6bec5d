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
    /// The agent's name, its version, its nonce and whether it holds a token.
    Hello {
        name: String,
        version: String,
        nonce: String,
        token: bool,
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
            f: record
                .outcome
                .as_ref()
                .err()
                .map(|failure| (failure.class.name().to_owned(), failure.message.clone())),
        }
    }
}

impl WireRecord {
    /// The request as the coordinator counts it, its start moved by `shift` (from the agent's
    /// gate to the coordinator's release time).
    pub fn into_record(self, shift: Duration) -> RequestRecord {
        let time = Duration::from_micros;
        let outcome = match self.f {
            None => Ok(()),
            Some((class, message)) => {
                let class = FailureClass::ALL
                    .into_iter()
                    .find(|known| known.name() == class)
                    .unwrap_or(FailureClass::Io);
                Err(Failure::new(class, message))
            }
        };
        RequestRecord {
            start_offset: self.s.map(|s| time(s) + shift),
            queue_wait: self.w.map(time),
            connect: self.c.map(time),
            query: self.q.map(time),
            latency: time(self.l),
            outcome,
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
        };
        let json = serde_json::to_string(&WireRecord::from(&record)).unwrap();
        let wire: WireRecord = serde_json::from_str(&json).unwrap();
        let back = wire.into_record(Duration::from_micros(100));
        assert_eq!(back.start_offset, Some(Duration::from_micros(1600)));
        assert_eq!(back.connect, record.connect);
        assert_eq!(back.latency, record.latency);
        let failure = back.outcome.unwrap_err();
        assert_eq!(failure.class, FailureClass::TooManyClients);
        assert_eq!(failure.message, "too many");
    }
}
