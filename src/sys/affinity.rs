//! CPU sets: lists as the kernel writes them (`0-3,5`), the split of this process's CPUs
//! between the throwaway server and pgstress, and pinning a process (all its threads) or a
//! child about to exec.

use std::collections::BTreeSet;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::model::plan::CpuChoice;

/// Parses a CPU list: `0-3`, `4,5`, `0-1,6` (the format of `Cpus_allowed_list` and taskset -c).
pub fn parse_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = BTreeSet::new();
    for part in text.trim().split(',').map(str::trim) {
        let number = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}` is not a CPU list like 0-3 or 4,5"))
        };
        match part.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(format!("`{part}`: a range goes from low to high"));
                }
                cpus.extend(low..=high);
            }
            None => {
                cpus.insert(number(part)?);
            }
        }
    }
    if cpus.iter().any(|&cpu| cpu >= CpuSet::count()) {
        return Err(format!("`{text}`: no such CPU"));
    }
    Ok(cpus.into_iter().collect())
}

/// Writes a CPU list the kernel's way: `0-3,5`.
pub fn format_list(cpus: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut index = 0;
    while index < sorted.len() {
        let start = sorted[index];
        let mut end = start;
        while index + 1 < sorted.len() && sorted[index + 1] == end + 1 {
            index += 1;
            end = sorted[index];
        }
        parts.push(match start == end {
            true => start.to_string(),
            false => format!("{start}-{end}"),
        });
        index += 1;
    }
    parts.join(",")
}

/// The default split of `available` CPUs (two or more): pgstress takes the lower half, the
/// server the upper and larger half. None with fewer than two CPUs: nothing to split.
pub fn split(available: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    if available.len() < 2 {
        return None;
    }
    let client_count = available.len() / 2;
    let client = available[..client_count].to_vec();
    let server = available[client_count..].to_vec();
    Some((client, server))
}

/// The CPUs this process may run on now (its calling thread's affinity).
pub fn available() -> Vec<usize> {
    sched_getaffinity(Pid::from_raw(0))
        .map(|set| members(&set))
        .unwrap_or_default()
}

fn members(set: &CpuSet) -> Vec<usize> {
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// A CPU set of a list; fails on a CPU the set cannot hold.
pub fn cpu_set(cpus: &[usize]) -> nix::Result<CpuSet> {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        set.set(cpu)?;
    }
    Ok(set)
}

/// Pins every thread of this process to `cpus`: the threads running now (sched_setaffinity
/// applies to one thread) and, through them, every thread they start later.
pub fn pin_this_process(cpus: &[usize]) -> std::io::Result<()> {
    let set = cpu_set(cpus).map_err(std::io::Error::from)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)?;
    let tasks = std::fs::read_dir("/proc/self/task")?;
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            // A thread that has ended since the listing is no error.
            let _ = sched_setaffinity(Pid::from_raw(tid), &set);
        }
    }
    Ok(())
}

/// The CPUs a process may run on, from `Cpus_allowed_list` in /proc/PID/status.
pub fn allowed_of(pid: u32) -> Option<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    allowed_in_status(&status)
}

/// `Cpus_allowed_list` of a /proc/PID/status text.
pub fn allowed_in_status(status: &str) -> Option<Vec<usize>> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| parse_list(list).ok())
}

/// Whether two CPU lists have a CPU in common.
pub fn overlap(a: &[usize], b: &[usize]) -> bool {
    a.iter().any(|cpu| b.contains(cpu))
}

/// `(client, server)` CPU lists.
pub type Placement = (Vec<usize>, Vec<usize>);

/// Where each side runs, from the choice and the CPUs available: `(client, server)` lists to
/// pin, or None to pin nothing (`--no-pin`, or a single CPU).
pub fn resolve(choice: &CpuChoice, available: &[usize]) -> Result<Option<Placement>, String> {
    let (server, client) = match choice {
        CpuChoice::NoPin => return Ok(None),
        CpuChoice::Split => return Ok(split(available)),
        CpuChoice::Lists { server, client } => (server, client),
    };
    let rest = |taken: &[usize]| -> Vec<usize> {
        available
            .iter()
            .copied()
            .filter(|cpu| !taken.contains(cpu))
            .collect()
    };
    let server = server
        .clone()
        .unwrap_or_else(|| rest(client.as_deref().unwrap_or(&[])));
    let client = client.clone().unwrap_or_else(|| rest(&server));
    for (side, cpus) in [("--server-cpus", &server), ("--client-cpus", &client)] {
        if cpus.is_empty() {
            return Err(format!(
                "{side}: no CPU left for this side of the {} pgstress may use ({})",
                available.len(),
                format_list(available)
            ));
        }
        if let Some(cpu) = cpus.iter().find(|cpu| !available.contains(cpu)) {
            return Err(format!(
                "{side}: CPU {cpu} is not one pgstress may use ({})",
                format_list(available)
            ));
        }
    }
    Ok(Some((client, server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_given_leave_the_rest_to_the_other_side() {
        let lists = |server: Option<Vec<usize>>, client: Option<Vec<usize>>| CpuChoice::Lists {
            server,
            client,
        };
        let four = [0, 1, 2, 3];
        assert_eq!(
            resolve(&lists(Some(vec![3]), None), &four),
            Ok(Some((vec![0, 1, 2], vec![3])))
        );
        assert_eq!(
            resolve(&lists(None, Some(vec![0])), &four),
            Ok(Some((vec![0], vec![1, 2, 3])))
        );
        assert!(resolve(&lists(Some(vec![0, 1, 2, 3]), None), &four).is_err());
        assert!(resolve(&lists(Some(vec![7]), None), &four).is_err());
        assert_eq!(resolve(&CpuChoice::NoPin, &four), Ok(None));
        assert_eq!(resolve(&CpuChoice::Split, &[0]), Ok(None));
    }

    #[test]
    fn lists_parse_as_the_kernel_and_taskset_write_them() {
        assert_eq!(parse_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_list("4,5").unwrap(), vec![4, 5]);
        assert_eq!(parse_list(" 0-1,6\n").unwrap(), vec![0, 1, 6]);
        assert_eq!(parse_list("3,1,1").unwrap(), vec![1, 3]);
        assert!(parse_list("").is_err());
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("a").is_err());
        assert!(parse_list("1-").is_err());
        assert!(parse_list("100000").is_err());
    }

    #[test]
    fn lists_are_written_back_in_ranges() {
        assert_eq!(format_list(&[0, 1, 2, 3, 5]), "0-3,5");
        assert_eq!(format_list(&[5, 4]), "4-5");
        assert_eq!(format_list(&[7]), "7");
        assert_eq!(format_list(&[]), "");
    }

    #[test]
    fn the_server_takes_the_larger_half() {
        assert_eq!(split(&[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(split(&[0, 1, 2]), Some((vec![0], vec![1, 2])));
        assert_eq!(split(&[2, 3, 6, 7]), Some((vec![2, 3], vec![6, 7])));
        assert_eq!(split(&[0]), None);
    }

    #[test]
    fn the_allowed_list_is_read_from_the_status() {
        let status = "Name:\tpostgres\nCpus_allowed:\t2\nCpus_allowed_list:\t1\nMems_allowed:\t1\n";
        assert_eq!(allowed_in_status(status), Some(vec![1]));
        assert_eq!(allowed_in_status("Name:\tx\n"), None);
        assert_eq!(allowed_of(std::process::id()), Some(available()));
        assert!(overlap(&[0, 1], &[1]) && !overlap(&[0], &[1]));
    }
}
