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
    let listener = TcpListener::bind(settings.listen).map_err(|cause| {
        FleetError::Refused(format!(
            "cannot listen for agents on {}: {cause}; give --listen a free address and port of this machine",
            settings.listen
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|cause| FleetError::Io {
            peer: settings.listen.to_string(),
            cause,
        })?;
    note(format!(
        "waiting up to {} for {} agents on {}",
        humantime::format_duration(settings.timeout),
        settings.agents,
        settings.listen
    ));
    let mut door = Door::new(settings.token.clone(), within);
    let joined = door.admit(&listener, settings, cap, note);
    door.close(note);
    joined
}

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
}

impl Door {
    fn new(token: Option<String>, within: Duration) -> Self {
        let (done_tx, done_rx) = unbounded();
        Door {
            token,
            within,
            pending: VecDeque::new(),
            next_id: 0,
            done_tx,
            done_rx,
        }
    }

    /// Takes connections and their handshakes' outcomes until `settings.agents` agents joined
    /// or `settings.timeout` passed.
    fn admit(
        &mut self,
        listener: &TcpListener,
        settings: &FleetSettings,
        cap: usize,
        note: &mut dyn FnMut(String),
    ) -> Result<Vec<AgentLink>, FleetError> {
        let deadline = Instant::now() + settings.timeout;
        let mut links: Vec<AgentLink> = Vec::new();
        while links.len() < settings.agents as usize {
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
                Err(cause) => {
                    return Err(FleetError::Io {
                        peer: settings.listen.to_string(),
                        cause,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(FleetError::Refused(format!(
                    "only {} of {} agents joined within --agents-timeout {}; start the others with `pgstress agent --coordinator {}`",
                    links.len(),
                    settings.agents,
                    humantime::format_duration(settings.timeout),
                    settings.listen
                )));
            }
            let Ok((id, outcome)) = self.done_rx.recv_timeout(wait) else {
                continue;
            };
            // A handshake already cut (to make room) is not heard again.
            let Some(at) = self.pending.iter().position(|p| p.id == id) else {
                continue;
            };
            self.pending.remove(at);
            match outcome.and_then(|proven| welcome(proven, &links, cap)) {
                Ok(link) => {
                    note(format!("agent {} joined from {}", link.name, link.peer));
                    links.push(link);
                }
                Err(why) => note(format!("refused an agent: {why}")),
            }
        }
        Ok(links)
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
                "refused an agent: {} had not finished its handshake when {PENDING_AT_MOST} others were under way",
                oldest.peer
            ));
        }
        let Ok(kept) = stream.try_clone() else {
            note(format!(
                "refused an agent: cannot hold the connection of {peer}"
            ));
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        let token = self.token.clone();
        let done = self.done_tx.clone();
        let deadline = Instant::now() + self.within;
        let spawned = std::thread::Builder::new()
            .name("pgstress-handshake".to_owned())
            .spawn(move || {
                let outcome = handshake(stream, token.as_deref(), deadline);
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
                    "refused an agent: no thread for the handshake of {peer}: {err}"
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
                    let who = format!("agent {name} at {}", peer_of(&stream));
                    let reason = "the coordinator stopped taking agents".to_owned();
                    refuse(&mut stream, &who, reason, Instant::now() + LOST_AFTER)
                }
                Err(why) => why,
            };
            note(format!("refused an agent: {why}"));
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
) -> Result<Proven, String> {
    let peer = peer_of(&stream);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let hello = frame::receive_by::<ToCoordinator>(&mut stream, deadline, HANDSHAKE_FRAME);
    let (name, version, agent_nonce, agent_has_token) = match hello {
        Ok(ToCoordinator::Hello {
            name,
            version,
            nonce,
            token,
        }) => (name, version, nonce, token),
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
    let who = format!("agent {name} at {peer}");
    if let Err(reason) = check_hello(&version, token.is_some(), agent_has_token) {
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
                Ok(ToCoordinator::Refused { reason }) => format!("{who} refused: {reason}"),
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
mod tests {
    use super::*;
    use crate::fleet::agent::{self, Caps};
    use std::io::{ErrorKind, Read, Write};
    use std::net::{IpAddr, SocketAddr};
    use std::sync::mpsc;

    /// Dials until the coordinator listens (within 30 s).
    fn dial(address: SocketAddr) -> TcpStream {
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            match TcpStream::connect(address) {
                Ok(stream) => return stream,
                Err(err) if Instant::now() > give_up => panic!("never listened: {err}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Whether the coordinator closed the stream (what it never writes to a stranger).
    fn closed(stream: &mut TcpStream) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match stream.read(&mut [0u8; 256]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    /// Twelve strangers reach the door first, each on a handshake deadline of an hour: four
    /// announce 500 MiB, four send half a hello, four say nothing. Two agents dialing after
    /// them join; the announcers were refused on their length alone, and the eight others
    /// were still held, unheard and open, until the door closed.
    #[test]
    fn strangers_at_the_door_hold_only_their_own_handshakes() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let port = crate::sys::ports::free_listener_port(loopback).unwrap();
        let settings = FleetSettings {
            agents: 2,
            listen: SocketAddr::new(loopback, port),
            timeout: Duration::from_secs(60),
            token: Some("door-test-token".to_owned()),
        };
        let (notes_tx, notes) = mpsc::channel();
        let coordinator = {
            let settings = settings.clone();
            std::thread::spawn(move || {
                let mut note = |line: String| {
                    let _ = notes_tx.send(line);
                };
                let within = Duration::from_secs(3600);
                gather(&settings, within, 1 << 20, &mut note)
            })
        };
        let mut strangers: Vec<TcpStream> = (0..12).map(|_| dial(settings.listen)).collect();
        for (i, stranger) in strangers.iter_mut().enumerate() {
            match i / 4 {
                0 => stranger.write_all(&(500u32 << 20).to_be_bytes()).unwrap(),
                1 => stranger.write_all(&[0, 0, 0, 100, b'{']).unwrap(),
                _ => {}
            }
        }
        // The announcers are refused before any agent dials: they were taken first.
        let refused = "a message of 524288000 bytes, above the 4096";
        let mut said: Vec<String> = Vec::new();
        while said.iter().filter(|line| line.contains(refused)).count() < 4 {
            said.push(notes.recv_timeout(Duration::from_secs(30)).unwrap());
        }
        let agents: Vec<_> = (1..=2)
            .map(|i| {
                let address = settings.listen.to_string();
                std::thread::spawn(move || {
                    let caps = Caps {
                        max_connections: 10,
                        max_duration: Duration::from_secs(60),
                    };
                    let name = format!("a{i}");
                    agent::join(&address, &name, Some("door-test-token"), caps).map(|_| ())
                })
            })
            .collect();
        let links = coordinator.join().unwrap().unwrap();
        let mut names: Vec<&str> = links.iter().map(|link| link.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["a1", "a2"]);
        said.extend(notes.try_iter());
        let count = |what: &str| said.iter().filter(|line| line.contains(what)).count();
        assert_eq!(count("joined from"), 2, "{said:#?}");
        assert_eq!(count(refused), 4, "{said:#?}");
        assert_eq!(
            count("closed 8 connections that had not finished their handshake"),
            1,
            "{said:#?}"
        );
        for (i, stranger) in strangers.iter_mut().enumerate() {
            assert!(closed(stranger), "stranger {i} is still open");
        }
        // The agents joined and wait for their plans: the end of the run ends them.
        drop(links);
        for agent in agents {
            let ended = agent.join().unwrap().unwrap_err().to_string();
            assert!(ended.contains("the run ended before it began"), "{ended}");
        }
    }
}
