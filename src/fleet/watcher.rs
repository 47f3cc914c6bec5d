//! The watcher's side (`pgstress watch`, on the server's host): dial the run as an agent
//! dials its coordinator, say what host and server it watches, then answer each of the run's
//! requests for a reading with the host's counters, until the run says it is over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FleetError;
use super::frame::{self, HANDSHAKE_FRAME};
use super::introduce::{self, Joining};
use crate::measure::sampler::host_watch::HostWatch;
use crate::model::watch::{WatchReading, WatchedHost};

/// Silence after which the watcher counts the run as gone: the run asks for a reading every
/// `--sample-every` from its first step to its last, and between its steps too.
pub const RUN_SILENT_FOR: Duration = Duration::from_secs(120);
/// The most the watcher may send in one message: a reading is some hundred bytes and a line
/// per disk.
pub const FROM_WATCHER: usize = 64 * 1024;

/// From the run to its watcher.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWatcher {
    /// Read the counters now; at a step's edge (`edge`), every backend too.
    Read { edge: bool },
    /// The run is over: the watcher exits.
    Finish,
}

/// From a watcher to the run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWatcher {
    /// The host and server watched, once, right after the welcome.
    Ready(WatchedHost),
    Reading(Box<WatchReading>),
    /// The watcher stops, and why (its server is gone).
    Refused {
        reason: String,
    },
}

/// Joins the run at `run` and answers its requests with `watch`'s readings until it ends.
/// `said` is told of what happens, a line each.
pub fn serve(
    run: &str,
    name: &str,
    token: Option<&str>,
    mut watch: HostWatch,
    said: &mut dyn FnMut(String),
) -> Result<(), FleetError> {
    let (mut stream, peer) = introduce::join(run, name, token, Joining::Watcher)?;
    let host = watch.host();
    said(format!(
        "watcher {name} joined the run at {peer}: postmaster {} on {} of the {} CPUs of {}",
        host.postmaster_pid, host.server_cpus, host.host_cores, host.host
    ));
    frame::send(&mut stream, &FromWatcher::Ready(host), super::LOST_AFTER)?;
    loop {
        let lost = |err: FleetError| FleetError::Lost(format!("lost the run at {peer}: {err}"));
        let asked = frame::receive::<ToWatcher>(&mut stream, RUN_SILENT_FOR, HANDSHAKE_FRAME)
            .map_err(lost)?;
        let answer = match asked {
            ToWatcher::Finish => return Ok(()),
            ToWatcher::Read { .. } if !watch.alive() => {
                let reason = "the server's postmaster is gone".to_owned();
                let refusal = FromWatcher::Refused {
                    reason: reason.clone(),
                };
                let _ = frame::send(&mut stream, &refusal, super::LOST_AFTER);
                return Err(FleetError::Refused(reason));
            }
            ToWatcher::Read { edge } => FromWatcher::Reading(Box::new(watch.read(edge))),
        };
        frame::send(&mut stream, &answer, super::LOST_AFTER).map_err(lost)?;
    }
}
