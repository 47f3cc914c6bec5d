//! The fault pgstress causes on its throwaway server during the load (`--fault`): armed as
//! the load starts, caused on a thread of its own at its time, its own instants said at the
//! end so that the outage measured can be read against what was done.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::model::fault::{Fault, FaultKind};
use crate::pg::local::server::ThrowawayServer;

/// A fault waiting for its time, or being caused.
pub struct Armed {
    /// Dropped when the run ends: a fault not yet caused is not, a freeze ends at once.
    cancel: Sender<()>,
    thread: JoinHandle<String>,
}

/// Arms the run's fault, if it has one, on its throwaway server.
pub fn arm_for(
    fault: Option<Fault>,
    server: Option<&Arc<Mutex<ThrowawayServer>>>,
    sessions: &str,
) -> Option<Armed> {
    let (fault, server) = fault.zip(server)?;
    Some(arm(fault, Arc::clone(server), sessions.to_owned()))
}

/// Arms `fault` on `server` from now (the load's start); `sessions` names the run's requests.
pub fn arm(fault: Fault, server: Arc<Mutex<ThrowawayServer>>, sessions: String) -> Armed {
    let origin = Instant::now();
    let (cancel, cancelled) = crossbeam_channel::bounded(1);
    let thread = std::thread::spawn(move || cause(fault, &server, &sessions, &cancelled, origin));
    Armed { cancel, thread }
}

impl Armed {
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
    server: &Mutex<ThrowawayServer>,
    sessions: &str,
    cancelled: &Receiver<()>,
    origin: Instant,
) -> String {
    if cancelled.recv_timeout(fault.at) != Err(RecvTimeoutError::Timeout) {
        return format!("fault {fault}: not caused, the load ended first");
    }
    let at = |instant: Instant| format!("{:.3} s", (instant - origin).as_secs_f64());
    let began = Instant::now();
    match fault.kind {
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
