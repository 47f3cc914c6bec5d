//! The coordinator's door: listen, take agents as they dial in until the expected number
//! proved the token (refusing the others, and saying so).
//!
//! Each connection gets its handshake on a thread of its own, with one deadline for the whole
//! of it and a cap of a few KiB on what it may send before it proved the token, so a stranger
//! that says nothing, or announces a huge message and trickles it, holds only its own thread
//! and never delays an agent dialing in beside it.

use std::collections::VecDeque;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::auth::{self, Role};
use super::frame::{self, HANDSHAKE_FRAME, peer_of};
use super::link::AgentLink;
use super::messages::{ToAgent, ToCoordinator};
use super::{FleetError, LOST_AFTER};

/// The most handshakes under way at once. A connection past this cuts the oldest, so a crowd
/// of strangers must keep dialing faster than an agent's handshake takes to keep one out.
const PENDING_AT_MOST: usize = 64;
/// How often the listener looks for a new agent.
const ACCEPT_EVERY: Duration = Duration::from_millis(20);

/// What the coordinator listens on and whom it waits for.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub agents: u32,
    pub listen: SocketAddr,
    /// How long to wait for all the agents.
    pub timeout: Duration,
    pub token: Option<String>,
}

/// Listens until `settings.agents` agents joined, each handshake given `within` from its
/// connection and each agent's messages then capped at `cap` bytes; the handshakes still
/// under way when it returns are ended.
pub(super) fn gather(
    settings: &FleetSettings,
    within: Duration,
    cap: usize,
    note: &mut dyn FnMut(String),
) -> Result<Vec<AgentLink>, FleetError> {
    let listener = open(settings.listen, "--listen", "agents")?;
    note(format!(
        "waiting up to {} for {} agents on {}",
        humantime::format_duration(settings.timeout),
        settings.agents,
        settings.listen
    ));
    let mut door = Door::new(settings.token.clone(), within, false);
    let mut take = |proven: Proven, joined: &[AgentLink]| welcome(proven, joined, cap);
    let expected = settings.agents as usize;
    let joined = door.admit(&listener, expected, settings.timeout, &mut take, note);
    door.close(note);
    joined.map_err(|(joined, cause)| match cause {
        Some(cause) => FleetError::Io {
            peer: settings.listen.to_string(),
            cause,
        },
        None => FleetError::Refused(format!(
            "only {joined} of {} agents joined within --agents-timeout {}; start the others with `pgstress agent --coordinator {}`",
            settings.agents,
            humantime::format_duration(settings.timeout),
            settings.listen
        )),
    })
}

/// Listens on `listen` for one watcher (`pgstress watch`) until `timeout`, its handshake
/// given `within`: the stream it proved the token on, welcomed, and its name.
pub fn gather_watcher(
    listen: SocketAddr,
    token: Option<String>,
    (timeout, within): (Duration, Duration),
    note: &mut dyn FnMut(String),
) -> Result<(TcpStream, String), FleetError> {
    let listener = open(listen, "--watcher-listen", "a watcher")?;
    note(format!(
        "waiting up to {} for the server's watcher on {listen} (`pgstress watch --run {listen}` on the server's host)",
        humantime::format_duration(timeout),
    ));
    let mut door = Door::new(token, within, true);
    let mut take = |Proven { name, mut stream }: Proven, _: &[(TcpStream, String)]| {
        let deadline = Instant::now() + LOST_AFTER;
        frame::send(&mut stream, &ToAgent::Welcome, left(deadline))
            .map_err(|err| err.to_string())?;
        Ok((stream, name))
    };
    let joined = door.admit(&listener, 1, timeout, &mut take, note);
    door.close(note);
    match joined {
        Ok(mut watchers) if !watchers.is_empty() => Ok(watchers.remove(0)),
        Err((_, Some(cause))) => Err(FleetError::Io {
            peer: listen.to_string(),
            cause,
        }),
        _ => Err(FleetError::Refused(format!(
            "no watcher joined within --watcher-timeout {}; start `pgstress watch --run {listen}` on the server's host, with the same {}",
            humantime::format_duration(timeout),
            super::TOKEN_VAR
        ))),
    }
}

/// The listener, not blocking (the door polls it).
fn open(listen: SocketAddr, option: &str, whom: &str) -> Result<TcpListener, FleetError> {
    let listener = TcpListener::bind(listen).map_err(|cause| {
        FleetError::Refused(format!(
            "cannot listen for {whom} on {listen}: {cause}; give {option} a free address and port of this machine"
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|cause| FleetError::Io {
            peer: listen.to_string(),
            cause,
        })?;
    Ok(listener)
}

/// Lets a proven peer in (or says why not), seeing those let in before it.
type Take<'a, T> = dyn FnMut(Proven, &[T]) -> Result<T, String> + 'a;

/// A handshake under way on its own thread, its stream kept to cut it.
struct Pending {
    id: u64,
    peer: String,
    stream: TcpStream,
}

/// A peer that proved the token (or, without one, introduced itself as an agent).
struct Proven {
    name: String,
    stream: TcpStream,
}

/// The handshakes under way, and the channel their threads answer on.
struct Door {
    token: Option<String>,
    /// Each handshake's time, from its connection.
    within: Duration,
    pending: VecDeque<Pending>,
    next_id: u64,
    done_tx: Sender<(u64, Result<Proven, String>)>,
    done_rx: Receiver<(u64, Result<Proven, String>)>,
    /// Whom the door takes: a watcher (`pgstress watch`) or agents.
    watcher: bool,
}

impl Door {
    fn new(token: Option<String>, within: Duration, watcher: bool) -> Self {
        let (done_tx, done_rx) = unbounded();
        Door {
            watcher,
            token,
            within,
            pending: VecDeque::new(),
            next_id: 0,
            done_tx,
            done_rx,
        }
    }

    /// Takes connections and their handshakes' outcomes until `expected` peers joined (each
    /// let in by `take`, which sees those before it) or `timeout` passed; on failure, how many
    /// joined, and the listener's error if that was why.
    fn admit<T>(
        &mut self,
        listener: &TcpListener,
        expected: usize,
        timeout: Duration,
        take: &mut Take<'_, T>,
        note: &mut dyn FnMut(String),
    ) -> Result<Vec<T>, (usize, Option<std::io::Error>)> {
        let deadline = Instant::now() + timeout;
        let mut joined: Vec<T> = Vec::new();
        let whom = self.whom();
        while joined.len() < expected {
            // Right after a connection, look for the next one at once; else wait a little
            // for a handshake to end.
            let mut wait = ACCEPT_EVERY;
            match listener.accept() {
                Ok((stream, _)) => {
                    self.start(stream, note);
                    wait = Duration::ZERO;
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {}
                // A peer that gave up before it was taken.
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(cause) => return Err((joined.len(), Some(cause))),
            }
            if Instant::now() >= deadline {
                return Err((joined.len(), None));
            }
            let Ok((id, outcome)) = self.done_rx.recv_timeout(wait) else {
                continue;
            };
            // A handshake already cut (to make room) is not heard again.
            let Some(at) = self.pending.iter().position(|p| p.id == id) else {
                continue;
            };
            let peer = self.pending.remove(at).map(|p| p.peer).unwrap_or_default();
            match outcome.and_then(|proven| {
                let name = proven.name.clone();
                take(proven, &joined).map(|t| (t, name))
            }) {
                Ok((one, name)) => {
                    note(format!("{whom} {name} joined from {peer}"));
                    joined.push(one);
                }
                Err(why) => note(format!("{}: {why}", self.refused())),
            }
        }
        Ok(joined)
    }

    fn whom(&self) -> &'static str {
        if self.watcher { "watcher" } else { "agent" }
    }

    fn refused(&self) -> &'static str {
        if self.watcher {
            "refused a watcher"
        } else {
            "refused an agent"
        }
    }

    /// Hands a new connection its handshake thread, cutting the oldest handshake if too many
    /// are under way.
    fn start(&mut self, stream: TcpStream, note: &mut dyn FnMut(String)) {
        let peer = peer_of(&stream);
        if self.pending.len() >= PENDING_AT_MOST
            && let Some(oldest) = self.pending.pop_front()
        {
            let _ = oldest.stream.shutdown(Shutdown::Both);
            note(format!(
                "{}: {} had not finished its handshake when {PENDING_AT_MOST} others were under way",
                self.refused(),
                oldest.peer
            ));
        }
        let Ok(kept) = stream.try_clone() else {
            note(format!(
                "{}: cannot hold the connection of {peer}",
                self.refused()
            ));
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        let token = self.token.clone();
        let watcher = self.watcher;
        let done = self.done_tx.clone();
        let deadline = Instant::now() + self.within;
        let spawned = std::thread::Builder::new()
            .name("pgstress-handshake".to_owned())
            .spawn(move || {
                let outcome = handshake(stream, token.as_deref(), deadline, watcher);
                let _ = done.send((id, outcome));
            });
        match spawned {
            Ok(_) => self.pending.push_back(Pending {
                id,
                peer,
                stream: kept,
            }),
            Err(err) => {
                let _ = kept.shutdown(Shutdown::Both);
                note(format!(
                    "{}: no thread for the handshake of {peer}: {err}",
                    self.refused()
                ));
            }
        }
    }

    /// Ends the handshakes still under way once the door closes: those that ended are told
    /// (a peer that proved the token, that the run has its agents), the others are cut, so
    /// that their threads end at once.
    fn close(&mut self, note: &mut dyn FnMut(String)) {
        while let Ok((id, outcome)) = self.done_rx.try_recv() {
            let Some(at) = self.pending.iter().position(|p| p.id == id) else {
                continue;
            };
            self.pending.remove(at);
            let why = match outcome {
                Ok(Proven { name, mut stream }) => {
                    let who = format!("{} {name} at {}", self.whom(), peer_of(&stream));
                    let reason = "the run stopped taking them".to_owned();
                    refuse(&mut stream, &who, reason, Instant::now() + LOST_AFTER)
                }
                Err(why) => why,
            };
            note(format!("{}: {why}", self.refused()));
        }
        if self.pending.is_empty() {
            return;
        }
        for pending in &self.pending {
            let _ = pending.stream.shutdown(Shutdown::Both);
        }
        note(format!(
            "closed {} connections that had not finished their handshake",
            self.pending.len()
        ));
        self.pending.clear();
    }
}

/// What is left of the handshake's time, for a write (never zero: a zero timeout is refused).
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

/// Why a peer's message before the token was proven could not be taken, in a few words.
fn unreadable(err: FleetError) -> String {
    match err {
        FleetError::Io { cause, .. } if cause.kind() == std::io::ErrorKind::TimedOut => {
            "no whole message by the handshake's deadline".to_owned()
        }
        FleetError::Io { cause, .. } => cause.to_string(),
        FleetError::Garbled { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The handshake with one peer that dialed in, all of it by `deadline`: its hello, the proofs
/// both ways. A refusal is sent to the peer and returned as the reason.
fn handshake(
    mut stream: TcpStream,
    token: Option<&str>,
    deadline: Instant,
    watcher_expected: bool,
) -> Result<Proven, String> {
    let peer = peer_of(&stream);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let hello = frame::receive_by::<ToCoordinator>(&mut stream, deadline, HANDSHAKE_FRAME);
    let (name, version, agent_nonce, agent_has_token, watcher) = match hello {
        Ok(ToCoordinator::Hello {
            name,
            version,
            nonce,
            token,
            watcher,
        }) => (name, version, nonce, token, watcher),
        Ok(_) => {
            return Err(format!(
                "{peer} did not introduce itself as a pgstress agent"
            ));
        }
        Err(err) => {
            return Err(format!(
                "{peer} did not introduce itself as a pgstress agent: {}",
                unreadable(err)
            ));
        }
    };
    // What a stranger says is printed: one line each, nothing to rewrite the terminal.
    if name.chars().chain(version.chars()).any(char::is_control) {
        return Err(format!(
            "{peer} sent a name or version with control characters"
        ));
    }
    let who = match watcher {
        true => format!("watcher {name} at {peer}"),
        false => format!("agent {name} at {peer}"),
    };
    let role = match (watcher, watcher_expected) {
        (true, false) => {
            Err("it is a watcher; watchers dial the run's --watcher-listen".to_owned())
        }
        (false, true) => Err("it is an agent; agents dial the coordinator's --listen".to_owned()),
        _ => Ok(()),
    };
    if let Err(reason) = role.and_then(|()| check_hello(&version, token.is_some(), agent_has_token))
    {
        return Err(refuse(&mut stream, &who, reason, deadline));
    }
    let nonce = auth::nonce();
    let proof = token.map(|token| auth::prove(token, Role::Coordinator, &agent_nonce, &nonce));
    let challenge = ToAgent::Challenge {
        nonce: nonce.clone(),
        proof,
    };
    frame::send(&mut stream, &challenge, left(deadline)).map_err(|err| err.to_string())?;
    if let Some(token) = token {
        let answer = frame::receive_by::<ToCoordinator>(&mut stream, deadline, HANDSHAKE_FRAME);
        let proven = matches!(&answer, Ok(ToCoordinator::Proof { proof })
            if auth::verify(token, Role::Agent, &nonce, &agent_nonce, proof));
        if !proven {
            return Err(match answer {
                // At this point a peer refuses only over the token.
                Ok(ToCoordinator::Refused { reason }) => format!(
                    "{who} refused: {reason}; wrong token: give both sides the same {}",
                    super::TOKEN_VAR
                ),
                Ok(_) => {
                    let reason =
                        format!("wrong token; set {} to the coordinator's", super::TOKEN_VAR);
                    refuse(&mut stream, &who, reason, deadline)
                }
                Err(err) => format!("{who} sent no proof: {}", unreadable(err)),
            });
        }
    }
    Ok(Proven { name, stream })
}

/// Lets a proven peer in as an agent, unless its name is taken: the welcome, then the reader
/// thread, taking messages of at most `cap` bytes.
fn welcome(proven: Proven, joined: &[AgentLink], cap: usize) -> Result<AgentLink, String> {
    let Proven { name, mut stream } = proven;
    let who = format!("agent {name} at {}", peer_of(&stream));
    let deadline = Instant::now() + LOST_AFTER;
    if joined.iter().any(|link| link.name == name) {
        // Not the name again: the refusal must fit the agent's cap on a handshake's message.
        let reason = "an agent of the same name already joined; give each agent its own --name";
        let reason = reason.to_owned();
        return Err(refuse(&mut stream, &who, reason, deadline));
    }
    frame::send(&mut stream, &ToAgent::Welcome, left(deadline)).map_err(|err| err.to_string())?;
    AgentLink::start(name, stream, cap).map_err(|err| err.to_string())
}

/// Why an agent's hello is refused, if it is.
fn check_hello(version: &str, coordinator_token: bool, agent_token: bool) -> Result<(), String> {
    let ours = env!("CARGO_PKG_VERSION");
    if version != ours {
        return Err(format!(
            "it runs pgstress {version}, the coordinator {ours}; run the same version on both"
        ));
    }
    match (coordinator_token, agent_token) {
        (true, false) => Err(format!(
            "it has no token; set {} to the coordinator's",
            super::TOKEN_VAR
        )),
        (false, true) => Err(format!(
            "the coordinator has no token; set {} on it too",
            super::TOKEN_VAR
        )),
        _ => Ok(()),
    }
}

/// Tells the agent why it is refused, and returns the line the coordinator prints.
fn refuse(stream: &mut TcpStream, who: &str, reason: String, deadline: Instant) -> String {
    let refusal = ToAgent::Refused {
        reason: reason.clone(),
    };
    let _ = frame::send(stream, &refusal, left(deadline));
    format!("{who}: {reason}")
}

#[cfg(test)]
#[path = "door_tests.rs"]
mod tests;
