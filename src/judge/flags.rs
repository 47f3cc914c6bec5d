//! Diagnosis flags: per step, whether the numbers describe the server or the load generator.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::measure::stats::StepResult;
use crate::model::outcome::FailureClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// The client host's CPU peaked at the threshold, or pgstress used that share of its cores.
    ClientSaturated,
    /// The requests of the step did not start together.
    LaunchSpread,
    /// The step has more requests than the server accepts at once.
    OverMaxConnections,
    /// The local server's CPU peaked at the threshold.
    ServerSaturated,
    /// Rate mode: the client could not send the offered rate (requests dropped, or started
    /// late behind their schedule).
    RateNotMet,
    /// Some request threads could not be started: the client's thread or memory limit.
    SpawnFailed,
}

impl Flag {
    pub const ALL: [Flag; 6] = [
        Flag::ClientSaturated,
        Flag::LaunchSpread,
        Flag::OverMaxConnections,
        Flag::ServerSaturated,
        Flag::RateNotMet,
        Flag::SpawnFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flag::ClientSaturated => "client-saturated",
            Flag::LaunchSpread => "launch-spread",
            Flag::OverMaxConnections => "over-max-connections",
            Flag::ServerSaturated => "server-saturated",
            Flag::RateNotMet => "rate-not-met",
            Flag::SpawnFailed => "spawn-failed",
        }
    }

    /// Whether the flag says the step's whole load never reached the server (requests
    /// dropped, threads that never started): such a step cannot count towards the capacity.
    pub fn withholds_load(self) -> bool {
        matches!(self, Flag::RateNotMet | Flag::SpawnFailed)
    }

    /// Whether the flag says the load generator, not the server, may be the limit.
    pub fn is_client_limit(self) -> bool {
        matches!(
            self,
            Flag::ClientSaturated | Flag::LaunchSpread | Flag::RateNotMet | Flag::SpawnFailed
        )
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flags of a step, joined for a CSV field or a terminal line.
pub fn join(flags: &[Flag]) -> String {
    flags.iter().map(|f| f.name()).collect::<Vec<_>>().join(";")
}

/// When a flag is raised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU peak, in percent, from which a side counts as saturated.
    pub saturated_cpu_pct: f64,
    /// Launch spread above this share of the step's wall time...
    pub spread_ratio: f64,
    /// ...or above this duration raises `launch-spread`.
    pub spread_max: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            saturated_cpu_pct: 90.0,
            spread_ratio: 0.10,
            spread_max: Duration::from_millis(100),
        }
    }
}

/// The CPUs the client has and may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientCpus {
    /// All the host's cores: the denominator of the logged percentages.
    pub host_cores: f64,
    /// The cores this process may run on: its affinity mask, capped by a cgroup CPU quota.
    pub allowed_cores: f64,
}

impl ClientCpus {
    pub fn of_this_process() -> Self {
        let host_cores = crate::measure::sampler::cpu::host_cores() as f64;
        let affinity = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
            .map(|set| {
                (0..nix::sched::CpuSet::count())
                    .filter(|&i| set.is_set(i).unwrap_or(false))
                    .count()
            })
            .unwrap_or(host_cores as usize);
        let quota = std::fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|membership| cgroup_cpu_quota(Path::new("/sys/fs/cgroup"), &membership));
        ClientCpus {
            host_cores,
            allowed_cores: allowed_cores(affinity, quota),
        }
    }
}

/// Cores a process may use: its affinity count, capped by the cgroup quota when there is one.
pub fn allowed_cores(affinity: usize, cgroup_quota: Option<f64>) -> f64 {
    let affinity = affinity.max(1) as f64;
    cgroup_quota
        .map_or(affinity, |quota| affinity.min(quota))
        .max(0.01)
}

/// The tightest CPU quota, in cores, on this process's cgroup or any cgroup above it, read
/// from the hierarchy mounted at `root` for the membership in `/proc/self/cgroup`: cgroup v2's
/// `cpu.max`, or v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`.
pub fn cgroup_cpu_quota(root: &Path, membership: &str) -> Option<f64> {
    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    let mut quotas = Vec::new();
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            for dir in cgroup_and_ancestors(root, path) {
                quotas.extend(read(dir.join("cpu.max")).and_then(|text| cgroup_quota(&text)));
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            // v1 mounts the controller as "cpu,cpuacct", with "cpu" often a link to it.
            let Some(mount) = [controllers, "cpu", "cpu,cpuacct"]
                .iter()
                .map(|name| root.join(name))
                .find(|mount| mount.is_dir())
            else {
                continue;
            };
            for dir in cgroup_and_ancestors(&mount, path) {
                let quota = read(dir.join("cpu.cfs_quota_us"));
                let period = read(dir.join("cpu.cfs_period_us"));
                if let (Some(quota), Some(period)) = (quota, period) {
                    quotas.extend(cgroup_quota(&format!("{} {}", quota.trim(), period.trim())));
                }
            }
        }
    }
    quotas.into_iter().reduce(f64::min)
}

/// A cgroup's folder under `mount` and each one above it up to the mount itself.
fn cgroup_and_ancestors(mount: &Path, cgroup: &str) -> Vec<PathBuf> {
    let own = mount.join(cgroup.trim_start_matches('/'));
    own.ancestors()
        .take_while(|dir| dir.starts_with(mount))
        .map(Path::to_path_buf)
        .collect()
}

/// The CPU quota in cores from cgroup v2's `cpu.max` ("max 100000" means none; so does v1's
/// quota of -1).
pub fn cgroup_quota(cpu_max: &str) -> Option<f64> {
    let mut fields = cpu_max.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next()?.parse().ok()?;
    (period > 0.0 && quota > 0.0).then(|| quota / period)
}

/// What the mode promised for a step, against which it is judged.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepContext {
    /// The requests were meant to start together (burst): late starts are a client limit.
    pub starts_together: bool,
    /// The requests had due times (rate): drops and lag behind them are a client limit.
    pub scheduled: bool,
    /// At most this many requests at once, if the mode bounds it; else the measured peak.
    pub concurrency: Option<u32>,
    pub usable_connections: Option<u32>,
}

/// The flags of one step.
pub fn diagnose(
    step: &StepResult,
    context: &StepContext,
    cpus: &ClientCpus,
    t: &Thresholds,
) -> Vec<Flag> {
    let mut flags = Vec::new();
    let host_saturated = step
        .cpu
        .host
        .is_some_and(|host| host.peak >= t.saturated_cpu_pct);
    let process_saturated = step.cpu.process.is_some_and(|process| {
        let cores_used = process.peak / 100.0 * cpus.host_cores;
        cores_used >= t.saturated_cpu_pct / 100.0 * cpus.allowed_cores
    });
    if host_saturated || process_saturated {
        flags.push(Flag::ClientSaturated);
    }
    let spread = step.launch_spread.as_secs_f64();
    let late_start =
        spread > t.spread_max.as_secs_f64() || spread > t.spread_ratio * step.wall.as_secs_f64();
    if context.starts_together && late_start {
        flags.push(Flag::LaunchSpread);
    }
    let concurrency = context.concurrency.unwrap_or(step.peak_in_flight);
    if context
        .usable_connections
        .is_some_and(|usable| concurrency > usable)
    {
        flags.push(Flag::OverMaxConnections);
    }
    if step
        .cpu
        .server
        .is_some_and(|server| server.peak >= t.saturated_cpu_pct)
    {
        flags.push(Flag::ServerSaturated);
    }
    let lagging = step
        .queue_wait_ms(99.0)
        .is_some_and(|lag| lag > t.spread_max.as_secs_f64() * 1000.0);
    if context.scheduled && (step.dropped > 0 || lagging) {
        flags.push(Flag::RateNotMet);
    }
    if step.failures(FailureClass::Spawn) > 0 {
        flags.push(Flag::SpawnFailed);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::stats::{CpuSummary, MeanPeak};
    use crate::test_support::step_result;

    const TWO_CORES: ClientCpus = ClientCpus {
        host_cores: 2.0,
        allowed_cores: 2.0,
    };

    fn cpu(host: f64, process: f64, server: Option<f64>) -> CpuSummary {
        let series = |peak: f64| {
            Some(MeanPeak {
                mean: peak / 2.0,
                peak,
            })
        };
        CpuSummary {
            host: series(host),
            process: series(process),
            server: server.and_then(series),
        }
    }

    fn burst(usable_connections: Option<u32>) -> StepContext {
        StepContext {
            starts_together: true,
            scheduled: false,
            concurrency: None,
            usable_connections,
        }
    }

    fn step_with(cpu: CpuSummary, spread_ms: u64, wall_ms: u64, requests: u32) -> StepResult {
        let mut step = step_result(1, requests, 0);
        step.cpu = cpu;
        step.launch_spread = Duration::from_millis(spread_ms);
        step.wall = Duration::from_millis(wall_ms);
        step
    }

    #[test]
    fn quiet_step_has_no_flags() {
        let step = step_with(cpu(40.0, 10.0, Some(30.0)), 5, 500, 50);
        assert!(diagnose(&step, &burst(Some(97)), &TWO_CORES, &Thresholds::default()).is_empty());
    }

    #[test]
    fn busy_host_saturates_the_client() {
        let step = step_with(cpu(95.0, 10.0, None), 5, 500, 50);
        assert_eq!(
            diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()),
            vec![Flag::ClientSaturated]
        );
    }

    #[test]
    fn process_pinned_to_one_core_is_saturated_at_half_the_host() {
        // 46% of a 2-core host is 0.92 cores: saturated when pinned to one core, not otherwise.
        let step = step_with(cpu(50.0, 46.0, None), 5, 500, 50);
        let pinned = ClientCpus {
            host_cores: 2.0,
            allowed_cores: 1.0,
        };
        assert_eq!(
            diagnose(&step, &burst(None), &pinned, &Thresholds::default()),
            vec![Flag::ClientSaturated]
        );
        assert!(diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()).is_empty());
    }

    #[test]
    fn cgroup_quota_caps_the_allowed_cores() {
        assert_eq!(cgroup_quota("150000 100000"), Some(1.5));
        assert_eq!(cgroup_quota("max 100000"), None);
        assert_eq!(allowed_cores(4, Some(1.5)), 1.5);
        assert_eq!(allowed_cores(2, None), 2.0);
        assert_eq!(allowed_cores(1, Some(8.0)), 1.0);
    }

    #[test]
    fn the_tightest_quota_on_the_process_cgroup_or_above_it_counts() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        // v2: no quota on the process's own cgroup, 2 cores on its parent.
        write("cpu.max", "max 100000\n");
        write("ci/cpu.max", "200000 100000\n");
        write("ci/job/cpu.max", "max 100000\n");
        assert_eq!(cgroup_cpu_quota(root.path(), "0::/ci/job\n"), Some(2.0));
        assert_eq!(cgroup_cpu_quota(root.path(), "0::/\n"), None);
        // v1: the cpu controller's own hierarchy, half a core; -1 means none.
        write("cpu,cpuacct/docker/x/cpu.cfs_quota_us", "50000\n");
        write("cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n");
        write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
        write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
        let v1 = "12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n";
        assert_eq!(cgroup_cpu_quota(root.path(), v1), Some(0.5));
        assert_eq!(cgroup_cpu_quota(root.path(), "4:cpu,cpuacct:/\n"), None);
    }

    #[test]
    fn late_starts_raise_launch_spread() {
        let thresholds = Thresholds::default();
        // 120 ms is above the 100 ms bound even for a long step.
        let long = step_with(cpu(10.0, 5.0, None), 120, 10_000, 50);
        assert_eq!(
            diagnose(&long, &burst(None), &TWO_CORES, &thresholds),
            vec![Flag::LaunchSpread]
        );
        // 30 ms is above 10% of a 200 ms step.
        let short = step_with(cpu(10.0, 5.0, None), 30, 200, 50);
        assert_eq!(
            diagnose(&short, &burst(None), &TWO_CORES, &thresholds),
            vec![Flag::LaunchSpread]
        );
        let tight = step_with(cpu(10.0, 5.0, None), 10, 200, 50);
        assert!(diagnose(&tight, &burst(None), &TWO_CORES, &thresholds).is_empty());
    }

    #[test]
    fn step_above_usable_connections_is_flagged() {
        let mut step = step_with(cpu(10.0, 5.0, None), 1, 500, 98);
        step.peak_in_flight = 98;
        assert_eq!(
            diagnose(&step, &burst(Some(97)), &TWO_CORES, &Thresholds::default()),
            vec![Flag::OverMaxConnections]
        );
        assert!(diagnose(&step, &burst(Some(98)), &TWO_CORES, &Thresholds::default()).is_empty());
    }

    #[test]
    fn pool_is_judged_by_its_workers_not_its_queue() {
        let step = step_with(cpu(10.0, 5.0, None), 400, 500, 500);
        let pool = StepContext {
            starts_together: false,
            scheduled: false,
            concurrency: Some(90),
            usable_connections: Some(97),
        };
        assert!(diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()).is_empty());
    }

    #[test]
    fn drops_or_lag_in_rate_mode_mean_the_rate_was_not_met() {
        let rate = StepContext {
            starts_together: false,
            scheduled: true,
            concurrency: None,
            usable_connections: None,
        };
        let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
        assert!(diagnose(&step, &rate, &TWO_CORES, &Thresholds::default()).is_empty());
        step.dropped = 3;
        assert_eq!(
            diagnose(&step, &rate, &TWO_CORES, &Thresholds::default()),
            vec![Flag::RateNotMet]
        );
        assert!(Flag::RateNotMet.is_client_limit());
    }

    #[test]
    fn threads_that_could_not_start_are_a_client_limit() {
        let pool = StepContext::default();
        let mut step = step_with(cpu(10.0, 5.0, None), 1, 1000, 100);
        assert!(diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()).is_empty());
        step.by_class[FailureClass::Spawn.index()] = 4;
        step.failed = 4;
        assert_eq!(
            diagnose(&step, &pool, &TWO_CORES, &Thresholds::default()),
            vec![Flag::SpawnFailed]
        );
        assert!(Flag::SpawnFailed.is_client_limit());
    }

    #[test]
    fn busy_local_server_is_flagged() {
        let step = step_with(cpu(60.0, 5.0, Some(92.0)), 1, 500, 10);
        assert_eq!(
            diagnose(&step, &burst(None), &TWO_CORES, &Thresholds::default()),
            vec![Flag::ServerSaturated]
        );
    }
}
