//! Everything the terminal shows: plain lines, readable in a CI log.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::judge::verdict::Verdict;
use crate::model::activity::Activity;
use crate::model::facts::RunFacts;
use crate::model::outcome::FailureClass;
use crate::model::server_cpu::ServerSource;
use crate::model::step::{MeanPeak, Shortfall, StepResult};
use crate::output::format;

pub struct Printer<W: Write> {
    out: W,
    classes_explained: HashSet<FailureClass>,
    /// Shortfalls of concurrency already explained: each kind is told once per run.
    shortfalls_explained: HashSet<Shortfall>,
    /// The target's hosts, when it has several (from the header).
    nodes: Vec<String>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer {
            out,
            classes_explained: HashSet::new(),
            shortfalls_explained: HashSet::new(),
            nodes: Vec::new(),
        }
    }

    // Output errors (a closed pipe) must not stop a run whose logs are on disk. After a second
    // Ctrl-C nothing more is said: the step in flight fails because the process is exiting,
    // and a line about it would report the exit as the server's doing.
    fn line(&mut self, text: impl AsRef<str>) {
        if crate::sys::interrupt::abandoned() {
            return;
        }
        let _ = writeln!(self.out, "{}", text.as_ref());
        let _ = self.out.flush();
    }

    pub fn note(&mut self, text: impl AsRef<str>) {
        self.line(text);
    }

    pub fn header(&mut self, facts: &RunFacts, log_paths: &[&Path]) {
        self.nodes = facts.nodes.clone();
        let plan = &facts.plan;
        let unit = &plan.unit;
        self.line(format!(
            "pgstress {}: {} mode, {} steps of {} to {} {unit} (+{} per step), {}",
            facts.pgstress_version,
            plan.mode,
            plan.steps,
            plan.start,
            plan.largest_step,
            plan.step,
            plan.requests_in_all()
        ));
        self.line(format!("load:    {}", plan.engine));
        let kind = if facts.throwaway {
            " (throwaway server)"
        } else {
            ""
        };
        self.line(format!("target:  {}{kind}", facts.target));
        if let Some(pooler) = &facts.pooler {
            self.line(format!("pooler:  {pooler}"));
        }
        let server = &facts.server;
        self.line(format!(
            "server:  PostgreSQL {}, max_connections {} ({} reserved for superusers, {} sessions open): {} free for the requests{}",
            server.version,
            server.max_connections,
            server.superuser_reserved_connections,
            server.sessions_at_start,
            server.usable_connections(),
            if server.superuser { " (a superuser may use the reserve)" } else { "" }
        ));
        self.line(format!("query:   {}", plan.query));
        if plan.allow_writes {
            self.line("writes:  allowed (--allow-writes): every request may change the data");
        }
        if let Some(data) = &plan.data {
            self.line(format!("data:    {data}"));
        }
        let seen = match (facts.server_cpu_visible, facts.server_stats_visible) {
            (true, true) => "client and server CPU, server statistics",
            (true, false) => "client and server CPU",
            (false, true) => {
                "client CPU, server statistics (the server's CPU is not visible from here)"
            }
            (false, false) => "client CPU only",
        };
        self.line(format!(
            "limits:  {}ms per request (connect + query); sampled every {}ms: {seen}; client may use {} of {} cores",
            plan.timeout_ms, plan.sample_every_ms, facts.client.allowed_cores, facts.client.host_cores
        ));
        let stops = format::stop_rules(plan).unwrap_or_else(|| "none (--no-stop)".to_owned());
        self.line(format!("stop:    after a step with {stops}"));
        let seconds =
            |s: f64| humantime::format_duration(std::time::Duration::from_secs(s.round() as u64));
        self.line(format!(
            "bound:   the steps end within {} (the largest within {}), whatever the server does",
            seconds(plan.bound_s),
            seconds(plan.largest_step_bound_s)
        ));
        self.line(format!("cpus:    {}", facts.cpus.describe()));
        self.line(format!("source:  {}", server_source(facts)));
        for path in log_paths {
            self.line(format!("log:     {}", path.display()));
        }
    }

    pub fn step(&mut self, result: &StepResult, steps: u32) {
        let failed = if result.failed == 0 {
            String::new()
        } else {
            let classes: Vec<String> = result
                .failure_breakdown()
                .iter()
                .map(|(class, n)| format!("{class} {n}"))
                .collect();
            format!(" ({})", classes.join(", "))
        };
        let flags = if result.flags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", crate::model::rules::join(&result.flags))
        };
        let dropped = match result.dropped {
            0 => String::new(),
            n => format!("  {n:>6} dropped"),
        };
        // Pool and rate modes: how much of the latency was waiting to start.
        let waited = match result.queue_wait_ms(99.0) {
            Some(wait) => format!(" (wait p99 {})", format::ms(Some(wait))),
            None => String::new(),
        };
        self.line(format!(
            "step {:>2}/{steps}  {:>6} req  {:>6} ok  {:>6} failed{failed}{dropped}  wall {:.3}s  p50 {}  p99 {}{waited}  cpu host {}  pgstress {} (waits {})  server {}{}{flags}",
            result.step,
            result.requests,
            result.ok,
            result.failed,
            result.wall.as_secs_f64(),
            format::ms(result.latency_ms(50.0)),
            format::ms(result.latency_ms(99.0)),
            cpu(result.cpu.host),
            cpu(result.cpu.process),
            wait(result.cpu.client_wait_share),
            server_cpu(result),
            sessions(result),
        ));
        if !result.by_node.is_empty() {
            let reached: Vec<String> = (result.by_node.iter().enumerate())
                .map(|(node, n)| match self.nodes.get(node) {
                    Some(name) => format!("{n} on {name}"),
                    None => format!("{n} on host {}", node + 1),
                })
                .collect();
            self.line(format!("         nodes: {}", reached.join(", ")));
        }
        if result.pooler.processes.len() > 1 {
            self.line(format!(
                "         pooler processes: {}",
                pooler_processes(result)
            ));
        }
        for (class, message) in &result.first_messages {
            if self.classes_explained.insert(*class) {
                self.line(format!("         first {class}: {message}"));
            }
        }
        match &result.outage {
            Some(outage) => {
                let line = crate::judge::outage::line(outage, result.lost);
                self.line(format!("         {line}"));
            }
            None if result.lost > 0 => self.line(format!(
                "         {} requests of the schedule lost (uncounted: a pgstress bug)",
                result.lost
            )),
            None => {}
        }
        if let Some(hold) = &result.hold {
            self.line(format!("         {}", hold_line(hold)));
        }
        if let Some(shortfall) = result.concurrency.shortfall()
            && self.shortfalls_explained.insert(shortfall)
        {
            self.line(format!("         {}", shortfall_note(result, shortfall)));
        }
    }

    pub fn verdict(&mut self, verdict: &Verdict) {
        self.line("");
        for sentence in verdict.sentences() {
            self.line(sentence);
        }
    }

    pub fn summary(&mut self, results: &[StepResult]) {
        self.line("");
        self.line(format!(
            "{:>4} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>6}",
            "step",
            "requests",
            "ok",
            "failed",
            "wall_s",
            "p50_ms",
            "p99_ms",
            "host_cpu",
            "pgstress",
            "server_cpu",
            "cpu_wait",
            "aas"
        ));
        for r in results {
            self.line(format!(
                "{:>4} {:>8} {:>8} {:>8} {:>9.3} {:>9} {:>9} {:>10} {:>10} {:>10} {:>8} {:>6}  {}",
                r.step,
                r.requests,
                r.ok,
                r.failed,
                r.wall.as_secs_f64(),
                format::one_decimal(r.latency_ms(50.0)),
                format::one_decimal(r.latency_ms(99.0)),
                cpu(r.cpu.host),
                cpu(r.cpu.process),
                server_cpu(r),
                wait(r.cpu.client_wait_share),
                activity(r).map_or_else(|| "-".to_owned(), |a| format!("{:.1}", a.mean)),
                crate::model::rules::join(&r.flags),
            ));
        }
    }
}

/// "mean%/peak%" ("mean%/-" without enough samples for a peak), or "-" when nothing was measured.
fn cpu(series: Option<MeanPeak>) -> String {
    format::cpu_mean_peak(series.map(|s| s.mean), series.and_then(|s| s.peak))
}

/// The server's CPU: measured here (a share of the host, as the host's and pgstress's), by a
/// watcher on its host (over its own CPUs, the host's being another machine's), or the sampled
/// estimate over its own CPUs, marked `~`.
fn server_cpu(result: &StepResult) -> String {
    let server = &result.server_cpu;
    match (server.source, server.own) {
        (ServerSource::SqlEstimate, Some(own)) => format!("~{:.0}%", own.mean),
        (ServerSource::Watcher, own) => cpu(own),
        _ => cpu(result.cpu.server),
    }
}

fn activity(result: &StepResult) -> Option<&Activity> {
    result.server.as_ref().and_then(|s| s.activity.as_ref())
}

/// The server's active sessions in the step: their average and its busiest events.
fn sessions(result: &StepResult) -> String {
    let Some(activity) = activity(result) else {
        return String::new();
    };
    let events: Vec<String> = (activity.top_events.iter())
        .map(|(event, aas)| format!("{event} {aas:.1}"))
        .collect();
    match events.is_empty() {
        true => format!("  aas {:.1}", activity.mean),
        false => format!("  aas {:.1} ({})", activity.mean, events.join(", ")),
    }
}

/// The header's line on where the server side's figures come from, and how it is judged.
fn server_source(facts: &RunFacts) -> String {
    let every = facts.plan.sample_every_ms;
    let source = facts.server_source;
    let how = match (source, facts.cpus.server_cores) {
        (ServerSource::Local, _) => format!(
            "its processes' CPU measured on this machine{}",
            match facts.server_stats_visible {
                true => ", its sessions sampled from pg_stat_activity",
                false => "",
            }
        ),
        (ServerSource::Watcher, _) => "its CPU measured by a watcher on its host".to_owned(),
        (ServerSource::SqlEstimate, Some(cores)) => format!(
            "its CPU is not seen from here; its sessions on CPU, sampled from pg_stat_activity \
             every {every}ms, are judged against its {} (--server-cores): server-saturated \
             when they reach them",
            crate::judge::cpus::cpus(cores)
        ),
        (ServerSource::SqlEstimate, None) => format!(
            "its CPU is not seen from here; its sessions are sampled from pg_stat_activity every \
             {every}ms but not judged: give --server-cores N (its CPU count) to judge them"
        ),
        (ServerSource::None, _) => {
            "no monitoring connection, and its CPU is not seen from here".to_owned()
        }
    };
    format!("server side {source}: {how}")
}

/// pgstress's threads' wait for a CPU as a share of its requests' time in flight, or "-".
fn wait(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |share| format!("{:.0}%", share * 100.0))
}

/// Each of several PgBouncer processes over the step: its core, its thread's runnable time,
/// and whether it was judged full.
fn pooler_processes(result: &StepResult) -> String {
    let each: Vec<String> = (result.pooler.processes.iter())
        .map(|p| {
            let runnable = p
                .runnable_pct
                .map_or_else(String::new, |pct| format!(", runnable {pct:.0}%"));
            let full = if p.full { ", full" } else { "" };
            format!(
                "{} (pid {}) core {:.0}%{runnable}{full}",
                p.index, p.pid, p.core_pct
            )
        })
        .collect();
    each.join("; ")
}

/// What the step achieved against what it asked for, and whose doing the difference was.
fn shortfall_note(result: &StepResult, shortfall: Shortfall) -> String {
    let c = &result.concurrency;
    let why = match shortfall {
        // Requests behind connections held in a pooler's queue could not start sooner.
        Shortfall::StartedLate
            if result
                .flags
                .contains(&crate::model::rules::Flag::PoolerQueued) =>
        {
            "connections held in the pooler's queue kept the requests behind them from starting (the pooler's: pooler-queued)"
        }
        Shortfall::StartedLate => {
            "its threads started too late to overlap (the client's limit: started-late)"
        }
        Shortfall::AcceptedSlowly => {
            "the server accepted their connections one after another (the server's: accepted-slowly)"
        }
    };
    format!(
        "concurrency: {} asked, {} in flight at once, {} connected at once: {why}",
        c.asked.unwrap_or_default(),
        c.peak_in_flight,
        c.peak_connected
    )
}

/// A hold step's crowd in one line: "held 300 (opened 100, 0 reopened, 0 dropped); per held
/// connection: pgstress 14.2 KiB, pooler 2.1 KiB, server 1,234.0 KiB (301 backends of 1.2 MiB)".
pub fn hold_line(hold: &crate::model::hold::HoldStep) -> String {
    let kib = |value: Option<f64>| value.map_or("?".to_owned(), |v| format!("{v:.1} KiB"));
    let mut sides = vec![format!("pgstress {}", kib(hold.client_kib_per_held))];
    if hold.pooler_kib_per_held.is_some() {
        sides.push(format!("pooler {}", kib(hold.pooler_kib_per_held)));
    }
    if let (Some(backends), Some(each)) = (hold.server_backends, hold.server_kib_per_backend) {
        sides.push(format!(
            "server {} ({backends} server processes of {each:.0} KiB each)",
            kib(hold.server_kib_per_held)
        ));
    }
    format!(
        "held {} (opened {}, {} reopened, {} dropped); memory per held connection: {}",
        hold.held,
        hold.opened,
        hold.reopened,
        hold.dropped,
        sides.join(", ")
    )
}
