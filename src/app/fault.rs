//! The fault pgstress causes on its throwaway server during the load (`--fault`): armed as
//! the load starts, caused on a thread of its own at its time, its own instants said at the
//! end so that the outage measured can be read against what was done.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::model::fault::{Fault, FaultKind};
use crate::pg::local::server::ThrowawayServer;

/// The servers pgstress started for the run: the primary, and its standby (`--standby`).
pub struct Servers {
    pub primary: Arc<Mutex<ThrowawayServer>>,
    pub standby: Option<Arc<Mutex<ThrowawayServer>>>,
}

impl Servers {
    pub fn new(primary: ThrowawayServer, standby: Option<ThrowawayServer>) -> Self {
        let shared = |server| Arc::new(Mutex::new(server));
        Servers {
            primary: shared(primary),
            standby: standby.map(shared),
        }
    }

    /// The primary's postmaster (the one whose CPU is sampled).
    pub fn postmaster_pid(&self) -> u32 {
        lock(&self.primary).postmaster_pid()
    }

    /// The run's target: the primary, or with a standby both hosts, the writable one chosen
    /// at each connection (`target_session_attrs=read-write`), so that the load follows a
    /// failover.
    pub fn target(&self) -> crate::pg::target::ConnectTarget {
        let primary = lock(&self.primary);
        let Some(standby) = &self.standby else {
            return primary.target();
        };
        let dsn = format!(
            "host=127.0.0.1,127.0.0.1 port={},{} user=postgres password={} dbname=postgres \
             sslmode=disable target_session_attrs=read-write",
            primary.port(),
            lock(standby).port(),
            primary.password()
        );
        crate::pg::target::ConnectTarget::parse(&dsn, None)
            .expect("a DSN of two loopback hosts parses")
    }

    /// Stops and removes both, the standby first; what was stopped, for the terminal.
    pub fn stop(self) -> Vec<&'static str> {
        let mut stopped = Vec::new();
        let own = |server: Arc<Mutex<ThrowawayServer>>| {
            Arc::into_inner(server).map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()))
        };
        if let Some(standby) = self.standby.and_then(own) {
            standby.stop();
            stopped.push("throwaway standby stopped and removed");
        }
        if let Some(primary) = own(self.primary) {
            primary.stop();
            stopped.push("throwaway server stopped and removed");
        }
        stopped
    }
}

/// A fault waiting for its time, or being caused.
pub struct Armed {
    /// Dropped when the run ends: a fault not yet caused is not, a freeze ends at once.
    cancel: Sender<()>,
    thread: JoinHandle<String>,
    mark: FaultMark,
}

/// The fault's own instants, once they came: when it was caused, and when it was done (the
/// restarted server answered, the standby was promoted, the frozen server resumed, the
/// sessions were terminated). Every step they reach into is the fault's, whose outage is
/// pgstress's doing, never the server's breaking point.
#[derive(Clone)]
pub struct FaultMark {
    pub fault: Fault,
    pub caused: Arc<OnceLock<Instant>>,
    pub done: Arc<OnceLock<Instant>>,
}

/// Whether the fault reaches into a step, and from where.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    /// Caused while the step ran.
    During,
    /// Caused before the step's release (in the pause before it, or in an earlier step whose
    /// outage ran on into it).
    Before,
}

impl FaultMark {
    /// How the fault reaches a step released at `released` that ended at `ended`, `since` the
    /// previous step ended (None: the load's start); `open` whether the fault's interval was
    /// still open when the previous step ended (`still_open`).
    pub fn reach(
        &self,
        since: Option<Instant>,
        (released, ended): (Instant, Instant),
        open: bool,
    ) -> Option<Reach> {
        let at = *self.caused.get()?;
        if at > ended || since.is_some_and(|since| at < since) && !open {
            return None;
        }
        Some(match at >= released {
            true => Reach::During,
            false => Reach::Before,
        })
    }

    /// Whether the fault's interval runs on past a step it reached that ended at `ended`:
    /// the fault was not done by then, or throughput was not back (`back`) in the step.
    pub fn still_open(&self, ended: Instant, back: bool) -> bool {
        !back || self.done.get().is_none_or(|done| *done > ended)
    }
}

/// Arms the run's fault, if it has one, on its throwaway server.
pub fn arm_for(fault: Option<Fault>, servers: Option<&Servers>, sessions: &str) -> Option<Armed> {
    let (fault, servers) = fault.zip(servers)?;
    let servers = Servers {
        primary: Arc::clone(&servers.primary),
        standby: servers.standby.clone(),
    };
    Some(arm(fault, servers, sessions.to_owned()))
}

/// Arms `fault` on `server` from now (the load's start); `sessions` names the run's requests.
pub fn arm(fault: Fault, servers: Servers, sessions: String) -> Armed {
    let origin = Instant::now();
    let (cancel, cancelled) = crossbeam_channel::bounded(1);
    let mark = FaultMark {
        fault,
        caused: Arc::new(OnceLock::new()),
        done: Arc::new(OnceLock::new()),
    };
    let (caused, done) = (Arc::clone(&mark.caused), Arc::clone(&mark.done));
    let thread = std::thread::spawn(move || {
        let said = cause(fault, &servers, &sessions, &cancelled, (origin, &caused));
        done.get_or_init(Instant::now);
        said
    });
    Armed {
        cancel,
        thread,
        mark,
    }
}

impl Armed {
    pub fn mark(&self) -> FaultMark {
        self.mark.clone()
    }

    /// What was done and when, from the load's start, once the thread is done.
    pub fn disarm(self) -> String {
        drop(self.cancel);
        (self.thread.join()).unwrap_or_else(|_| "fault: its thread panicked".to_owned())
    }
}

/// Ends the run's fault (if any) and says what it did; `ramp` passes through.
pub fn disarm<T, W: std::io::Write>(
    fault: Option<Armed>,
    printer: &mut crate::output::printer::Printer<W>,
    ramp: T,
) -> T {
    if let Some(fault) = fault {
        printer.note(fault.disarm());
    }
    ramp
}

fn lock(server: &Mutex<ThrowawayServer>) -> MutexGuard<'_, ThrowawayServer> {
    server
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cause(
    fault: Fault,
    servers: &Servers,
    sessions: &str,
    cancelled: &Receiver<()>,
    (origin, caused): (Instant, &OnceLock<Instant>),
) -> String {
    if cancelled.recv_timeout(fault.at) != Err(RecvTimeoutError::Timeout) {
        return format!("fault {fault}: not caused, the load ended first");
    }
    let at = |instant: Instant| format!("{:.3} s", (instant - origin).as_secs_f64());
    let began = *caused.get_or_init(Instant::now);
    let server = &servers.primary;
    match fault.kind {
        FaultKind::Failover => {
            lock(server).stop_immediately();
            let stopped = Instant::now();
            let promoted = match &servers.standby {
                Some(standby) => lock(standby).promote(),
                None => Err("no standby to promote".to_owned()),
            };
            match promoted {
                Ok(()) => format!(
                    "fault {fault}: primary stopped (immediate) at {} to {}, the standby promoted at {}",
                    at(began),
                    at(stopped),
                    at(Instant::now())
                ),
                Err(err) => format!(
                    "fault {fault}: primary stopped at {}, not promoted: {err}",
                    at(began)
                ),
            }
        }
        FaultKind::Restart => match lock(server).restart() {
            Ok(()) => format!(
                "fault {fault}: fast stop sent at {}, the new server answered at {}",
                at(began),
                at(Instant::now())
            ),
            Err(err) => format!(
                "fault {fault}: stopped at {}, not started again: {err}",
                at(began)
            ),
        },
        FaultKind::KillBackends => {
            let target = lock(server).target();
            let killed = target
                .connect(Duration::from_secs(10), "pgstress-fault")
                .map_err(|err| err.to_string())
                .and_then(|mut client| {
                    client
                        .query_one(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                             WHERE application_name = $1 AND pid <> pg_backend_pid()",
                            &[&sessions],
                        )
                        .map(|row| row.get::<_, i64>(0))
                        .map_err(|err| err.to_string())
                });
            match killed {
                Ok(n) => format!("fault {fault}: {n} sessions terminated at {}", at(began)),
                Err(err) => format!("fault {fault}: not caused at {}: {err}", at(began)),
            }
        }
        FaultKind::Freeze(down) => {
            lock(server).freeze(down, cancelled);
            format!(
                "fault {fault}: server stopped (SIGSTOP) at {}, resumed (SIGCONT) at {}",
                at(began),
                at(Instant::now())
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mark for `restart@1s`, caused at `caused` and done at `done` (None: not yet).
    fn mark(caused: Option<Instant>, done: Option<Instant>) -> FaultMark {
        let mark = FaultMark {
            fault: "restart@1s".parse().unwrap(),
            caused: Arc::new(OnceLock::new()),
            done: Arc::new(OnceLock::new()),
        };
        caused.map(|at| mark.caused.set(at));
        done.map(|at| mark.done.set(at));
        mark
    }

    #[test]
    fn the_faults_instants_decide_which_steps_it_reaches() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Step 1 from 0 to 4 s, a pause, step 2 from 7 s to 11 s, step 3 from 11 s to 15 s.
        let (step_1, step_2, step_3) = (
            (at(0), at(4_000)),
            (at(7_000), at(11_000)),
            (at(11_000), at(15_000)),
        );
        assert_eq!(
            mark(None, None).reach(None, step_1, false),
            None,
            "not caused"
        );
        let during = mark(Some(at(2_000)), Some(at(2_500)));
        assert_eq!(during.reach(None, step_1, false), Some(Reach::During));
        assert_eq!(during.reach(Some(at(4_000)), step_2, false), None, "closed");
        assert_eq!(
            during.reach(Some(at(4_000)), step_2, true),
            Some(Reach::Before),
            "its outage ran on past step 1"
        );
        let paused = mark(Some(at(5_000)), Some(at(8_000)));
        assert_eq!(paused.reach(None, step_1, false), None, "after step 1");
        assert_eq!(
            paused.reach(Some(at(4_000)), step_2, false),
            Some(Reach::Before)
        );
        // Open past a step while not done, or while throughput was not back.
        assert!(paused.still_open(at(4_000), true));
        assert!(!paused.still_open(step_2.1, true));
        assert!(paused.still_open(step_2.1, false));
        assert_eq!(paused.reach(Some(step_2.1), step_3, false), None);
    }
}
