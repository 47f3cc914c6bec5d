//! The CPU sampler: a thread that, while a step runs, records every `--sample-every` the host's
//! CPU, this process's CPU and (when the server runs on this machine) the server's CPU.

mod counters;

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub use counters::HostTicks;

/// One reading, covering the time since the previous one.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuSample {
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    pub step: u32,
    pub requests: u32,
    /// Busy share of all the host's cores.
    pub host_cpu_pct: f64,
    /// This process's share of all the host's cores.
    pub process_cpu_pct: f64,
    /// The server's share of all the host's cores; None when the server is not local.
    pub server_cpu_pct: Option<f64>,
}

/// The local server whose CPU is sampled: its postmaster, whose children are the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalServer {
    pub postmaster_pid: u32,
}

impl LocalServer {
    /// Finds the postmaster of a backend seen from a monitoring connection (pg_backend_pid()),
    /// when that backend is a `postgres` process on this machine.
    pub fn from_backend_pid(backend_pid: u32) -> Option<Self> {
        let mut system = System::new().ok()?;
        let pid = Pid::from_u32(backend_pid);
        let is_postgres = |name: &std::ffi::OsStr| name.to_string_lossy().starts_with("postgres");
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing(),
        );
        let backend = system.process(pid)?;
        let (parent, backend_is_postgres) = (backend.parent()?, is_postgres(backend.name()));
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[parent]),
            true,
            ProcessRefreshKind::nothing(),
        );
        let postmaster = system.process(parent)?;
        (backend_is_postgres && is_postgres(postmaster.name())).then(|| LocalServer {
            postmaster_pid: parent.as_u32(),
        })
    }
}

enum Command {
    Begin { step: u32, requests: u32 },
    End(Sender<Vec<CpuSample>>),
}

/// Handle to the sampler thread; dropping it stops the thread.
pub struct Sampler {
    commands: Option<Sender<Command>>,
    handle: Option<JoinHandle<()>>,
}

/// The sampler answers within this; past it a step is logged without CPU samples.
const ANSWER_DEADLINE: Duration = Duration::from_secs(5);

impl Sampler {
    pub fn start(
        every: Duration,
        server: Option<LocalServer>,
        run_start: Instant,
    ) -> std::io::Result<Self> {
        let (commands, inbox) = unbounded();
        let handle = thread::Builder::new()
            .name("pgstress-sampler".into())
            .spawn(move || SamplerThread::new(every, server, run_start).run(inbox))?;
        Ok(Sampler {
            commands: Some(commands),
            handle: Some(handle),
        })
    }

    /// Starts sampling a step; the readings so far become the baseline.
    pub fn begin_step(&self, step: u32, requests: u32) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(Command::Begin { step, requests });
        }
    }

    /// Ends the step with one last reading (so even a step shorter than the interval has
    /// one sample) and returns the step's samples.
    pub fn end_step(&self) -> Vec<CpuSample> {
        let (reply, answer) = bounded(1);
        match &self.commands {
            Some(commands) if commands.send(Command::End(reply)).is_ok() => {
                answer.recv_timeout(ANSWER_DEADLINE).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    host: Option<HostTicks>,
    process_seconds: f64,
    server_seconds: Option<f64>,
}

struct SamplerThread {
    every: Duration,
    server: Option<LocalServer>,
    run_start: Instant,
    system: Option<System>,
    pid: Pid,
    cores: f64,
}

impl SamplerThread {
    fn new(every: Duration, server: Option<LocalServer>, run_start: Instant) -> Self {
        SamplerThread {
            every,
            server,
            run_start,
            system: System::new().ok(),
            pid: Pid::from_u32(std::process::id()),
            cores: host_cores() as f64,
        }
    }

    fn run(mut self, inbox: Receiver<Command>) {
        let mut current: Option<(u32, u32)> = None;
        let mut previous = self.read();
        let mut samples = Vec::new();
        loop {
            match inbox.recv_timeout(self.every) {
                Ok(Command::Begin { step, requests }) => {
                    current = Some((step, requests));
                    samples.clear();
                    previous = self.read();
                }
                Ok(Command::End(reply)) => {
                    if let Some(step) = current.take() {
                        let now = self.read();
                        samples.extend(self.sample(step, &previous, &now));
                        previous = now;
                    }
                    let _ = reply.send(std::mem::take(&mut samples));
                }
                Err(RecvTimeoutError::Timeout) => {
                    let now = self.read();
                    if let Some(step) = current {
                        samples.extend(self.sample(step, &previous, &now));
                    }
                    previous = now;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn read(&mut self) -> Reading {
        let process_seconds = match &mut self.system {
            Some(system) => {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[self.pid]),
                    false,
                    ProcessRefreshKind::nothing().with_cpu(),
                );
                system
                    .process(self.pid)
                    .map_or(0.0, |p| p.accumulated_cpu_time() as f64 / 1000.0)
            }
            None => 0.0,
        };
        Reading {
            at: Instant::now(),
            host: HostTicks::read(),
            process_seconds,
            server_seconds: self
                .server
                .and_then(|server| counters::process_cpu_seconds(server.postmaster_pid, true)),
        }
    }

    fn sample(
        &self,
        (step, requests): (u32, u32),
        before: &Reading,
        after: &Reading,
    ) -> Option<CpuSample> {
        let wall = after.at.duration_since(before.at).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let share = |seconds: f64| (seconds / (wall * self.cores) * 100.0).clamp(0.0, 100.0);
        Some(CpuSample {
            elapsed_ms: after.at.duration_since(self.run_start).as_millis() as u64,
            step,
            requests,
            host_cpu_pct: match (after.host, before.host) {
                (Some(a), Some(b)) => a.percent_since(&b).unwrap_or(0.0),
                _ => 0.0,
            },
            process_cpu_pct: share(after.process_seconds - before.process_seconds),
            server_cpu_pct: match (after.server_seconds, before.server_seconds) {
                (Some(a), Some(b)) => Some(share(a - b)),
                _ => None,
            },
        })
    }
}

/// Cores the host has (not only those this process may use): the denominator of "% of all cores".
fn host_cores() -> usize {
    num_cpus::get().max(
        std::fs::read_to_string("/proc/stat")
            .map(|stat| {
                stat.lines()
                    .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                    .count()
            })
            .unwrap_or(1),
    )
}
