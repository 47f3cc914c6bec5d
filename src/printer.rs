//! Everything the terminal shows: plain lines, readable in a CI log.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::config::StepPlan;
use crate::stats::{MeanPeak, StepResult};
use crate::target::FailureClass;

/// Facts read from the server before the first step.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub version: String,
    pub max_connections: u32,
    pub superuser_reserved_connections: u32,
}

impl ServerFacts {
    /// Connections the server accepts at once from a non-superuser.
    pub fn usable_connections(&self) -> u32 {
        self.max_connections
            .saturating_sub(self.superuser_reserved_connections)
    }
}

/// What the header describes.
pub struct Header<'a> {
    pub plan: &'a StepPlan,
    pub target: &'a str,
    pub throwaway: bool,
    pub server: &'a ServerFacts,
    pub query: &'a str,
    pub data: Option<String>,
    pub timeout: std::time::Duration,
    pub server_cpu_visible: bool,
    pub log_paths: Vec<&'a Path>,
}

pub struct Printer<W: Write> {
    out: W,
    classes_explained: HashSet<FailureClass>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Self {
        Printer {
            out,
            classes_explained: HashSet::new(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }

    // Output errors (a closed pipe) must not stop a run whose logs are on disk.
    fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", text.as_ref());
        let _ = self.out.flush();
    }

    pub fn note(&mut self, text: impl AsRef<str>) {
        self.line(text);
    }

    pub fn header(&mut self, header: &Header<'_>) {
        let plan = header.plan;
        self.line(format!(
            "pgstress {}: burst mode, {} steps of {} to {} concurrent requests (+{} per step), {} requests in all",
            env!("CARGO_PKG_VERSION"),
            plan.steps,
            plan.start,
            plan.largest(),
            plan.step,
            plan.total_requests()
        ));
        let kind = if header.throwaway {
            " (throwaway server)"
        } else {
            ""
        };
        self.line(format!("target:  {}{kind}", header.target));
        let facts = header.server;
        self.line(format!(
            "server:  PostgreSQL {}, max_connections {} ({} reserved for superusers)",
            facts.version, facts.max_connections, facts.superuser_reserved_connections
        ));
        self.line(format!("query:   {}", header.query));
        if let Some(data) = &header.data {
            self.line(format!("data:    {data}"));
        }
        let server_cpu = if header.server_cpu_visible {
            "client and server"
        } else {
            "client only (server not local)"
        };
        self.line(format!(
            "limits:  {} per request (connect + query); CPU sampled for {server_cpu}",
            humantime::format_duration(header.timeout)
        ));
        for path in &header.log_paths {
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
        self.line(format!(
            "step {:>2}/{steps}  {:>6} req  {:>6} ok  {:>6} failed{failed}  wall {:.3}s  p50 {}  p99 {}  cpu client {}  server {}",
            result.step,
            result.requests,
            result.ok,
            result.failed,
            result.wall.as_secs_f64(),
            ms(result.latency_ms(50.0)),
            ms(result.latency_ms(99.0)),
            cpu(result.cpu.host),
            cpu(result.cpu.server),
        ));
        for (class, message) in &result.first_messages {
            if self.classes_explained.insert(*class) {
                self.line(format!("         first {class}: {message}"));
            }
        }
    }

    pub fn summary(&mut self, results: &[StepResult]) {
        self.line("");
        self.line(format!(
            "{:>4} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10}",
            "step",
            "requests",
            "ok",
            "failed",
            "wall_s",
            "p50_ms",
            "p99_ms",
            "client_cpu",
            "pgstress",
            "server_cpu"
        ));
        for r in results {
            self.line(format!(
                "{:>4} {:>8} {:>8} {:>8} {:>9.3} {:>9} {:>9} {:>10} {:>10} {:>10}",
                r.step,
                r.requests,
                r.ok,
                r.failed,
                r.wall.as_secs_f64(),
                number(r.latency_ms(50.0)),
                number(r.latency_ms(99.0)),
                cpu(r.cpu.host),
                cpu(r.cpu.process),
                cpu(r.cpu.server),
            ));
        }
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"))
}

fn number(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// "mean%/peak%", or "-" when nothing was sampled.
fn cpu(series: Option<MeanPeak>) -> String {
    series.map_or_else(
        || "-".to_owned(),
        |s| format!("{:.0}%/{:.0}%", s.mean, s.peak),
    )
}
