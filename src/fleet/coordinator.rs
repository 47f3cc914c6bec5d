//! The coordinator's side of the handshake: listen, take agents as they dial in until the
//! expected number proved the token (refusing the others, and saying so), then send each its
//! plan and wait for it to be ready.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

use super::auth::{self, Role};
use super::frame::{self, peer_of};
use super::messages::{AgentPlan, ToAgent, ToCoordinator};
use super::{FleetError, LOST_AFTER};

/// How long one step of the handshake may take: a peer that says nothing is not an agent.
const HANDSHAKE_STEP: Duration = Duration::from_secs(5);
/// How long an agent may take to reach its target and build its engine (a pool opens its
/// connections then).
const READY_WITHIN: Duration = Duration::from_secs(60);
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

/// One agent's control connection, as the coordinator holds it. A thread reads its messages
/// into `inbox`; it ends when the connection does (or goes silent past `LOST_AFTER`).
pub struct AgentLink {
    pub name: String,
    pub peer: String,
    pub stream: TcpStream,
    pub inbox: Receiver<Result<ToCoordinator, FleetError>>,
    reader: Option<JoinHandle<()>>,
}

impl AgentLink {
    fn start(name: String, stream: TcpStream) -> Result<Self, FleetError> {
        let peer = peer_of(&stream);
        let mut reading = stream.try_clone().map_err(|cause| FleetError::Io {
            peer: peer.clone(),
            cause,
        })?;
        let (tx, inbox) = unbounded();
        let reader = std::thread::Builder::new()
            .name("pgstress-agent-link".to_owned())
            .spawn(move || {
                loop {
                    let message = frame::receive::<ToCoordinator>(&mut reading, LOST_AFTER);
                    let failed = message.is_err();
                    if tx.send(message).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|cause| FleetError::Io {
                peer: peer.clone(),
                cause,
            })?;
        Ok(AgentLink {
            name,
            peer,
            stream,
            inbox,
            reader: Some(reader),
        })
    }

    pub fn send(&mut self, message: &ToAgent) -> Result<(), FleetError> {
        frame::send(&mut self.stream, message, LOST_AFTER)
    }

    /// The next message other than a heartbeat, within `timeout`.
    pub fn expect(&self, timeout: Duration) -> Result<ToCoordinator, FleetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(Ok(ToCoordinator::Alive { .. })) => continue,
                Ok(message) => return message,
                Err(_) => {
                    return Err(FleetError::Lost(format!(
                        "agent {} ({}) did not answer within {}",
                        self.name,
                        self.peer,
                        humantime::format_duration(timeout)
                    )));
                }
            }
        }
    }
}

impl Drop for AgentLink {
    fn drop(&mut self) {
        let _ = self.send(&ToAgent::Finish);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            // The shutdown ends the reader's wait at once; a reader stuck anyway is left.
            let deadline = Instant::now() + Duration::from_secs(1);
            while !reader.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// Waits for `settings.agents` agents, proves and checks the token both ways, sends each its
/// plan (from `plan_for`, by its number from 1) and waits until all are ready. `note` is told
/// of every agent refused and every one that joined.
pub fn assemble(
    settings: &FleetSettings,
    plan_for: &dyn Fn(u32) -> AgentPlan,
    note: &mut dyn FnMut(String),
) -> Result<(Vec<AgentLink>, Vec<String>), FleetError> {
    let listener = TcpListener::bind(settings.listen).map_err(|cause| {
        FleetError::Refused(format!(
            "cannot listen for agents on {}: {cause}; give --listen a free address and port of this machine",
            settings.listen
        ))
    })?;
    let listening = |cause| FleetError::Io {
        peer: settings.listen.to_string(),
        cause,
    };
    listener.set_nonblocking(true).map_err(listening)?;
    note(format!(
        "waiting up to {} for {} agents on {}",
        humantime::format_duration(settings.timeout),
        settings.agents,
        settings.listen
    ));
    let deadline = Instant::now() + settings.timeout;
    let mut links = Vec::new();
    while links.len() < settings.agents as usize {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(FleetError::Refused(format!(
                        "only {} of {} agents joined within --agents-timeout {}; start the others with `pgstress agent --coordinator {}`",
                        links.len(),
                        settings.agents,
                        humantime::format_duration(settings.timeout),
                        settings.listen
                    )));
                }
                std::thread::sleep(ACCEPT_EVERY);
                continue;
            }
            Err(err) => return Err(listening(err)),
        };
        match welcome(stream, settings.token.as_deref(), &links) {
            Ok(link) => {
                note(format!("agent {} joined from {}", link.name, link.peer));
                links.push(link);
            }
            Err(why) => note(format!("refused an agent: {why}")),
        }
    }
    let engines = send_plans(&mut links, plan_for)?;
    Ok((links, engines))
}

/// The handshake with one agent that dialed in: its hello, the proofs both ways, then the
/// reader thread. A refusal is sent to the agent and returned as the reason.
fn welcome(
    mut stream: TcpStream,
    token: Option<&str>,
    joined: &[AgentLink],
) -> Result<AgentLink, String> {
    let peer = peer_of(&stream);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let hello = frame::receive::<ToCoordinator>(&mut stream, HANDSHAKE_STEP);
    let Ok(ToCoordinator::Hello {
        name,
        version,
        nonce: agent_nonce,
        token: agent_has_token,
    }) = hello
    else {
        return Err(format!(
            "{peer} did not introduce itself as a pgstress agent"
        ));
    };
    let who = format!("agent {name} at {peer}");
    let taken = joined.iter().any(|link| link.name == name);
    if let Err(reason) = check_hello(&version, token.is_some(), agent_has_token, taken, &name) {
        return Err(refuse(&mut stream, &who, reason));
    }
    let nonce = auth::nonce();
    let proof = token.map(|token| auth::prove(token, Role::Coordinator, &agent_nonce, &nonce));
    let challenge = ToAgent::Challenge {
        nonce: nonce.clone(),
        proof,
    };
    frame::send(&mut stream, &challenge, HANDSHAKE_STEP).map_err(|err| err.to_string())?;
    if let Some(token) = token {
        let answer = frame::receive::<ToCoordinator>(&mut stream, HANDSHAKE_STEP);
        let proven = matches!(&answer, Ok(ToCoordinator::Proof { proof })
            if auth::verify(token, Role::Agent, &nonce, &agent_nonce, proof));
        if !proven {
            return Err(match answer {
                Ok(ToCoordinator::Refused { reason }) => format!("{who} refused: {reason}"),
                _ => {
                    let reason =
                        format!("wrong token; set {} to the coordinator's", super::TOKEN_VAR);
                    refuse(&mut stream, &who, reason)
                }
            });
        }
    }
    frame::send(&mut stream, &ToAgent::Welcome, HANDSHAKE_STEP).map_err(|err| err.to_string())?;
    AgentLink::start(name, stream).map_err(|err| err.to_string())
}

/// Why an agent's hello is refused, if it is.
fn check_hello(
    version: &str,
    coordinator_token: bool,
    agent_token: bool,
    name_taken: bool,
    name: &str,
) -> Result<(), String> {
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
        _ if name_taken => Err(format!(
            "an agent named {name} already joined; give each agent its own --name"
        )),
        _ => Ok(()),
    }
}

/// Tells the agent why it is refused, and returns the line the coordinator prints.
fn refuse(stream: &mut TcpStream, who: &str, reason: String) -> String {
    let refusal = ToAgent::Refused {
        reason: reason.clone(),
    };
    let _ = frame::send(stream, &refusal, HANDSHAKE_STEP);
    format!("{who}: {reason}")
}

/// Sends every agent its plan and waits for each to be ready; an agent that refuses (its caps,
/// its target) ends the run before step 1 with its reason. Returns each one's engine line.
fn send_plans(
    links: &mut [AgentLink],
    plan_for: &dyn Fn(u32) -> AgentPlan,
) -> Result<Vec<String>, FleetError> {
    for (index, link) in links.iter_mut().enumerate() {
        link.send(&ToAgent::Plan(Box::new(plan_for(index as u32 + 1))))?;
    }
    let mut engines = Vec::new();
    for link in links.iter() {
        match link.expect(READY_WITHIN)? {
            ToCoordinator::Ready { engine } => engines.push(engine),
            ToCoordinator::Refused { reason } => {
                return Err(FleetError::Refused(format!(
                    "agent {} ({}) refused the plan: {reason}",
                    link.name, link.peer
                )));
            }
            other => {
                return Err(FleetError::Garbled {
                    peer: link.peer.clone(),
                    reason: format!("{other:?} instead of ready"),
                });
            }
        }
    }
    Ok(engines)
}
