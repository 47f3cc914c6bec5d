//! The dialing side's way in, for an agent and a watcher alike: dial the run (again until it
//! listens), say who it is, prove the token both ways and wait for the welcome, all of the
//! handshake by one deadline and each of its messages capped.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::FleetError;
use super::auth::{self, Role};
use super::frame::{self, HANDSHAKE_FRAME, peer_of};
use super::messages::{ToAgent, ToCoordinator};

/// How long one attempt to dial, and the whole handshake, may take.
pub const DIAL_WITHIN: Duration = Duration::from_secs(10);
/// How long a peer keeps dialing a run that is not listening yet, and how often.
pub const DIAL_FOR: Duration = Duration::from_secs(120);
const DIAL_AGAIN: Duration = Duration::from_millis(250);

/// Who dials: the run's door takes only the role it listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joining {
    Agent,
    Watcher,
}

impl Joining {
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Joining::Agent => ("coordinator", "agent", "pgstress run --listen"),
            Joining::Watcher => ("run", "watcher", "pgstress run --watcher-listen"),
        }
    }
}

/// Dials `address` and goes through the handshake; returns the stream, welcomed, and the
/// peer's address.
pub fn join(
    address: &str,
    name: &str,
    token: Option<&str>,
    joining: Joining,
) -> Result<(TcpStream, String), FleetError> {
    let (them, us, _) = joining.words();
    let mut stream = dial(address, joining)?;
    let peer = peer_of(&stream);
    // Until the welcome, the run's messages are a handshake's: small, all by then.
    let deadline = Instant::now() + DIAL_WITHIN;
    let nonce = auth::nonce();
    let hello = ToCoordinator::Hello {
        name: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        nonce: nonce.clone(),
        token: token.is_some(),
        watcher: joining == Joining::Watcher,
    };
    frame::send(&mut stream, &hello, DIAL_WITHIN)?;
    let refused = |reason: String| {
        FleetError::Refused(format!("the {them} at {peer} refused this {us}: {reason}"))
    };
    let (their_nonce, proof) =
        match frame::receive_by::<ToAgent>(&mut stream, deadline, HANDSHAKE_FRAME)? {
            ToAgent::Challenge { nonce, proof } => (nonce, proof),
            ToAgent::Refused { reason } => return Err(refused(reason)),
            other => return Err(garbled(&peer, &other)),
        };
    if let Some(token) = token {
        let proven = proof.is_some_and(|proof| {
            auth::verify(token, Role::Coordinator, &nonce, &their_nonce, &proof)
        });
        if !proven {
            let reason = format!("the {them} did not prove the token");
            let _ = frame::send(&mut stream, &ToCoordinator::Refused { reason }, DIAL_WITHIN);
            return Err(FleetError::Refused(format!(
                "the {them} at {peer} does not hold this {us}'s {}; give both the same token",
                super::TOKEN_VAR
            )));
        }
        let proof = auth::prove(token, Role::Agent, &their_nonce, &nonce);
        frame::send(&mut stream, &ToCoordinator::Proof { proof }, DIAL_WITHIN)?;
    }
    match frame::receive_by::<ToAgent>(&mut stream, deadline, HANDSHAKE_FRAME)? {
        ToAgent::Welcome => Ok((stream, peer)),
        ToAgent::Refused { reason } => Err(refused(reason)),
        other => Err(garbled(&peer, &other)),
    }
}

/// The first of the run's addresses that answers, tried again until `DIAL_FOR` has passed:
/// the run listens only once it has reached its own target, and agents are often started at
/// the same moment (a Kubernetes Job starts every pod at once).
fn dial(address: &str, joining: Joining) -> Result<TcpStream, FleetError> {
    let (them, _, listener) = joining.words();
    let flag = match joining {
        Joining::Agent => "--coordinator",
        Joining::Watcher => "--run",
    };
    let unreachable = |why: String| {
        FleetError::Refused(format!(
            "cannot reach the {them} at {address} within {}: {why}; give {flag} the HOST:PORT of `{listener}`",
            humantime::format_duration(DIAL_FOR)
        ))
    };
    let give_up = Instant::now() + DIAL_FOR;
    loop {
        let mut last = "no address".to_owned();
        // Names are resolved again each time: a run's DNS record may appear late.
        match address.to_socket_addrs() {
            Ok(addresses) => {
                for address in addresses {
                    match TcpStream::connect_timeout(&address, DIAL_WITHIN) {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            return Ok(stream);
                        }
                        Err(err) => last = err.to_string(),
                    }
                }
            }
            Err(err) => last = err.to_string(),
        }
        if Instant::now() >= give_up {
            return Err(unreachable(last));
        }
        std::thread::sleep(DIAL_AGAIN);
    }
}

pub fn garbled(peer: &str, message: &ToAgent) -> FleetError {
    FleetError::Garbled {
        peer: peer.to_owned(),
        reason: format!("unexpected {message:?}"),
    }
}
