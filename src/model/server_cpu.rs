//! The server's CPU as a step is judged by it, whatever it was read from: its processes
//! measured on this machine (`local`), a watcher on its host (`watcher`), or its sessions on
//! CPU sampled over SQL (`sql-estimate`); `none` where nothing was.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::activity::Activity;
use crate::model::mean_peak::{MIN_SAMPLES_FOR_PEAK, MeanPeak};

/// Where a step's server-side figures came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerSource {
    /// The server's processes on this machine: its CPU measured exactly.
    Local,
    /// A watcher on the server's host sent its CPU (exact, as a local server's).
    Watcher,
    /// Only what SQL shows: its sessions on CPU, sampled from `pg_stat_activity`.
    SqlEstimate,
    /// Nothing: no monitoring connection, no CPU.
    #[default]
    None,
}

impl ServerSource {
    pub fn name(self) -> &'static str {
        match self {
            ServerSource::Local => "local",
            ServerSource::Watcher => "watcher",
            ServerSource::SqlEstimate => "sql-estimate",
            ServerSource::None => "none",
        }
    }

    /// The figures are a measurement of the server's CPU, not an estimate.
    pub fn measured(self) -> bool {
        matches!(self, ServerSource::Local | ServerSource::Watcher)
    }

    pub fn from_name(name: &str) -> Option<ServerSource> {
        [
            ServerSource::Local,
            ServerSource::Watcher,
            ServerSource::SqlEstimate,
            ServerSource::None,
        ]
        .into_iter()
        .find(|source| source.name() == name)
    }
}

impl fmt::Display for ServerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A share of all the host's cores as a share of `cores` of them, in percent.
pub fn of_own_cpus(pct_of_host: f64, host_cores: f64, cores: f64) -> f64 {
    pct_of_host * host_cores / cores.max(0.01)
}

/// The server's CPU in one step, over the CPUs it may use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerCpu {
    pub source: ServerSource,
    /// The CPUs it may use: its postmaster's (local), its host's (watcher), `--server-cores`.
    pub cores: Option<f64>,
    /// Its CPU over those CPUs, in percent: measured (local, watcher), or its sessions on
    /// CPU over its cores (sql-estimate, which may pass 100: sessions waiting for a CPU).
    pub own: Option<MeanPeak>,
    /// Sessions on CPU, on average (sql-estimate), for the verdict's words.
    pub sessions_on_cpu: Option<f64>,
}

impl ServerCpu {
    /// A local server's CPU (`server`, in percent of the host's `host_cores`), else its
    /// sessions' estimate where they were sampled, else nothing.
    pub fn of(
        server: Option<MeanPeak>,
        activity: Option<&Activity>,
        host_cores: f64,
        cores: Option<f64>,
    ) -> Self {
        if let Some(server) = server {
            let cores = cores.unwrap_or(host_cores);
            return ServerCpu {
                source: ServerSource::Local,
                cores: Some(cores),
                own: Some(server.times(of_own_cpus(1.0, host_cores, cores))),
                sessions_on_cpu: activity.map(Activity::on_cpu),
            };
        }
        let Some(activity) = activity else {
            return ServerCpu::default();
        };
        let own = cores.map(|cores| {
            let pct = |sessions: f64| sessions / cores.max(0.01) * 100.0;
            let enough = activity.samples as usize >= MIN_SAMPLES_FOR_PEAK;
            MeanPeak {
                mean: pct(activity.on_cpu()),
                peak: enough.then(|| pct(f64::from(activity.cpu_peak))),
            }
        });
        ServerCpu {
            source: ServerSource::SqlEstimate,
            cores,
            own,
            sessions_on_cpu: Some(activity.on_cpu()),
        }
    }

    /// The server's CPU as its watcher measured it, over `cores` (its postmaster's CPUs on its
    /// own host); nothing where the watcher sent nothing for the step (lost).
    pub fn watched(own: Option<MeanPeak>, cores: f64, activity: Option<&Activity>) -> Self {
        match own {
            Some(own) => ServerCpu {
                source: ServerSource::Watcher,
                cores: Some(cores),
                own: Some(own),
                sessions_on_cpu: activity.map(Activity::on_cpu),
            },
            None => ServerCpu::default(),
        }
    }

    /// The share of its CPUs from which the server counts as saturated: the threshold for a
    /// measured CPU, all of its cores for the sampled estimate (AAS on CPU reaching them, as
    /// Performance Insights and ASH judge it: a session on CPU may be waiting for one).
    pub fn saturation_pct(&self, threshold_pct: f64) -> f64 {
        match self.source {
            ServerSource::SqlEstimate => 100.0,
            _ => threshold_pct,
        }
    }

    /// Whether its mean over the step reached its saturation.
    pub fn saturated(&self, threshold_pct: f64) -> bool {
        let measured_or_estimated = self.source != ServerSource::None;
        measured_or_estimated
            && self
                .own
                .is_some_and(|own| own.mean >= self.saturation_pct(threshold_pct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::activity::ActivitySample;

    fn activity(cpu: &[u32]) -> Activity {
        let samples: Vec<ActivitySample> = cpu
            .iter()
            .map(|n| ActivitySample {
                events: vec![("CPU".to_owned(), *n), ("Timeout:PgSleep".to_owned(), 1)],
            })
            .collect();
        Activity::of(&samples).unwrap()
    }

    #[test]
    fn a_local_server_is_judged_on_its_own_cpus() {
        let server = MeanPeak {
            mean: 45.0,
            peak: Some(50.0),
        };
        // 45% of a 2-core host is 90% of the one CPU it may use.
        let cpu = ServerCpu::of(Some(server), Some(&activity(&[2])), 2.0, Some(1.0));
        assert_eq!(cpu.source, ServerSource::Local);
        assert_eq!(
            cpu.own,
            Some(MeanPeak {
                mean: 90.0,
                peak: Some(100.0)
            })
        );
        assert!(cpu.saturated(90.0));
        assert!(!cpu.saturated(91.0));
        // Without its CPUs known, all the host's: 45%.
        let whole = ServerCpu::of(Some(server), None, 2.0, None);
        assert_eq!((whole.cores, whole.own.unwrap().mean), (Some(2.0), 45.0));
        assert_eq!(whole.sessions_on_cpu, None);
    }

    #[test]
    fn the_estimate_is_saturated_when_sessions_on_cpu_reach_the_cores() {
        let two = ServerCpu::of(None, Some(&activity(&[1, 2, 3])), 2.0, Some(2.0));
        assert_eq!(two.source, ServerSource::SqlEstimate);
        assert_eq!(
            two.own,
            Some(MeanPeak {
                mean: 100.0,
                peak: Some(150.0)
            })
        );
        assert_eq!(two.sessions_on_cpu, Some(2.0));
        assert!(two.saturated(90.0));
        assert_eq!(two.saturation_pct(90.0), 100.0);
        // 1.8 sessions on CPU of 2 cores: 90%, which would fill a measured CPU, not the estimate.
        let under = ServerCpu::of(None, Some(&activity(&[2, 2, 2, 2, 1])), 2.0, Some(2.0));
        assert_eq!(under.own.unwrap().mean, 90.0);
        assert!(!under.saturated(90.0));
        // Two samples: no peak.
        let short = ServerCpu::of(None, Some(&activity(&[4, 4])), 2.0, Some(1.0));
        assert_eq!(short.own.unwrap().peak, None);
        assert!(short.saturated(90.0));
    }

    #[test]
    fn without_cores_the_estimate_is_logged_not_judged() {
        let cpu = ServerCpu::of(None, Some(&activity(&[5])), 2.0, None);
        assert_eq!(
            (cpu.source, cpu.own, cpu.sessions_on_cpu),
            (ServerSource::SqlEstimate, None, Some(5.0))
        );
        assert!(!cpu.saturated(90.0));
        let none = ServerCpu::of(None, None, 2.0, Some(1.0));
        assert_eq!(none, ServerCpu::default());
        assert_eq!(none.source, ServerSource::None);
        assert!(!none.saturated(90.0));
        // A source of none never saturates, whatever figures it carries.
        let stray = ServerCpu {
            own: Some(MeanPeak {
                mean: 500.0,
                peak: None,
            }),
            ..none
        };
        assert!(!stray.saturated(90.0));
    }

    #[test]
    fn sources_have_names_that_read_back() {
        for source in [
            ServerSource::Local,
            ServerSource::Watcher,
            ServerSource::SqlEstimate,
            ServerSource::None,
        ] {
            assert_eq!(ServerSource::from_name(source.name()), Some(source));
            assert_eq!(source.to_string(), source.name());
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(json, format!("\"{}\"", source.name()));
        }
        assert_eq!(ServerSource::from_name("remote"), None);
        assert!(ServerSource::Watcher.measured() && ServerSource::Local.measured());
        assert!(!ServerSource::SqlEstimate.measured() && !ServerSource::None.measured());
        assert_eq!(of_own_cpus(25.0, 4.0, 2.0), 50.0);
    }
}
