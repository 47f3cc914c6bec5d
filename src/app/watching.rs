//! The run's watcher (`--watcher-listen`): taken before the samplers start, it makes the
//! server's source `watcher` and its CPUs those the watcher found, and is read by a sampler of
//! its own beside the CPU sampler; a watcher lost is said once, and the steps after it have no
//! server side.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::config::RunConfig;
use crate::fleet::watched::{Lost, Watcher};
use crate::measure::sampler::Sampler;
use crate::model::activity::Activity;
use crate::model::facts::CpuFacts;
use crate::model::mean_peak::MeanPeak;
use crate::model::server_cpu::{ServerCpu, ServerSource};
use crate::model::watch::{WatchSample, Watched};
use crate::output::printer::Printer;

pub type WatchSampler = Sampler<WatchSample, WatchSample>;

/// The watcher's sampler, why it was lost (once it was), and the CPUs it found the server on.
pub struct WatcherWatch {
    pub sampler: WatchSampler,
    pub lost: Lost,
    pub cores: f64,
    /// The loss was said already.
    pub said: bool,
}

/// Waits for the run's watcher, if it has one; the door's notes are printed.
pub fn accept(
    config: &RunConfig,
    printer: &mut Printer<std::io::Stdout>,
) -> anyhow::Result<Option<Watcher>> {
    let Some(settings) = &config.watcher else {
        return Ok(None);
    };
    let mut note = |line: String| printer.note(line);
    Ok(Some(Watcher::accept(settings, &mut note)?))
}

/// The server's source at the start: a watcher's, when the run has one.
pub fn source(others: ServerSource, watcher: Option<&Watcher>) -> ServerSource {
    match watcher {
        Some(_) => ServerSource::Watcher,
        None => others,
    }
}

/// The sides' CPUs, the server's as its watcher found them.
pub fn cpus(facts: CpuFacts, watcher: Option<&Watcher>) -> CpuFacts {
    let Some(watcher) = watcher else {
        return facts;
    };
    CpuFacts {
        server: Some(format!(
            "{} of {}",
            watcher.host.server_cpus, watcher.host.host
        )),
        server_cores: Some(watcher.host.server_cores),
        server_cores_given: false,
        // On another host: the sides never compete for a CPU.
        shared: false,
        ..facts
    }
}

/// Starts reading the server's host through the watcher, every `--sample-every`.
pub fn start(
    watcher: Option<Watcher>,
    config: &RunConfig,
    run_start: Instant,
) -> anyhow::Result<Option<WatcherWatch>> {
    let Some(watcher) = watcher else {
        return Ok(None);
    };
    let lost: Lost = Arc::new(Mutex::new(None));
    let cores = watcher.host.server_cores;
    let probe = watcher.probe(run_start, Arc::clone(&lost));
    let sampler = Sampler::start("pgstress-watcher", config.sample_every, probe)?;
    Ok(Some(WatcherWatch {
        sampler,
        lost,
        cores,
        said: false,
    }))
}

impl WatcherWatch {
    /// Why the watcher was lost, the first time it is asked after the loss.
    pub fn newly_lost(&mut self) -> Option<String> {
        if self.said {
            return None;
        }
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.said = lost.is_some();
        lost
    }
}

/// The server's CPU and the rest of its host over one step, from the watcher's samples and
/// the step's whole window (None: the watcher sent nothing for it, lost).
pub fn judged(
    (samples, whole): &(Vec<WatchSample>, Option<WatchSample>),
    cores: f64,
    activity: Option<&Activity>,
) -> (ServerCpu, Option<Watched>) {
    let Some(whole) = whole else {
        return (ServerCpu::watched(None, cores, activity), None);
    };
    let server: Vec<f64> = samples.iter().filter_map(|s| s.server_cpu_pct).collect();
    let own = whole
        .server_cpu_pct
        .map(|mean| MeanPeak::with_mean(mean, &server));
    let cpu = ServerCpu::watched(own, cores, activity);
    (cpu, Some(Watched::of(samples, whole)))
}
