//! Messages on the control connection: a 4-byte big-endian length, then that many bytes of
//! JSON. Every read and write has a deadline (the stream's timeouts), so no wait is unbounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FleetError;

/// Far above any step's message (a step's parameters and records), far below a length that a
/// stranger's bytes could make this process allocate.
const MAX_FRAME: usize = 512 * 1024 * 1024;

/// Writes one message within `timeout`.
pub fn send<T: Serialize>(
    stream: &mut TcpStream,
    message: &T,
    timeout: Duration,
) -> Result<(), FleetError> {
    let peer = peer_of(stream);
    let body = serde_json::to_vec(message).map_err(|err| FleetError::Garbled {
        peer: peer.clone(),
        reason: err.to_string(),
    })?;
    let io = |cause| FleetError::Io {
        peer: peer.clone(),
        cause,
    };
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&body);
    stream.write_all(&bytes).map_err(io)?;
    stream.flush().map_err(io)
}

/// Reads one message, waiting at most `timeout` for it to begin and as long again for the
/// rest (a large step's records take a while on a slow link).
pub fn receive<T: DeserializeOwned>(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<T, FleetError> {
    let peer = peer_of(stream);
    let io = |cause| FleetError::Io {
        peer: peer.clone(),
        cause,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).map_err(io)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(FleetError::Garbled {
            peer,
            reason: format!("a message of {length} bytes"),
        });
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).map_err(io)?;
    serde_json::from_slice(&body).map_err(|err| FleetError::Garbled {
        peer,
        reason: err.to_string(),
    })
}

/// The peer's address, for messages.
pub fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_else(|_| "the peer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_message_crosses_and_a_silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let timeout = Duration::from_secs(5);
        send(&mut client, &vec!["a".to_owned(), "b".to_owned()], timeout).unwrap();
        let back: Vec<String> = receive(&mut server, timeout).unwrap();
        assert_eq!(back, ["a", "b"]);
        let silent = receive::<Vec<String>>(&mut server, Duration::from_millis(50));
        assert!(matches!(silent, Err(FleetError::Io { .. })));
    }
}
