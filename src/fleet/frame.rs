//! Messages on the control connection: a 4-byte big-endian length, then that many bytes of
//! JSON. Every read and write has a deadline, so no wait is unbounded, and every read has a
//! cap on the length it accepts, checked before anything of the body is read or allocated.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::FleetError;

/// The most a peer may send in one message before it proved the token, either way: a hello
/// (a name, the version, a 44-character nonce: about 150 bytes with a host-name-and-pid name),
/// a proof (44 characters), a challenge or a refusal (one line). A stranger's length prefix
/// above this is refused before its body is read, so no stranger makes this process allocate
/// more than this.
pub const HANDSHAKE_FRAME: usize = 4 * 1024;

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

/// Reads one message of at most `cap` bytes from a peer that proved the token, each read
/// waiting at most `timeout` (a large step's records take a while on a slow link: the wait
/// restarts as long as bytes keep coming).
pub fn receive<T: DeserializeOwned>(
    stream: &mut TcpStream,
    timeout: Duration,
    cap: usize,
) -> Result<T, FleetError> {
    let peer = peer_of(stream);
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|cause| FleetError::Io {
            peer: peer.clone(),
            cause,
        })?;
    read_frame(stream, &peer, cap, &mut |stream, buf| {
        stream.read_exact(buf)
    })
}

/// Reads one message of at most `cap` bytes by `deadline`, one deadline for the whole of it
/// however the bytes trickle in: what a peer that has not proved the token gets.
pub fn receive_by<T: DeserializeOwned>(
    stream: &mut TcpStream,
    deadline: Instant,
    cap: usize,
) -> Result<T, FleetError> {
    let peer = peer_of(stream);
    read_frame(stream, &peer, cap, &mut |stream, buf| {
        read_exact_by(stream, buf, deadline)
    })
}

type ReadExact<'a> = dyn FnMut(&mut TcpStream, &mut [u8]) -> std::io::Result<()> + 'a;

fn read_frame<T: DeserializeOwned>(
    stream: &mut TcpStream,
    peer: &str,
    cap: usize,
    read_exact: &mut ReadExact<'_>,
) -> Result<T, FleetError> {
    let io = |cause| FleetError::Io {
        peer: peer.to_owned(),
        cause,
    };
    let mut length = [0u8; 4];
    read_exact(stream, &mut length).map_err(io)?;
    let length = u32::from_be_bytes(length) as usize;
    if length > cap {
        return Err(FleetError::Garbled {
            peer: peer.to_owned(),
            reason: format!("a message of {length} bytes, above the {cap} it may send"),
        });
    }
    let mut body = vec![0u8; length];
    read_exact(stream, &mut body).map_err(io)?;
    serde_json::from_slice(&body).map_err(|err| FleetError::Garbled {
        peer: peer.to_owned(),
        reason: err.to_string(),
    })
}

/// `read_exact` with one deadline for the whole buffer: each read waits only for what is left
/// of it, so a peer sending one byte at a time is cut at the deadline.
fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "the deadline passed before the message was whole",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
            Ok(read) => filled += read,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
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
        let back: Vec<String> = receive(&mut server, timeout, 64).unwrap();
        assert_eq!(back, ["a", "b"]);
        let silent = receive::<Vec<String>>(&mut server, Duration::from_millis(50), 64);
        assert!(matches!(silent, Err(FleetError::Io { .. })));
        send(&mut client, &vec!["c".to_owned()], timeout).unwrap();
        let by = Instant::now() + timeout;
        let back: Vec<String> = receive_by(&mut server, by, HANDSHAKE_FRAME).unwrap();
        assert_eq!(back, ["c"]);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    /// A stranger announcing 500 MiB and sending nothing more is refused on its length alone:
    /// were the body read, the read would wait until the deadline and fail as a timeout.
    #[test]
    fn a_length_above_the_cap_is_refused_before_the_body_is_read() {
        let (mut client, mut server) = pair();
        let announced: u32 = 500 * 1024 * 1024;
        client.write_all(&announced.to_be_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let refused = receive_by::<ToCoordinatorProbe>(&mut server, deadline, HANDSHAKE_FRAME);
        match refused {
            Err(FleetError::Garbled { reason, .. }) => {
                assert!(reason.contains("524288000 bytes"), "{reason}");
                assert!(reason.contains("4096"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // The same under the post-authentication read.
        client.write_all(&announced.to_be_bytes()).unwrap();
        let refused = receive::<ToCoordinatorProbe>(&mut server, Duration::from_secs(30), 1000);
        assert!(
            matches!(refused, Err(FleetError::Garbled { .. })),
            "{refused:?}"
        );
    }

    /// A peer trickling one byte at a time, each well within any per-read timeout, is cut at
    /// the one deadline of the whole message.
    #[test]
    fn a_trickled_message_is_cut_at_its_deadline() {
        let (mut client, mut server) = pair();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let trickler = std::thread::spawn(move || {
            // 100 bytes at one every 50 ms: 5 s for the whole, the deadline is 300 ms.
            let _ = client.write_all(&100u32.to_be_bytes());
            for _ in 0..100 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed)
                    || client.write_all(b" ").is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let deadline = Instant::now() + Duration::from_millis(300);
        let cut = receive_by::<ToCoordinatorProbe>(&mut server, deadline, HANDSHAKE_FRAME);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match cut {
            Err(FleetError::Io { cause, .. }) => {
                assert_eq!(cause.kind(), ErrorKind::TimedOut, "{cause}")
            }
            other => panic!("{other:?}"),
        }
        trickler.join().unwrap();
    }

    type ToCoordinatorProbe = serde_json::Value;
}
