//! The CPUs this process may use: its affinity and the tightest cgroup quota above it.

use std::path::{Path, PathBuf};

use crate::model::facts::ClientCpus;

/// The CPUs of this process: every core of the host, and those its affinity and cgroup allow.
pub fn this_process() -> ClientCpus {
    let host_cores = host_cores() as f64;
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

/// Cores the host has (not only those this process may use): the denominator of "% of all cores".
pub fn host_cores() -> usize {
    let listed = std::fs::read_to_string("/proc/stat")
        .map(|stat| {
            stat.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
        })
        .unwrap_or(0);
    listed.max(num_cpus::get()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
