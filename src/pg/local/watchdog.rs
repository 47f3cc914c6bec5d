//! A throwaway server must not outlive pgstress, however pgstress ends, SIGKILL included.
//!
//! Two guards. A watchdog process per server, started before initdb, blocks on a pipe whose
//! only writer is pgstress: the kernel closes that pipe when pgstress exits, whatever the
//! cause, so the watchdog wakes (no polling, no pid that could be reused) and stops the
//! postmaster and removes the folder. The pipe is used rather than PR_SET_PDEATHSIG on the
//! postmaster because the death signal fires when the *thread* that spawned the child ends,
//! not the process (a server started from a short-lived thread, as the tests do, would die
//! with it), and because it could only kill the postmaster, never remove the folder.
//! Second, a marker in each folder names the pgstress process that owns it (pid and start
//! time): a later start removes the servers whose owner no longer runs, for when the
//! watchdog itself was killed too (a whole cgroup killed, a reboot of a container's tmp).

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Names the pgstress process that owns a throwaway folder: "PID START_TIME".
const MARKER: &str = "pgstress.owner";
/// The watchdog's $0, so that it is recognisable in `ps`.
pub const WATCHDOG_NAME: &str = "pgstress-watchdog";
/// The pid files of the processes a throwaway folder may hold, each in `folder/data`: a
/// postmaster, a PgBouncer.
pub const PID_FILES: [&str; 2] = ["postmaster.pid", "pgbouncer.pid"];
/// Time for a leftover postmaster to obey an immediate shutdown before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Time for a dismissed watchdog, which finds nothing left to do, to exit.
const DISMISS_DEADLINE: Duration = Duration::from_secs(5);

/// Runs in `sh` with $1 the folder. `read` returns only at end of file: pgstress is gone. The
/// postmaster is identified by its pid file *and* its working folder (the data folder), so a
/// reused pid is never signalled. SIGQUIT is an immediate shutdown: the data is thrown away.
const SCRIPT: &str = r#"
trap '' HUP INT
folder=$1
while read -r _line; do :; done
pidfile=$folder/data/${2:-postmaster.pid}
if [ -r "$pidfile" ]; then
  read -r pid < "$pidfile"
  if [ "$(readlink "/proc/$pid/cwd")" = "$folder/data" ]; then
    kill -QUIT "$pid" 2>/dev/null
    n=0
    while [ "$(readlink "/proc/$pid/cwd")" = "$folder/data" ] && [ "$n" -lt 100 ]; do
      sleep 0.1
      n=$((n + 1))
    done
    if [ "$(readlink "/proc/$pid/cwd")" = "$folder/data" ]; then
      kill -KILL "$pid" $(cat "/proc/$pid/task/$pid/children" 2>/dev/null) 2>/dev/null
    fi
  fi
fi
rm -rf "$folder"
"#;

/// The watchdog of one throwaway folder; dismissed once the server is stopped and removed.
pub struct Watchdog {
    child: Option<Child>,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Marks `folder` as this process's and starts its watchdog.
    pub fn start(folder: &Path) -> io::Result<Self> {
        Self::start_for(folder, PID_FILES[0])
    }

    /// The same for a process other than a postmaster (a pooler) that also works in
    /// `folder/data` and writes its pid to `folder/data/pid_file`.
    pub fn start_for(folder: &Path, pid_file: &str) -> io::Result<Self> {
        let folder = fs::canonicalize(folder)?;
        let (pid, start) = this_process();
        fs::write(folder.join(MARKER), format!("{pid} {start}\n"))?;
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(SCRIPT)
            .arg(WATCHDOG_NAME)
            .arg(&folder)
            .arg(pid_file)
            .current_dir("/")
            // Its own process group: a Ctrl-C or hangup meant for pgstress does not reach it.
            .process_group(0)
            .stdin(Stdio::piped())
            // Not pgstress's output: whoever reads that (a pipe, a test) would wait for it.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn()?;
        // std opens the pipe close-on-exec: no server process inherits the writing end, so
        // this process is the only writer and its end is the pipe's end.
        let pipe = child.stdin.take();
        Ok(Watchdog {
            child: Some(child),
            pipe,
        })
    }

    /// Lets the watchdog go once the server is stopped and its folder removed: it wakes,
    /// finds nothing left, and exits; it is reaped here within a deadline.
    pub fn dismiss(&mut self) {
        drop(self.pipe.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + DISMISS_DEADLINE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.dismiss();
    }
}

/// Removes the throwaway servers (postmaster and folder) in the temporary folder whose
/// pgstress process no longer runs; one line per server, saying what was removed.
pub fn remove_leftovers() -> Vec<String> {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("pgstress-"))
        .filter_map(|entry| remove_if_orphaned(&entry.path()))
        .collect()
}

/// A folder without a marker is left alone: another pgstress may be creating it right now,
/// or it is not ours to judge (an older pgstress, another user's folder we cannot read).
fn remove_if_orphaned(folder: &Path) -> Option<String> {
    if !marked_by_us(folder) {
        return None;
    }
    let marker = fs::read_to_string(folder.join(MARKER)).ok()?;
    let mut fields = marker.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (fields.next(), fields.next()) else {
        return None;
    };
    if start_time(pid) == Some(start) {
        return None;
    }
    let stopped = match stop_postmaster_in(folder) {
        Some(postmaster) => format!("its postmaster {postmaster} stopped"),
        None => "no server was running".to_owned(),
    };
    Some(match fs::remove_dir_all(folder) {
        Ok(()) => format!(
            "removed a throwaway server left by pgstress process {pid}, which no longer runs: {} ({stopped})",
            folder.display()
        ),
        Err(err) => format!(
            "found a throwaway server left by pgstress process {pid}, which no longer runs, \
             but cannot remove {} ({stopped}): {err}",
            folder.display()
        ),
    })
}

/// Whether `folder` is a real folder (not a link) holding a marker that our own OS user wrote.
/// Another local user can make a /tmp/pgstress-* folder, but not a file owned by us: without
/// this, a planted marker and a `data` link to another cluster's data folder would have us
/// stop that cluster (as root, any cluster of the machine).
fn marked_by_us(folder: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let is_dir = fs::symlink_metadata(folder).is_ok_and(|meta| meta.is_dir());
    let marker = fs::symlink_metadata(folder.join(MARKER));
    is_dir && marker.is_ok_and(|meta| meta.is_file() && meta.uid() == me)
}

/// Stops the postmaster whose data folder is `folder/data`, if one runs; its pid.
fn stop_postmaster_in(folder: &Path) -> Option<u32> {
    let data = fs::canonicalize(folder).ok()?.join("data");
    // A link would lead to some other folder, whose postmaster is not ours to stop.
    if !fs::symlink_metadata(&data).is_ok_and(|meta| meta.is_dir()) {
        return None;
    }
    let pid: u32 = PID_FILES.iter().find_map(|name| {
        let text = fs::read_to_string(data.join(name)).ok()?;
        text.lines().next()?.trim().parse().ok()
    })?;
    if !runs_in(pid, &data) {
        return None;
    }
    let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGQUIT);
    let deadline = Instant::now() + STOP_DEADLINE;
    while runs_in(pid, &data) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if runs_in(pid, &data) {
        let mut family = crate::sys::procfs::children(pid);
        family.push(pid);
        for member in family {
            let _ = signal::kill(Pid::from_raw(member as i32), Signal::SIGKILL);
        }
    }
    Some(pid)
}

/// Whether process `pid` is alive with `dir` as its working folder: a postmaster works in its
/// data folder, so this tells it from a process that took over its pid.
fn runs_in(pid: u32, dir: &Path) -> bool {
    fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

fn this_process() -> (u64, u64) {
    let pid = u64::from(std::process::id());
    (pid, start_time(pid).unwrap_or(0))
}

/// When a live process started (clock ticks after boot, field 22 of /proc/PID/stat); None when
/// no such process runs (a zombie counts as gone). The pair (pid, start) names one process.
fn start_time(pid: u64) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_by_its_pid_and_start_time() {
        let (pid, start) = this_process();
        assert!(start > 0);
        assert_eq!(start_time(pid), Some(start));
        let mut child = Command::new("true").spawn().unwrap();
        let gone = u64::from(child.id());
        child.wait().unwrap();
        assert_eq!(start_time(gone), None);
    }

    #[test]
    fn a_folder_of_a_live_owner_or_without_marker_is_left_alone() {
        let folder = tempfile::tempdir().unwrap();
        assert_eq!(remove_if_orphaned(folder.path()), None);
        let (pid, start) = this_process();
        fs::write(folder.path().join(MARKER), format!("{pid} {start}\n")).unwrap();
        assert_eq!(remove_if_orphaned(folder.path()), None);
        assert!(folder.path().exists());
        // The same pid with another start time is another process: this owner is gone.
        fs::write(folder.path().join(MARKER), format!("{pid} {}\n", start + 1)).unwrap();
        let said = remove_if_orphaned(folder.path()).unwrap();
        assert!(said.starts_with("removed a throwaway server"), "{said}");
        assert!(said.contains("no server was running"), "{said}");
        assert!(!folder.path().exists());
    }

    #[test]
    fn a_marker_that_is_a_link_or_another_users_is_not_ours() {
        let folder = tempfile::tempdir().unwrap();
        let elsewhere = folder.path().join("elsewhere");
        fs::write(&elsewhere, format!("{} 1\n", std::process::id())).unwrap();
        std::os::unix::fs::symlink(&elsewhere, folder.path().join(MARKER)).unwrap();
        assert_eq!(remove_if_orphaned(folder.path()), None);
        assert!(folder.path().exists());
        // A marker of a gone owner, written by another OS user (only root can set that up).
        if nix::unistd::geteuid().is_root() {
            fs::remove_file(folder.path().join(MARKER)).unwrap();
            fs::rename(&elsewhere, folder.path().join(MARKER)).unwrap();
            let nobody = nix::unistd::Uid::from_raw(65534);
            nix::unistd::chown(&folder.path().join(MARKER), Some(nobody), None).unwrap();
            assert_eq!(remove_if_orphaned(folder.path()), None);
            assert!(folder.path().exists());
        }
    }
}
