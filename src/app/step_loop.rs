//! The ramp, step by step: draw the step's values, have the engine send them, aggregate and
//! judge what came back, and write it at once (a later step may never end well), until the
//! plan, a stop rule or Ctrl-C ends the run.

use std::cell::Cell;
use std::io::Write;
use std::time::Instant;

use super::watching::WatcherWatch;
use crate::config::RunConfig;
use crate::config::data::ParamData;
use crate::engine::Engine;
use crate::judge::flags::{self, StepContext};
use crate::judge::verdict::{self, Judging, StopReason, Verdict};
use crate::logs::{self, RunLogs, RunSummary, StepSummary};
use crate::measure::sampler::{Sampler, StepTag};
use crate::measure::stats;
use crate::model::activity::DatabaseCounts;
use crate::model::facts::{ClientCpus, RunFacts, clients_at_once};
use crate::model::hold::cpu_us_per_held;
use crate::model::plan::Mode;
use crate::model::record::{RequestRecord, StepObserver, StepRun, Tally};
use crate::model::rules::Flag;
use crate::model::sample::{
    CpuSample, PoolerStatsWhole, PoolerViewSample, PoolerViewSummary, ServerStatsSample,
    ServerStatsSummary, StepCpu,
};
use crate::model::server_cpu::{ServerCpu, of_own_cpus};
use crate::model::step::{CpuSummary, PoolerSide, StepResult};
use crate::model::watch::WatchSample;

/// A step's CPU samples and what its counters measured as a whole.
type StepCpuSamples = (Vec<CpuSample>, Option<StepCpu>);
use crate::output::metrics::{RunMetrics, StepEnd};

/// The monitor's samples of the server's sessions, and its counters over the step.
type ServerSamples = (Vec<ServerStatsSample>, Option<DatabaseCounts>);
/// The watcher's samples of the step, and its whole window.
type WatchSamples = (Vec<WatchSample>, Option<WatchSample>);
/// The monitor's sampler.
pub type StatsSampler = Sampler<ServerStatsSample, DatabaseCounts>;
use crate::output::printer::Printer;
use crate::output::progress::Progress;
use crate::sys::interrupt;

/// What the ramp measured, in the order the steps ran.
pub struct Ramp {
    pub results: Vec<StepResult>,
    pub summaries: Vec<StepSummary>,
    /// The step after which a stop rule ended the run, and the rule.
    pub stopped: Option<(u32, StopReason)>,
    /// A log that could not be written (a full disk): the ramp ended there, and the steps
    /// measured so far are still judged and printed.
    pub log_error: Option<anyhow::Error>,
    /// An agent was lost during the last step (why): that step is incomplete and the run
    /// ended there.
    pub lost: Option<String>,
}

/// The pooler as the third side: its console's view, and the CPUs it can use (1: PgBouncer).
#[derive(Default, Clone, Copy)]
pub struct PoolerWatch<'a> {
    pub console: Option<&'a Sampler<PoolerViewSample, PoolerStatsWhole>>,
    pub cores: Option<f64>,
}

/// Everything one run's steps need besides the engine that sends them.
pub struct StepLoop<'a, W: Write> {
    pub config: &'a RunConfig,
    pub facts: &'a RunFacts,
    pub cpus: ClientCpus,
    pub data: Option<&'a ParamData>,
    pub cpu_sampler: &'a Sampler<CpuSample, StepCpu>,
    pub stats_sampler: Option<&'a StatsSampler>,
    /// The watcher on the server's host, if the run has one.
    pub watcher: Option<WatcherWatch>,
    pub pooler: PoolerWatch<'a>,
    pub logs: &'a mut RunLogs,
    pub printer: &'a mut Printer<W>,
    pub progress: &'a mut Progress,
    /// The run's metrics, and whether a scraper sees them live: then each request is counted
    /// as it ends, else the step's records at its end.
    pub metrics: Option<(&'a RunMetrics, bool)>,
    /// Asked before each step: has the user asked the run to stop (Ctrl-C, SIGTERM)?
    pub stop_requested: &'a dyn Fn() -> bool,
    /// The fault pgstress causes on its own server (`--fault`), to tell its step.
    pub fault: Option<super::fault::FaultMark>,
}

impl<W: Write> StepLoop<'_, W> {
    pub fn run(mut self, engine: &mut dyn Engine) -> anyhow::Result<Ramp> {
        let mut rng = rand::rng();
        let mut ramp = Ramp {
            results: Vec::new(),
            summaries: Vec::new(),
            stopped: None,
            log_error: None,
            lost: None,
        };
        let steps = self.config.plan.steps;
        // The previous step's end, and whether the fault's interval ran on past it.
        let mut since = (None, false);
        for index in 1..=steps {
            if index > 1 {
                interrupt::sleep(self.config.pause);
            }
            if (self.stop_requested)() {
                break;
            }
            let released = Instant::now();
            let (mut run, cpu, server_samples, watched) = self.send_step(engine, index, &mut rng);
            let ended = Instant::now();
            // Through a pooler, a connection never answered while others were waited in its
            // queue: the pooler's limit, classed so before anything is logged or judged.
            if self.facts.pooler.is_some() {
                crate::judge::pooler::held_in_queue(&mut run.records);
            }
            let (cpu_samples, whole) = cpu;
            let cpu_summary = CpuSummary::of(&cpu_samples, whole.as_ref());
            let sides = (cpu_summary, self.pooler_side(&cpu_samples, whole.as_ref()));
            let server = (&server_samples, watched.as_ref());
            let mut result = self.judge_step(engine, index, &run, sides, server);
            let open = self.mark_fault(&mut result, &run.records, since, (released, ended));
            since = (Some(ended), open);
            let written = (self.logs).write_step(&result, &cpu_samples, &run.records, &run.agents);
            self.progress.suspend(|| self.printer.step(&result, steps));
            for note in agent_notes(&run) {
                self.progress.suspend(|| self.printer.note(note.clone()));
            }
            self.say_if_watcher_lost(index);
            ramp.stopped =
                verdict::stop_reason(&result, &self.config.stop).map(|reason| (index, reason));
            ramp.summaries.push(StepSummary::of(&result, &run.agents));
            ramp.results.push(result);
            let verdict = judge_run(&ramp, self.config, self.facts);
            if let (Some((metrics, _)), Some(result)) = (self.metrics, ramp.results.last()) {
                let handled = verdict::handled(result, &judging(self.config, self.facts));
                let (run, verdict) = (&run, &verdict);
                metrics.end_step(&StepEnd {
                    run,
                    result,
                    handled,
                    verdict,
                });
            }
            let written = written.map_err(anyhow::Error::from).and_then(|()| {
                write_summary(self.logs, self.facts, &ramp.summaries, &verdict, &[], false)
            });
            if let Err(err) = written {
                ramp.log_error = Some(err);
                break;
            }
            if ramp.stopped.is_some() && index < steps {
                break;
            }
            if run.lost.is_some() {
                ramp.lost = run.lost;
                break;
            }
        }
        Ok(ramp)
    }

    /// The pooler's side of a step: its processes' CPU, and what its console said.
    fn pooler_side(&self, cpu_samples: &[CpuSample], whole: Option<&StepCpu>) -> PoolerSide {
        PoolerSide {
            cpu: PoolerSide::cpu_of(cpu_samples, whole),
            runnable_pct: whole.and_then(|w| w.pooler_runnable_pct),
            processes: whole
                .map(|w| w.pooler_processes.clone())
                .unwrap_or_default(),
            view: self.pooler.console.and_then(|console| {
                let (samples, whole) = console.end_step_whole();
                PoolerViewSummary::of(&samples, whole.as_ref())
            }),
        }
    }

    /// Marks the step's outage as pgstress's doing when the fault reaches into the step (caused
    /// while it ran, in the pause before it, or earlier with its interval still open): the
    /// fault's instants decide, not the step's outage, so a step every request of which
    /// failed from its release still has one. Whether the fault's interval runs on past it.
    fn mark_fault(
        &self,
        result: &mut StepResult,
        records: &[RequestRecord],
        (since, open): (Option<Instant>, bool),
        span: (Instant, Instant),
    ) -> bool {
        let Some(fault) = &self.fault else {
            return false;
        };
        let Some(reach) = fault.reach(since, span, open) else {
            return false;
        };
        if result.outage.is_none() {
            result.outage = crate::measure::outage::through_fault(records);
        }
        if let Some(outage) = result.outage.as_mut() {
            outage.caused_by = Some(fault.fault.to_string());
            outage.fault_began_before = reach == super::fault::Reach::Before;
        }
        let back = (result.outage.as_ref()).is_none_or(|outage| outage.end.is_some());
        fault.still_open(span.1, back)
    }

    /// Draws the step's values, marks the step in the samplers and has the engine send it.
    fn send_step(
        &mut self,
        engine: &mut dyn Engine,
        index: u32,
        rng: &mut impl rand::Rng,
    ) -> (StepRun, StepCpuSamples, ServerSamples, Option<WatchSamples>) {
        let size = self.config.plan.requests_at(index);
        let requests = self.config.mode.requests_for(size);
        // A timed pool step draws a deck its requests take in turn, however many they are.
        let values = self.config.mode.values_for(size) as usize;
        let params: Vec<Option<String>> = match self.data {
            Some(data) => data.draw_step(values, rng).into_iter().map(Some).collect(),
            None => vec![None; values],
        };
        let tag = StepTag {
            step: index,
            requests,
        };
        self.cpu_sampler.begin_step(tag);
        // The server's counters before any of the step's sessions can end and flush its own.
        if let Some(sampler) = self.stats_sampler {
            sampler.begin_step_read(tag);
        }
        if let Some(console) = self.pooler.console {
            console.begin_step(tag);
        }
        // The watcher's edge reading crosses the network: taken before the step's requests.
        if let Some(watcher) = &self.watcher {
            watcher.sampler.begin_step_read(tag);
        }
        let known = self.config.mode.timed().is_none();
        self.progress.start_step(index, known.then_some(requests));
        let size = self.config.plan.requests_at(index);
        if let Some((metrics, _)) = self.metrics {
            metrics.begin_step(index, size, requests, engine.concurrency(size));
        }
        let watch = StepWatch {
            progress: self.progress.observer(),
            metrics: self.metrics.filter(|(_, live)| *live).map(|(m, _)| m),
            server_stats: self.stats_sampler,
            pooler_view: self.pooler.console,
            first_end_seen: Cell::new(false),
        };
        let run = engine.run_step(index, params, Some(&watch));
        self.progress.finish_step();
        let cpu_samples = self.cpu_sampler.end_step_whole();
        // The server's host read at the step's end before the monitor's query, which takes
        // a round trip to the server.
        let watched = self.watcher.as_ref().map(|w| w.sampler.end_step_whole());
        let server_samples = self
            .stats_sampler
            .map(Sampler::end_step_whole)
            .unwrap_or_default();
        (run, cpu_samples, server_samples, watched)
    }

    /// Says once that the watcher was lost: from the step it was lost in on, the server's
    /// side is unknown.
    fn say_if_watcher_lost(&mut self, step: u32) {
        if let Some(why) = self.watcher.as_mut().and_then(WatcherWatch::newly_lost) {
            let line = format!("  {why}; the server's side is unknown from step {step} on");
            self.progress.suspend(|| self.printer.note(line));
        }
    }

    /// The step's result, with its load in the mode's unit and all its flags: the diagnosis,
    /// the agents' client limits and the pooler's, in that order.
    fn judge_step(
        &self,
        engine: &dyn Engine,
        index: u32,
        run: &StepRun,
        (cpu, pooler): (CpuSummary, PoolerSide),
        ((server_samples, counts), watched): (&ServerSamples, Option<&WatchSamples>),
    ) -> StepResult {
        let size = self.config.plan.requests_at(index);
        let mut measured = StepResult::from_run(index, size, run, &[], &[]);
        // ok + failed + dropped + unsent = scheduled, for every step: whatever is missing was lost.
        let scheduled = self.config.mode.requests_for(size);
        measured.lost = scheduled.saturating_sub(measured.requests);
        // A held crowd's threads sleep between queries and none is watched: their wait for a
        // CPU is not read, and the launcher's over the queries' time would mean nothing.
        let in_flight = match run.hold {
            Some(_) => std::time::Duration::ZERO,
            None => stats::in_flight(&run.records),
        };
        measured.cpu = cpu.with_wait_over(in_flight);
        let own = of_own_cpus(1.0, self.cpus.host_cores, self.cpus.allowed_cores);
        measured.cpu.process_own = measured.cpu.process.map(|process| process.times(own));
        measured.pooler = pooler;
        measured.server = ServerStatsSummary::of(server_samples, *counts);
        let activity = measured.server.as_ref().and_then(|s| s.activity.as_ref());
        // With a watcher, the server's CPU is its watcher's, and nothing once it was lost.
        measured.server_cpu = match (&self.watcher, watched) {
            (Some(watcher), Some(watched)) => {
                let (cpu, host) = super::watching::judged(watched, watcher.cores, activity);
                measured.watched = host;
                cpu
            }
            _ => ServerCpu::of(
                measured.cpu.server,
                activity,
                self.cpus.host_cores,
                self.facts.cpus.server_cores,
            ),
        };
        // Every host of the list counted, those no request reached too.
        if !self.facts.nodes.is_empty() {
            let hosts = self.facts.nodes.len().max(measured.by_node.len());
            measured.by_node.resize(hosts, 0);
        }
        let context = StepContext {
            starts_together: matches!(self.config.mode, Mode::Burst),
            scheduled: matches!(self.config.mode, Mode::Rate { .. }),
            concurrency: engine.concurrency(size),
            // Through a pooler that reported its client limit, that is what the target takes.
            usable_connections: Some(clients_at_once(
                &self.facts.server,
                self.facts.pooler_limit.as_ref(),
            )),
        };
        measured.concurrency.asked = context.concurrency;
        cpu_per_held(&mut measured, self.cpus.host_cores, !run.agents.is_empty());
        let mut flags = flags::diagnose(&measured, &context, &self.cpus, &self.config.thresholds);
        // A step where any agent was the limit is client-limited as a whole.
        for agent in &run.agents {
            for &flag in agent.flags.iter().filter(|flag| flag.is_client_limit()) {
                if !flags.contains(&flag) {
                    flags.push(flag);
                }
                measured.limiting_agents.push((flag, agent.agent.clone()));
            }
        }
        if run.lost.is_some() && !flags.contains(&Flag::Partial) {
            flags.push(Flag::Partial);
        }
        crate::judge::pooler::judge_processes(&mut measured.pooler, &self.config.thresholds);
        flags.extend(crate::judge::pooler::pooler_flags(
            &measured,
            self.pooler.cores,
            self.cpus.host_cores,
            &self.config.thresholds,
        ));
        crate::judge::pooler::queue_explains_late_starts(&mut flags);
        measured.with_flags(flags)
    }
}

/// A hold step's CPU per held connection, for each side: µs of CPU per second. With agents
/// the client's is theirs (merged from their own), not this process's.
fn cpu_per_held(measured: &mut StepResult, host_cores: f64, agents: bool) {
    let Some(hold) = measured.hold.as_mut() else {
        return;
    };
    let held = hold.held;
    let per_held = |cpu: Option<crate::model::step::MeanPeak>| {
        cpu.and_then(|cpu| cpu_us_per_held(cpu.mean, host_cores, held))
    };
    if !agents {
        hold.client_cpu_us_per_held = per_held(measured.cpu.process);
    }
    hold.pooler_cpu_us_per_held = per_held(measured.pooler.cpu);
    hold.server_cpu_us_per_held = per_held(measured.cpu.server);
}

/// The lines naming which agent limited a step, or was lost during it.
fn agent_notes(run: &StepRun) -> Vec<String> {
    let mut notes: Vec<String> = run
        .agents
        .iter()
        .filter(|agent| !agent.flags.is_empty())
        .map(|agent| {
            format!(
                "  agent {}: {} (its own share)",
                agent.agent,
                agent
                    .flags
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect();
    notes.extend(run.lost.iter().map(|why| format!("  {why}")));
    notes
}

/// What the verdict is judged against, from the run's configuration and facts.
pub fn judging(config: &RunConfig, facts: &RunFacts) -> Judging {
    Judging {
        steps_planned: config.plan.steps,
        slo_p99: config.slo_p99,
        unit: config.mode.unit(),
        tolerate: config.tolerate,
        server_shares_host: facts.cpus.shared,
        host_cores: facts.client.host_cores,
        client_cores: facts.client.allowed_cores,
        saturated_cpu_pct: config.thresholds.saturated_cpu_pct,
        min_judged_wall: config.thresholds.min_judged_wall,
    }
}

/// The verdict on the steps so far: the one place it is judged, after each step and at the
/// end. A stop rule tripped by the last planned step stopped nothing.
pub fn judge_run(ramp: &Ramp, config: &RunConfig, facts: &RunFacts) -> Verdict {
    let stopped = ramp.stopped.filter(|(step, _)| *step < config.plan.steps);
    Verdict::judge(&ramp.results, &judging(config, facts), stopped)
}

/// Replaces the run's JSON summary: after every step (`complete` false) and at the end.
pub fn write_summary(
    logs: &RunLogs,
    facts: &RunFacts,
    steps: &[StepSummary],
    verdict: &Verdict,
    gates: &[(String, Option<String>)],
    complete: bool,
) -> anyhow::Result<()> {
    let gates = gates
        .iter()
        .map(|(gate, breached)| logs::GateResult {
            gate: gate.clone(),
            breached: breached.clone(),
        })
        .collect();
    let summary = RunSummary {
        facts,
        complete,
        interrupted: interrupt::requested(),
        steps,
        verdict,
        verdict_text: verdict.sentences(),
        gates,
    };
    Ok(logs.write_summary(&summary)?)
}

/// Watches a step's requests end: moves the progress bar, and when the first one ends has the
/// server statistics read at once, while the step's connections are still open (a step
/// shorter than the sampling interval would be seen only after they closed).
struct StepWatch<'a> {
    progress: Option<&'a dyn StepObserver>,
    /// The live metrics, when a scraper reads them.
    metrics: Option<&'a RunMetrics>,
    server_stats: Option<&'a StatsSampler>,
    pooler_view: Option<&'a Sampler<PoolerViewSample, PoolerStatsWhole>>,
    first_end_seen: Cell<bool>,
}

impl StepObserver for StepWatch<'_> {
    fn record_ended(&self, record: &RequestRecord) {
        if let Some(metrics) = self.metrics {
            metrics.record_ended(record);
        }
    }

    fn request_ended(&self, tally: Tally) {
        if let Some(progress) = self.progress {
            progress.request_ended(tally);
        }
        if let Some(metrics) = self.metrics {
            metrics.step_progress(tally.done);
        }
        if !self.first_end_seen.replace(true) {
            if let Some(sampler) = self.server_stats {
                sampler.read_now();
            }
            // The clients still waiting in the pooler's queue, while they wait.
            if let Some(sampler) = self.pooler_view {
                sampler.read_now();
            }
        }
    }
}

#[cfg(test)]
#[path = "step_loop_tests.rs"]
mod tests;
