use super::*;

#[test]
fn host_line_counts_idle_and_iowait_as_idle() {
    let ticks = HostTicks::parse("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
    assert_eq!(
        ticks,
        HostTicks {
            busy: 150,
            total: 1000
        }
    );
    let later = HostTicks {
        busy: 250,
        total: 1200,
    };
    assert_eq!(later.percent_since(&ticks), Some(50.0));
}

#[test]
fn host_share_needs_time_to_pass_and_counters_that_grew() {
    let earlier = HostTicks {
        busy: 100,
        total: 1000,
    };
    assert_eq!(earlier.percent_since(&earlier), None);
    let later = HostTicks {
        busy: 175,
        total: 1100,
    };
    assert_eq!(later.percent_since(&earlier), Some(75.0));
    assert_eq!(earlier.percent_since(&later), None, "a counter went back");
    let busy_back = HostTicks {
        busy: 50,
        total: 2000,
    };
    assert_eq!(busy_back.percent_since(&earlier), None);
}

#[test]
fn host_line_needs_five_numbers_and_reads_eight() {
    assert_eq!(
        HostTicks::parse("cpu 1 2 3 4 5"),
        Some(HostTicks { busy: 6, total: 15 })
    );
    assert_eq!(HostTicks::parse("cpu 1 2 3 4"), None);
    assert_eq!(HostTicks::parse("cpu 1 2 x 4 5"), None);
    // guest and guest_nice (fields 9 and 10) are already in user and nice.
    assert_eq!(
        HostTicks::parse("cpu 1 1 1 1 1 1 1 1 100 100").map(|t| t.total),
        Some(8)
    );
}

#[test]
fn clock_ticks_are_user_hz() {
    assert_eq!(ticks_per_second(), 100.0);
}

#[test]
fn the_client_cpus_are_summed_from_their_own_lines() {
    let stat = "cpu  9 9 9 9 9\ncpu0 10 0 0 90 0\ncpu1 50 0 0 50 0\ncpu2 1 0 0 1 0\n";
    assert_eq!(
        HostTicks::sum_of(stat, &[0, 1]),
        Some(HostTicks {
            busy: 60,
            total: 200
        })
    );
    assert_eq!(HostTicks::sum_of(stat, &[7]), None);
}

#[test]
fn per_core_line_is_not_the_host_line() {
    assert_eq!(HostTicks::parse("cpu0 1 2 3 4 5"), None);
}

#[test]
fn stat_times_survive_odd_command_names() {
    let stat = "42 (post gres) x) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0";
    assert_eq!(
        StatTimes::parse(stat),
        Some(StatTimes {
            utime: 7,
            stime: 3,
            cutime: 11,
            cstime: 13
        })
    );
}

/// This process's user and system time from getrusage, which counts every thread too.
fn rusage_seconds() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    seconds(usage.user_time()) + seconds(usage.system_time())
}

#[test]
fn own_cpu_is_the_processs_whole_cpu_time() {
    let mut spin = 0u64;
    for i in 0..20_000_000u64 {
        spin = spin.wrapping_add(i * i);
    }
    assert!(spin > 0);
    // Read between two readings of the same counter: within a tick of them.
    let before = own_cpu_seconds().unwrap();
    let usage = rusage_seconds();
    let after = own_cpu_seconds().unwrap();
    assert!(
        before - 0.011 <= usage && usage <= after + 0.011,
        "{before} {usage} {after}"
    );
    assert!(before > 0.001 && before <= after, "{before} {after}");
}

fn field(path: &str, n: usize) -> f64 {
    let text = fs::read_to_string(path).unwrap();
    text.split_whitespace().nth(n).unwrap().parse().unwrap()
}

/// The children of `pid` once `ready` holds for them, looked for every 20 ms for up to 60 s.
fn children_once(pid: u32, ready: impl Fn(&[u32]) -> bool) -> Vec<u32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let children = crate::sys::procfs::children(pid);
        if ready(&children) {
            return children;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the children of {pid}: {children:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether process `pid` sleeps (state S): its counters stand still.
fn sleeping(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") S "))
}

/// Kills a test's process, if it is still there.
fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn a_servers_cpu_is_its_own_its_live_childrens_and_its_reaped_ones() {
    // A "postmaster" that reaped a busy child and now waits on two sleeping ones: all of
    // them stand still, so the counters read the same however long the reads take.
    let mut shell = std::process::Command::new("sh")
        .args([
            "-c",
            "(i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done); sleep 60 & sleep 60 & wait",
        ])
        .spawn()
        .unwrap();
    let pid = shell.id();
    let children = children_once(pid, |children| {
        children.len() == 2 && children.iter().all(|&c| sleeping(c)) && sleeping(pid)
    });
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let times = StatTimes::parse(&stat).unwrap();
    let reaped = (times.cutime + times.cstime) as f64 / 100.0;
    let own = field(&format!("/proc/{pid}/schedstat"), 0) / 1e9;
    let live: f64 = children
        .iter()
        .map(|c| field(&format!("/proc/{c}/schedstat"), 0) / 1e9)
        .sum();
    let mut tree = ProcessTree::new(pid);
    let seconds = tree.cpu_seconds();
    let _ = shell.kill();
    children.into_iter().for_each(kill);
    let _ = shell.wait();
    assert!(
        reaped > 0.0 && own > 0.0 && live > 0.0,
        "{reaped} {own} {live}"
    );
    let expected = own + reaped + live;
    assert!(
        seconds.is_some_and(|s| (s - expected).abs() < 1e-9),
        "{seconds:?}, expected {own} + {reaped} + {live}"
    );
    assert_eq!(
        tree.cpu_seconds(),
        None,
        "gone: its kept files read no more"
    );
}

#[test]
fn a_child_is_read_from_the_second_settled_reading_on_and_at_once_by_a_full_one() {
    // A shell waiting on a sleeping child: every counter stands still between the reads.
    let mut shell = std::process::Command::new("sh")
        .args(["-c", "sleep 60 & wait"])
        .spawn()
        .unwrap();
    let pid = shell.id();
    let is_sleep =
        |c: u32| fs::read_to_string(format!("/proc/{c}/comm")).unwrap_or_default() == "sleep\n";
    let children = children_once(pid, |children| {
        matches!(children, [child] if sleeping(*child) && is_sleep(*child)) && sleeping(pid)
    });
    let child = children[0];
    let mut tree = ProcessTree::new(pid);
    let first = tree.cpu_seconds_of_settled().unwrap();
    let second = tree.cpu_seconds_of_settled().unwrap();
    let full = ProcessTree::new(pid).cpu_seconds().unwrap();
    let live = field(&format!("/proc/{child}/schedstat"), 0) / 1e9;
    kill(child);
    let _ = shell.kill();
    let _ = shell.wait();
    assert!(live > 0.0);
    assert!(
        (second - first - live).abs() < 1e-9,
        "first {first}, second {second}, the child {live}"
    );
    assert!((full - second).abs() < 1e-9, "full {full}, second {second}");
}

#[test]
fn the_client_cpus_are_read_from_proc_stat_kept_open() {
    let mut host = crate::sys::procfs::KeptFile::new("/proc/stat");
    let first = HostTicks::sum_of(host.read().unwrap(), &[0]).unwrap();
    // Every CPU's ticks advance 100 times a second, idle or busy.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let later = HostTicks::sum_of(&stat, &[0]).unwrap();
    assert!(first.total > 0 && first.busy <= first.total, "{first:?}");
    assert!(first.total < later.total && first.busy <= later.busy);
    // The kept file reads anew, not what it read first.
    let again = HostTicks::sum_of(host.read().unwrap(), &[0]).unwrap();
    assert!(again.total >= later.total, "{again:?} before {later:?}");
    let whole = HostTicks::of_stat(host.read().unwrap()).unwrap();
    assert!(whole.total >= again.total, "the whole host's ticks");
    assert_eq!(HostTicks::sum_of(host.read().unwrap(), &[usize::MAX]), None);
}

#[test]
fn own_process_has_cpu_time() {
    let mut spin = 0u64;
    for i in 0..5_000_000u64 {
        spin = spin.wrapping_add(i * i);
    }
    assert!(spin > 0);
    assert!(own_cpu_seconds().unwrap() > 0.0);
    assert!(ProcessTree::new(std::process::id()).cpu_seconds().unwrap() > 0.0);
}

#[test]
fn a_childs_file_is_kept_open_read_again_and_let_go_when_it_ends() {
    let mut shell = std::process::Command::new("sh")
        .args(["-c", "sleep 60 & wait; exec sleep 60"])
        .spawn()
        .unwrap();
    let pid = shell.id();
    let child = children_once(pid, |children| !children.is_empty())[0];
    let mut tree = ProcessTree::new(pid);
    assert!(tree.cpu_seconds().is_some());
    assert_eq!(tree.children.len(), 1);
    let through_file = tree.child_run_seconds(child).unwrap();
    assert_eq!(
        through_file,
        field(&format!("/proc/{child}/schedstat"), 0) / 1e9,
        "the kept file reads what a fresh open reads"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !tree.children.is_empty() {
        assert!(tree.cpu_seconds().is_some());
        assert!(std::time::Instant::now() < deadline, "the file was kept");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(tree.child_run_seconds(child), None, "gone");
    let _ = shell.kill();
    let _ = shell.wait();
}

#[test]
fn stat_times_give_own_and_reaped_seconds_and_schedstat_the_runnable_ones() {
    let times = StatTimes {
        utime: 150,
        stime: 50,
        cutime: 300,
        cstime: 100,
    };
    assert_eq!(times.own_seconds(100.0), 2.0);
    assert_eq!(times.reaped_seconds(100.0), 4.0);
    assert_eq!(times.own_seconds(50.0), 4.0);
    assert_eq!(
        parse_runnable_seconds("2000000000 500000000 7\n"),
        Some(2.5)
    );
    assert_eq!(parse_run_seconds("2000000000 500000000 7\n"), Some(2.0));
    assert_eq!(parse_runnable_seconds("2000000000"), None);
    // A sleeping process's counters stand still: read through the function and by hand.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let by_hand = fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    let runnable = runnable_seconds(pid);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(runnable, parse_runnable_seconds(&by_hand));
    assert!(runnable.is_some_and(|seconds| seconds > 0.0 && seconds < 1.0));
}
