//! One agent's control connection as the coordinator holds it, read on a thread of its own.

use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, unbounded};

use super::frame::{self, peer_of};
use super::messages::{ToAgent, ToCoordinator};
use super::{FleetError, LOST_AFTER};

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
    /// Starts reading the agent's messages, each of at most `cap` bytes.
    pub(super) fn start(name: String, stream: TcpStream, cap: usize) -> Result<Self, FleetError> {
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
                    let message = frame::receive::<ToCoordinator>(&mut reading, LOST_AFTER, cap);
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
