//! The coordinator's engine: each step it estimates every agent's clock offset, sends each its
//! share of the parameters with one release time, and merges the records they send back into
//! one step, so the step loop judges it as it judges a step sent from this machine.

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::clock::{self, Clock, Exchange, Offset};
use super::link::AgentLink;
use super::messages::{PartReport, StepOrder, ToAgent, ToCoordinator};
use super::split;
use super::{FleetError, LOST_AFTER};
use crate::engine::Engine;
use crate::model::fleet::AgentStep;
use crate::model::record::{StepObserver, StepRun, Tally};

/// Ping exchanges per agent before each step; the one with the smallest round trip is kept.
const PINGS: usize = 5;
/// Time from the release order to the release: the orders reach the agents and the agents
/// park their threads. Spawning a thread takes some tens of microseconds on a loaded host.
const LEAD_BASE: Duration = Duration::from_millis(300);
const LEAD_PER_REQUEST: Duration = Duration::from_micros(50);
/// Past an agent's own step bound, time for its records to cross.
const ANSWER_SLACK: Duration = Duration::from_secs(30);

/// How one agent's share of a step can be bounded and counted.
pub struct Shape {
    /// A line for the header.
    pub describe: String,
    /// The step's concurrency bound, as the single-machine engine would give it.
    pub concurrency: Box<dyn Fn(u32) -> Option<u32>>,
    /// The longest a step of this size (the whole step) can take on one agent.
    pub step_bound: Box<dyn Fn(u32) -> Duration>,
}

/// Sends each step to the agents and merges their answers.
pub struct Remote {
    links: Vec<AgentLink>,
    clock: Clock,
    shape: Shape,
}

impl Remote {
    pub fn new(links: Vec<AgentLink>, shape: Shape) -> Self {
        Remote {
            links,
            clock: Clock::new(),
            shape,
        }
    }

    /// The agent's clock offset from a few pings, within `LOST_AFTER` each.
    fn offset(&mut self, index: usize) -> Result<Offset, FleetError> {
        let mut exchanges = Vec::with_capacity(PINGS);
        for _ in 0..PINGS {
            let sent = self.clock.now_ns();
            let link = &mut self.links[index];
            link.send(&ToAgent::Ping { sent_ns: sent })?;
            if let ToCoordinator::Pong { sent_ns, agent_ns } = link.expect(LOST_AFTER)? {
                let received = self.clock.now_ns();
                exchanges.push(Exchange {
                    sent: sent_ns,
                    answered: agent_ns,
                    received,
                });
            }
        }
        clock::estimate(&exchanges).ok_or_else(|| {
            FleetError::Lost(format!(
                "agent {} answered no clock probe",
                self.links[index].name
            ))
        })
    }
}

/// Where each agent stands in a step.
enum Answer {
    Waiting,
    Done(Box<PartReport>),
    Lost(String),
}

impl Engine for Remote {
    fn describe(&self) -> String {
        let names: Vec<&str> = self.links.iter().map(|l| l.name.as_str()).collect();
        format!(
            "{} agents ({}), each: {}",
            self.links.len(),
            names.join(", "),
            self.shape.describe
        )
    }

    fn concurrency(&self, size: u32) -> Option<u32> {
        (self.shape.concurrency)(size)
    }

    fn step_bound(&self, size: u32) -> Duration {
        (self.shape.step_bound)(size) + lead(size) + LOST_AFTER
    }

    /// Each agent opens its own gate at the release time: nothing to hold here.
    fn release_next_at(&mut self, _at: Instant) {}

    fn run_step(
        &mut self,
        step: u32,
        params: Vec<Option<String>>,
        observer: Option<&dyn StepObserver>,
    ) -> StepRun {
        let shares = split::shares(params.len() as u32, self.links.len());
        let mut parts = split::deal(params, &shares);
        let mut offsets = Vec::with_capacity(self.links.len());
        let mut answers: Vec<Answer> = Vec::with_capacity(self.links.len());
        for index in 0..self.links.len() {
            match self.offset(index) {
                Ok(offset) => {
                    offsets.push(offset);
                    answers.push(Answer::Waiting);
                }
                Err(err) => {
                    offsets.push(Offset {
                        offset_ns: 0,
                        error_ns: 0,
                    });
                    answers.push(Answer::Lost(err.to_string()));
                }
            }
        }
        let largest = shares.iter().copied().max().unwrap_or(0);
        let release_ns = self.clock.now_ns() + lead(largest).as_nanos() as i64;
        for (index, link) in self.links.iter_mut().enumerate() {
            let order = StepOrder {
                step,
                params: std::mem::take(&mut parts[index]),
                release_ns,
                offset_ns: offsets[index].offset_ns,
            };
            if matches!(answers[index], Answer::Waiting)
                && let Err(err) = link.send(&ToAgent::Step(order))
            {
                answers[index] = Answer::Lost(err.to_string());
            }
        }
        let deadline = self.clock.instant_at(release_ns)
            + (self.shape.step_bound)(shares.iter().sum())
            + ANSWER_SLACK;
        self.collect(step, &mut answers, deadline, observer);
        merge(&self.links, answers, &shares, &offsets)
    }
}

/// The time between the release order and the release.
fn lead(share: u32) -> Duration {
    LEAD_BASE + LEAD_PER_REQUEST * share
}

impl Remote {
    /// Waits for every agent's part, or its loss: a closed connection, silence past
    /// `LOST_AFTER` (the reader thread's wait), or no part by the step's deadline.
    fn collect(
        &self,
        step: u32,
        answers: &mut [Answer],
        deadline: Instant,
        observer: Option<&dyn StepObserver>,
    ) {
        let mut tallies = vec![Tally::default(); self.links.len()];
        let mut shown = Tally::default();
        for (index, link) in self.links.iter().enumerate() {
            while matches!(answers[index], Answer::Waiting) {
                let left = deadline.saturating_duration_since(Instant::now());
                let tally = tallies[index];
                let lost = |why: String| {
                    Answer::Lost(format!(
                        "agent {} ({}) {why}, after {} of its requests of step {step} had ended",
                        link.name, link.peer, tally.done
                    ))
                };
                answers[index] = match link.inbox.recv_timeout(left.min(LOST_AFTER)) {
                    Ok(Ok(ToCoordinator::Part(part))) if part.step == step => Answer::Done(part),
                    Ok(Ok(ToCoordinator::Alive { done, ok, failed })) => {
                        tallies[index] = Tally { done, ok, failed };
                        shown = report_progress(&tallies, shown, observer);
                        continue;
                    }
                    Ok(Ok(_)) => continue,
                    Ok(Err(err)) => lost(format!("was lost: {err}")),
                    Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => lost(format!(
                        "was lost: no heartbeat for {} s",
                        LOST_AFTER.as_secs()
                    )),
                    Err(RecvTimeoutError::Timeout) => {
                        lost("sent no answer by the step's deadline".to_owned())
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        lost("was lost: its connection closed".to_owned())
                    }
                };
            }
        }
    }
}

/// Tells the observer of the requests ended so far across the agents, once per change.
fn report_progress(tallies: &[Tally], shown: Tally, observer: Option<&dyn StepObserver>) -> Tally {
    let total = tallies.iter().fold(Tally::default(), |sum, t| Tally {
        done: sum.done + t.done,
        ok: sum.ok + t.ok,
        failed: sum.failed + t.failed,
    });
    if let Some(observer) = observer
        && total.done > shown.done
    {
        observer.request_ended(total);
    }
    total
}

/// One step from the agents' parts: their records one after another (each start moved from
/// the agent's gate to the release time), their drops and unsent requests summed; a lost
/// agent's share counted as unsent, and the step marked lost.
fn merge(links: &[AgentLink], answers: Vec<Answer>, shares: &[u32], offsets: &[Offset]) -> StepRun {
    let mut run = StepRun::default();
    let mut lost = Vec::new();
    for (index, answer) in answers.into_iter().enumerate() {
        let offset = offsets[index];
        match answer {
            Answer::Done(part) => {
                let part = *part;
                let shift = Duration::from_micros(part.gate_late_us);
                let mut summary = part.summary;
                summary.agent = links[index].name.clone();
                summary.records = part.records.len();
                summary.clock_offset_ms = offset.offset_ns as f64 / 1e6;
                summary.clock_error_ms = offset.error_ns as f64 / 1e6;
                summary.gate_late_ms = part.gate_late_us as f64 / 1e3;
                let first = run.records.len();
                run.records.extend(
                    part.records
                        .into_iter()
                        .map(|r| r.into_record(shift, index)),
                );
                let starts = run.records[first..].iter().filter_map(|r| r.start_offset);
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                summary.first_start_ms = starts.clone().min().map(ms);
                summary.last_start_ms = starts.max().map(ms);
                run.dropped += part.dropped;
                run.unsent += part.unsent;
                run.launch = run.launch.max(Duration::from_micros(part.launch_us));
                run.wall = run.wall.max(shift + Duration::from_micros(part.wall_us));
                run.agents.push(summary);
            }
            Answer::Lost(_) | Answer::Waiting => {
                let why = match answer {
                    Answer::Lost(why) => why,
                    _ => format!("agent {} sent no answer", links[index].name),
                };
                run.unsent += shares[index];
                run.agents.push(AgentStep {
                    agent: links[index].name.clone(),
                    requests: shares[index],
                    unsent: shares[index],
                    lost: true,
                    ..AgentStep::default()
                });
                lost.push(why);
            }
        }
    }
    if !lost.is_empty() {
        run.lost = Some(lost.join("; "));
    }
    // A hold step's crowd is every agent's: a lost agent's connections are not counted held.
    let crowds: Vec<_> = run.agents.iter().filter_map(|a| a.hold.as_ref()).collect();
    if !crowds.is_empty() {
        run.hold = Some(crate::model::hold::merged(&crowds));
    }
    run
}
