//! The lean connection against a fake server on loopback that misbehaves, and the message
//! reader against random bytes: every case ends as a classified failure within the deadline.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use pgstress::model::outcome::FailureClass;
use pgstress::pg::target::tls::{SslMode, TlsOptions};
use pgstress::pg::wire::{self, Address, ConnectParams, Hosts, WireError};
use proptest::prelude::*;

use super::class_of;

/// A loopback listener on a fixed port range below the ephemeral ports (so it cannot take a
/// port a client connection is using); the first free one.
fn loopback_listener() -> TcpListener {
    let base = 21000 + (std::process::id() % 4000) as u16;
    (0..2000u16)
        .find_map(|i| TcpListener::bind(("127.0.0.1", 21000 + (base - 21000 + i * 7) % 8000)).ok())
        .expect("no free loopback port in 21000..29000")
}

/// A fake server that answers one connection with `reply` after reading `skip` bytes (the
/// SSLRequest, the startup message), then closes or keeps silent until the client leaves.
fn fake_server(reply: Vec<u8>, close: bool, ssl_request: bool) -> u16 {
    fake_server_paced(reply, close, ssl_request, false)
}

/// As `fake_server`; `drip` sends the reply a byte at a time, 150 ms apart.
fn fake_server_paced(reply: Vec<u8>, close: bool, ssl_request: bool, drip: bool) -> u16 {
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        if ssl_request {
            let _ = socket.read_exact(&mut buf);
        } else {
            read_startup(&mut socket);
        }
        for chunk in reply.chunks(if drip { 1 } else { reply.len().max(1) }) {
            let _ = socket.write_all(chunk);
            if drip {
                std::thread::sleep(Duration::from_millis(150));
            }
        }
        if !close {
            let mut sink = [0u8; 1024];
            while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    port
}

fn read_startup(socket: &mut TcpStream) {
    let mut len = [0u8; 4];
    if socket.read_exact(&mut len).is_ok() {
        let mut body = vec![
            0u8;
            (u32::from_be_bytes(len) as usize)
                .saturating_sub(4)
                .min(1 << 16)
        ];
        let _ = socket.read_exact(&mut body);
    }
}

/// A backend message: tag, length, body.
fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn sasl(server_first: &[u8]) -> Vec<u8> {
    let mut out = message(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0\0");
    let mut body = 11u32.to_be_bytes().to_vec();
    body.extend_from_slice(server_first);
    out.extend(message(b'R', &body));
    out
}

#[test]
fn a_misbehaving_server_ends_in_a_classified_failure_within_the_deadline() {
    use FailureClass::*;
    let cases: Vec<(&str, Vec<u8>, bool, FailureClass)> = vec![
        ("silent after startup", vec![], false, Timeout),
        (
            "truncated, then closed",
            b"R\0\0\0\x08\0\0".to_vec(),
            true,
            Refused,
        ),
        (
            "truncated, then silent",
            b"R\0\0\0\x08\0\0".to_vec(),
            false,
            Timeout,
        ),
        ("oversized", b"D\x7f\xff\xff\xff".to_vec(), false, Io),
        (
            "garbage",
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            false,
            Io,
        ),
        ("unknown message type", message(b'~', b""), false, Io),
        (
            "unknown authentication request",
            message(b'R', b"\0\0\0\x63"),
            false,
            Io,
        ),
        (
            "error response without end",
            message(b'E', b"C\xff\xfe"),
            false,
            Io,
        ),
        (
            "a drip of bytes past the deadline",
            // A valid header announcing 1,000 bytes, then one byte every 150 ms: every read gets
            // something, so only a deadline recomputed before each read stops it in time.
            message(b'R', &[0; 996]),
            false,
            Timeout,
        ),
        (
            "SCRAM nonce not ours",
            sasl(b"r=forged,s=AAAA,i=4096"),
            false,
            Io,
        ),
        (
            "SCRAM iteration bomb",
            sasl(b"r=x,s=AAAA,i=4000000000"),
            false,
            Io,
        ),
        ("closed at once", vec![], true, Refused),
    ];
    for (name, reply, close, expected) in cases {
        let drip = name.starts_with("a drip");
        let port = fake_server_paced(reply, close, false, drip);
        let params = ConnectParams {
            hosts: Hosts::one(Address::Tcp {
                host: "127.0.0.1".into(),
                port,
            }),
            password: Some("p".into()),
            ..cluster_free_params()
        };
        assert_eq!(
            class_of(&params, "SELECT 1", None),
            Some(expected),
            "{name}"
        );
    }
}

#[test]
fn a_misbehaving_server_during_tls_negotiation_is_classified_too() {
    let options = TlsOptions {
        client_cert: None,
        client_key: None,
        mode: SslMode::Require,
        root_cert: None,
    };
    let tls = wire::WireTls::from_options(&options).unwrap();
    for (name, reply, expected) in [
        ("silent after SSLRequest", vec![], FailureClass::Timeout),
        ("garbage answer", b"X".to_vec(), FailureClass::Io),
        ("TLS refused under require", b"N".to_vec(), FailureClass::Io),
        (
            "yes, then no handshake",
            b"S".to_vec(),
            FailureClass::Timeout,
        ),
        (
            "yes, then garbage",
            b"SHTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            FailureClass::Io,
        ),
    ] {
        let port = fake_server(reply, false, true);
        let params = ConnectParams {
            hosts: Hosts::one(Address::Tcp {
                host: "127.0.0.1".into(),
                port,
            }),
            tls: tls.clone(),
            ..cluster_free_params()
        };
        assert_eq!(
            class_of(&params, "SELECT 1", None),
            Some(expected),
            "{name}"
        );
    }
}

#[test]
fn nobody_listening_is_refused() {
    let port = loopback_listener().local_addr().unwrap().port(); // bound, then dropped
    assert_eq!(
        class_of(&loopback_params(port), "SELECT 1", None),
        Some(FailureClass::Refused)
    );
}

/// A listener that never accepts, its accept queue full: the kernel drops further SYNs, so a
/// connect cannot complete, and the lean connection's blocking connect must still end at the
/// request's deadline (the socket's send timeout bounds it), as a timeout.
#[test]
fn a_connect_the_server_never_completes_ends_at_the_deadline() {
    let listener = loopback_listener();
    let port = listener.local_addr().unwrap().port();
    let listener = socket2::Socket::from(listener);
    listener.listen(0).unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // Fill the queue: with a backlog of 0 one waiting connection fills it; more are harmless.
    let _fillers: Vec<_> = (0..3)
        .filter_map(|_| TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok())
        .collect();
    assert_eq!(
        class_of(&loopback_params(port), "SELECT 1", None),
        Some(FailureClass::Timeout)
    );
    drop(listener);
}

/// The lean connection's settings for a TCP port on 127.0.0.1 where no cluster listens.
fn loopback_params(port: u16) -> ConnectParams {
    ConnectParams {
        hosts: Hosts::one(Address::Tcp {
            host: "127.0.0.1".into(),
            port,
        }),
        ..cluster_free_params()
    }
}

fn cluster_free_params() -> ConnectParams {
    ConnectParams {
        hosts: Hosts::one(Address::Tcp {
            host: "127.0.0.1".into(),
            port: 1,
        }),
        user: "u".into(),
        password: None,
        database: None,
        application_name: None,
        extra: Vec::new(),
        tls: None,
        scram_per_connection: false,
        in_band: None,
        source: Default::default(),
        channel_binding: Default::default(),
        keepalives: None,
    }
}

/// Reads messages from `bytes` until an error: it must come, and never as a panic.
fn read_until_error(bytes: &[u8]) -> WireError {
    let mut src = bytes;
    let mut reader = wire::MessageReader::new();
    loop {
        if let Err(err) = reader.next(&mut src, "reading") {
            return err;
        }
    }
}

proptest! {
    #[test]
    fn the_message_reader_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        read_until_error(&bytes);
    }

    /// Well-framed messages of every known type with random bodies reach the parser itself.
    #[test]
    fn the_message_reader_survives_random_bodies(
        frames in proptest::collection::vec((proptest::sample::select(b"RSKZTDCEN123snIctAVGHWdfGc".to_vec()), proptest::collection::vec(any::<u8>(), 0..64)), 1..8)
    ) {
        let bytes: Vec<u8> = frames.iter().flat_map(|(tag, body)| message(*tag, body)).collect();
        read_until_error(&bytes);
    }
}
