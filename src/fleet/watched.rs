//! The run's side of its watcher: take it at the door (`--watcher-listen`), then read the
//! server's host through it as the CPU probe reads a local server: a reading per sample, and
//! one at each step's edges, each within `LOST_AFTER`. A watcher that fails to answer is lost
//! for the rest of the run, and said so once: the steps after it have no server figures.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::door::gather_watcher;
use super::frame::{self, peer_of};
use super::watcher::{FROM_WATCHER, FromWatcher, ToWatcher};
use super::{FleetError, LOST_AFTER};
use crate::measure::sampler::{Probe, StepTag};
use crate::model::watch::{WatchReading, WatchSample, WatchedHost};

/// How long a watcher has, from its connection, to introduce itself and prove the token.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// What the run listens on for its watcher.
#[derive(Debug, Clone)]
pub struct WatcherSettings {
    pub listen: SocketAddr,
    /// How long to wait for it.
    pub timeout: Duration,
    pub token: Option<String>,
}

/// Why the watcher was lost, once it was: shared by the probe (which finds it) and the run
/// (which says it, and stops judging the server by it).
pub type Lost = Arc<Mutex<Option<String>>>;

/// A watcher that joined, and the host it watches.
pub struct Watcher {
    pub name: String,
    pub peer: String,
    pub host: WatchedHost,
    stream: TcpStream,
    /// The link failed: no goodbye is sent on it.
    broken: bool,
}

impl Watcher {
    /// Waits for the watcher, proves the token both ways, and takes what it watches.
    pub fn accept(
        settings: &WatcherSettings,
        note: &mut dyn FnMut(String),
    ) -> Result<Watcher, FleetError> {
        let times = (settings.timeout, HANDSHAKE_WITHIN);
        let (mut stream, name) =
            gather_watcher(settings.listen, settings.token.clone(), times, note)?;
        let peer = peer_of(&stream);
        match frame::receive::<FromWatcher>(&mut stream, LOST_AFTER, FROM_WATCHER)? {
            FromWatcher::Ready(host) => Ok(Watcher {
                name,
                peer,
                host,
                stream,
                broken: false,
            }),
            FromWatcher::Refused { reason } => Err(FleetError::Refused(format!(
                "watcher {name} ({peer}) stopped: {reason}"
            ))),
            other => Err(FleetError::Garbled {
                peer,
                reason: format!("{other:?} instead of ready"),
            }),
        }
    }

    /// The probe reading through this watcher, its loss told in `lost`.
    pub fn probe(self, run_start: Instant, lost: Lost) -> WatcherProbe {
        WatcherProbe {
            host: self.host.clone(),
            watcher: Some(self),
            run_start,
            lost,
        }
    }

    fn ask(&mut self, edge: bool) -> Result<WatchReading, FleetError> {
        frame::send(&mut self.stream, &ToWatcher::Read { edge }, LOST_AFTER)?;
        match frame::receive::<FromWatcher>(&mut self.stream, LOST_AFTER, FROM_WATCHER)? {
            FromWatcher::Reading(reading) => Ok(*reading),
            FromWatcher::Refused { reason } => Err(FleetError::Refused(reason)),
            other => Err(FleetError::Garbled {
                peer: self.peer.clone(),
                reason: format!("{other:?} instead of a reading"),
            }),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if !self.broken {
            let _ = frame::send(&mut self.stream, &ToWatcher::Finish, LOST_AFTER);
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// Reads the server's host through the watcher; None from the first reading it failed on.
pub struct WatcherProbe {
    watcher: Option<Watcher>,
    host: WatchedHost,
    run_start: Instant,
    lost: Lost,
}

/// A reading, with the run's instant it came back at.
pub type Watching = Option<(Instant, WatchReading)>;

impl WatcherProbe {
    fn reading(&mut self, edge: bool) -> Watching {
        let watcher = self.watcher.as_mut()?;
        match watcher.ask(edge) {
            Ok(reading) => Some((Instant::now(), reading)),
            Err(err) => {
                let why = format!(
                    "watcher {} ({}) was lost: {err}",
                    watcher.name, watcher.peer
                );
                *self.lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                watcher.broken = true;
                self.watcher = None;
                None
            }
        }
    }
}

impl Probe for WatcherProbe {
    type Reading = Watching;
    type Sample = WatchSample;
    type Whole = WatchSample;
    // The host's and the processes' counters tick, as the local CPU probe's do.
    const MERGE_SHORT_TAIL: bool = true;

    fn read(&mut self) -> Watching {
        self.reading(false)
    }

    fn read_edge(&mut self) -> Watching {
        self.reading(true)
    }

    fn whole(&mut self, tag: StepTag, begin: &Watching, end: &Watching) -> Option<WatchSample> {
        self.sample(tag, begin, end)
    }

    fn sample(&mut self, tag: StepTag, before: &Watching, after: &Watching) -> Option<WatchSample> {
        let ((_, before), (at, after)) = (before.as_ref()?, after.as_ref()?);
        let sample = WatchSample::between(before, after, &self.host)?;
        Some(WatchSample {
            elapsed_ms: at.duration_since(self.run_start).as_millis() as u64,
            step: tag.step,
            ..sample
        })
    }
}
