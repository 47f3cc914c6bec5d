//! The agent's side: dial the coordinator, prove the token both ways, take the plan (checked
//! against the agent's own caps), then run each step's share when told, saying it is alive
//! every second, until the coordinator says the run is over.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clock::Clock;
use super::frame;
use super::introduce::{self, Joining, garbled};
use super::messages::{
    AgentPlan, LARGEST_FROM_COORDINATOR as FROM_COORDINATOR, PartReport, StepOrder, ToAgent,
    ToCoordinator, WireRecord,
};
use super::{FleetError, HEARTBEAT_EVERY};
use crate::engine::Engine;
use crate::judge::flags::{self, StepContext};
use crate::measure::sampler::{Sampler, StepTag};
use crate::model::facts::ClientCpus;
use crate::model::fleet::AgentStep;
use crate::model::hold::{HoldStep, cpu_us_per_held};
use crate::model::plan::Mode;
use crate::model::record::{StepObserver, StepRun, Tally};
use crate::model::rules::Thresholds;
use crate::model::sample::{CpuSample, StepCpu};
use crate::model::step::{CpuSummary, StepResult};

/// What an agent accepts from any coordinator, whatever its token.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_connections: u32,
    pub max_duration: Duration,
}

/// An agent that joined a coordinator and holds its plan.
pub struct Session {
    stream: TcpStream,
    /// Says the agent is alive from the moment it joined (it may wait for the other agents).
    heartbeat: Heartbeat,
    peer: String,
    clock: Clock,
    pub plan: AgentPlan,
    /// When the agent stops taking steps: its `--max-duration` from joining.
    ends: Instant,
}

/// Dials the coordinator and joins it: the hello, the proofs both ways, the plan.
pub fn join(
    coordinator: &str,
    name: &str,
    token: Option<&str>,
    caps: Caps,
) -> Result<Session, FleetError> {
    let (mut stream, peer) = introduce::join(coordinator, name, token, Joining::Agent)?;
    let writer = stream.try_clone().map_err(|cause| FleetError::Io {
        peer: peer.clone(),
        cause,
    })?;
    let heartbeat = Heartbeat::start(writer);
    let refused = |reason: String| {
        FleetError::Refused(format!(
            "the coordinator at {peer} refused this agent: {reason}"
        ))
    };
    // The coordinator sends the plans once every agent joined: within this agent's lifetime.
    let plan = match frame::receive::<ToAgent>(&mut stream, caps.max_duration, FROM_COORDINATOR)? {
        ToAgent::Plan(plan) => *plan,
        ToAgent::Refused { reason } => return Err(refused(reason)),
        ToAgent::Finish => return Err(refused("the run ended before it began".to_owned())),
        other => return Err(garbled(&peer, &other)),
    };
    Ok(Session {
        stream,
        heartbeat,
        peer,
        clock: Clock::new(),
        plan,
        ends: Instant::now() + caps.max_duration,
    })
}

/// Why a plan asks more than the caps allow, if it does.
pub fn check_caps(plan: &AgentPlan, caps: Caps) -> Result<(), String> {
    let connections = match plan.mode {
        Mode::Pool { workers, .. } => workers
            .unwrap_or(plan.largest_share)
            .min(plan.largest_share),
        Mode::Rate { max_inflight, .. } => max_inflight.unwrap_or(plan.largest_share),
        Mode::Burst | Mode::Hold { .. } => plan.largest_share,
    };
    if connections > caps.max_connections {
        return Err(format!(
            "the plan needs up to {connections} connections from this agent, above its --max-connections {}",
            caps.max_connections
        ));
    }
    let bound = plan.bound;
    if bound > caps.max_duration {
        return Err(format!(
            "the plan may take up to {}, above this agent's --max-duration {}",
            humantime::format_duration(Duration::from_secs(bound.as_secs())),
            humantime::format_duration(caps.max_duration)
        ));
    }
    Ok(())
}

impl Session {
    /// Tells the coordinator why this agent will not run the plan.
    pub fn refuse(mut self, reason: &str) {
        let refusal = ToCoordinator::Refused {
            reason: reason.to_owned(),
        };
        let _ = self.heartbeat.send(&refusal);
        self.heartbeat.stop();
    }

    /// Runs the steps the coordinator orders with `engine`, until it says the run is over.
    pub fn serve(mut self, engine: &mut dyn Engine, describe: String) -> Result<(), FleetError> {
        self.heartbeat
            .send(&ToCoordinator::Ready { engine: describe })?;
        let cpu = start_cpu_sampler();
        let result = self.answer(engine, cpu.as_ref());
        self.heartbeat.stop();
        result
    }

    fn answer(
        &mut self,
        engine: &mut dyn Engine,
        cpu: Option<&CpuSampler>,
    ) -> Result<(), FleetError> {
        let heartbeat = &self.heartbeat;
        loop {
            let left = self.ends.saturating_duration_since(Instant::now());
            let message = frame::receive::<ToAgent>(
                &mut self.stream,
                left.max(Duration::from_millis(1)),
                FROM_COORDINATOR,
            )
            .map_err(|err| {
                FleetError::Lost(format!("lost the coordinator at {}: {err}", self.peer))
            })?;
            match message {
                ToAgent::Ping { sent_ns } => {
                    let pong = ToCoordinator::Pong {
                        sent_ns,
                        agent_ns: self.clock.now_ns(),
                    };
                    heartbeat.send(&pong)?;
                }
                ToAgent::Step(order) => {
                    let part = self.run_step(engine, order, cpu);
                    heartbeat.send(&ToCoordinator::Part(Box::new(part)))?;
                }
                ToAgent::Finish => return Ok(()),
                ToAgent::Refused { reason } => return Err(FleetError::Refused(reason)),
                other => return Err(garbled(&self.peer, &other)),
            }
        }
    }

    fn run_step(
        &self,
        engine: &mut dyn Engine,
        order: StepOrder,
        cpu: Option<&CpuSampler>,
    ) -> PartReport {
        let heartbeat = &self.heartbeat;
        let share = order.params.len() as u32;
        let gate = self.clock.instant_at(order.release_ns + order.offset_ns);
        engine.release_next_at(gate);
        heartbeat.reset();
        if let Some(cpu) = cpu {
            cpu.begin_step(StepTag {
                step: order.step,
                requests: share,
            });
        }
        let called = Instant::now();
        let run = engine.run_step(order.step, order.params, Some(heartbeat));
        let (samples, whole) = cpu.map(Sampler::end_step_whole).unwrap_or_default();
        // The gate opened when the engine released its first request, never before the time.
        let opened = (called + run.launch).max(gate);
        let summary = self.summarize(
            engine,
            order.step,
            &run,
            CpuSummary::of(&samples, whole.as_ref()),
        );
        PartReport {
            step: order.step,
            records: run.records.iter().map(WireRecord::from).collect(),
            dropped: run.dropped,
            unsent: run.unsent,
            launch_us: run.launch.as_micros() as u64,
            wall_us: run.wall.as_micros() as u64,
            gate_late_us: opened.saturating_duration_since(gate).as_micros() as u64,
            summary,
        }
    }

    /// The share's counts, histogram, CPU and the client-limit flags the agent raises on it.
    fn summarize(
        &self,
        engine: &dyn Engine,
        step: u32,
        run: &StepRun,
        cpu: CpuSummary,
    ) -> AgentStep {
        let share = run.records.len() as u32 + run.dropped + run.unsent;
        let mut measured = StepResult::from_run(step, share, run, &[], &[]);
        measured.cpu = cpu;
        let context = StepContext {
            starts_together: self.plan.mode == Mode::Burst,
            scheduled: matches!(self.plan.mode, Mode::Rate { .. }),
            concurrency: engine.concurrency(share),
            usable_connections: None,
        };
        let thresholds = Thresholds {
            saturated_cpu_pct: self.plan.saturated_cpu_pct,
            ..Thresholds::default()
        };
        let cpus: ClientCpus = crate::sys::cpus::this_process();
        let raised = flags::diagnose(&measured, &context, &cpus, &thresholds);
        // A held crowd's cost to this agent: its own memory (the engine read it) and CPU.
        let hold = run.hold.clone().map(|hold| HoldStep {
            client_cpu_us_per_held: cpu
                .process
                .and_then(|p| cpu_us_per_held(p.mean, cpus.host_cores, hold.held)),
            ..hold
        });
        AgentStep {
            requests: measured.requests,
            ok: measured.ok,
            failed: measured.failed,
            dropped: measured.dropped,
            unsent: measured.unsent,
            failures: measured
                .failure_breakdown()
                .into_iter()
                .map(|(class, n)| (class.name().to_owned(), n))
                .collect(),
            host_cpu_pct: cpu.host.map(|h| h.mean),
            process_cpu_pct: cpu.process.map(|p| p.mean),
            client_wait_share: cpu.client_wait_share,
            // Launch spread is judged on the merged step, across all agents.
            flags: raised
                .into_iter()
                .filter(|flag| {
                    flag.is_client_limit() && *flag != crate::model::rules::Flag::LaunchSpread
                })
                .collect(),
            latency_histogram_us: crate::model::hdr::encode(&measured.latency),
            hold,
            ..AgentStep::default()
        }
    }
}

type CpuSampler = Sampler<CpuSample, StepCpu>;

/// The agent's own CPU sampler (its host and process; the server is elsewhere).
fn start_cpu_sampler() -> Option<CpuSampler> {
    let cpus = crate::sys::cpus::this_process();
    let sides = crate::measure::sampler::cpu::Sides {
        client_cpus: crate::sys::affinity::available(),
        client_cores: cpus.allowed_cores,
        server_cores: None,
        pooler: None,
    };
    let probe = crate::measure::sampler::cpu::CpuProbe::new(None, Instant::now(), sides);
    Sampler::start("pgstress-cpu", Duration::from_millis(100), probe).ok()
}

/// Says the agent is alive every second, with the requests of the step ended so far; also
/// the one writer of the control connection, so messages never interleave.
struct Heartbeat {
    writer: Arc<Mutex<TcpStream>>,
    done: Arc<AtomicU32>,
    ok: Arc<AtomicU32>,
    failed: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(stream: TcpStream) -> Self {
        let mut beat = Heartbeat {
            writer: Arc::new(Mutex::new(stream)),
            done: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
            thread: None,
        };
        let (writer, stop) = (Arc::clone(&beat.writer), Arc::clone(&beat.stop));
        let counts = [&beat.done, &beat.ok, &beat.failed].map(Arc::clone);
        beat.thread = std::thread::Builder::new()
            .name("pgstress-heartbeat".to_owned())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(HEARTBEAT_EVERY);
                    let [done, ok, failed] = counts.each_ref().map(|c| c.load(Ordering::Relaxed));
                    let alive = ToCoordinator::Alive { done, ok, failed };
                    let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
                    if frame::send(&mut stream, &alive, HEARTBEAT_EVERY * 3).is_err() {
                        break;
                    }
                }
            })
            .ok();
        beat
    }

    fn send(&self, message: &ToCoordinator) -> Result<(), FleetError> {
        let mut stream = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        frame::send(&mut stream, message, super::LOST_AFTER)
    }

    fn reset(&self) {
        for count in [&self.done, &self.ok, &self.failed] {
            count.store(0, Ordering::Relaxed);
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + HEARTBEAT_EVERY * 2;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}

impl StepObserver for Heartbeat {
    fn request_ended(&self, tally: Tally) {
        self.done.store(tally.done, Ordering::Relaxed);
        self.ok.store(tally.ok, Ordering::Relaxed);
        self.failed.store(tally.failed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_beyond_the_caps_is_refused_with_the_cap_named() {
        let caps = Caps {
            max_connections: 100,
            max_duration: Duration::from_secs(600),
        };
        let plan = AgentPlan {
            index: 1,
            mode: Mode::Burst,
            query: "SELECT 1".to_owned(),
            timeout: Duration::from_secs(10),
            allow_writes: false,
            client: crate::pg::request::RequestClient::Postgres,
            stack_kib: 256,
            prepare: None,
            sample_every: Duration::from_millis(100),
            saturated_cpu_pct: 90.0,
            largest_share: 100,
            bound: Duration::from_secs(60),
        };
        assert_eq!(check_caps(&plan, caps), Ok(()));
        let wide = AgentPlan {
            largest_share: 101,
            ..plan.clone()
        };
        assert!(
            check_caps(&wide, caps)
                .unwrap_err()
                .contains("--max-connections 100")
        );
        let pool = AgentPlan {
            mode: Mode::Pool {
                workers: Some(10),
                connect_per_request: false,
                duration: None,
            },
            largest_share: 500,
            ..plan.clone()
        };
        assert_eq!(check_caps(&pool, caps), Ok(()));
        let long = AgentPlan {
            bound: Duration::from_secs(601),
            ..plan
        };
        assert!(
            check_caps(&long, caps)
                .unwrap_err()
                .contains("--max-duration 10m")
        );
    }
}
