//! The door under strangers: each holds only its own handshake.

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

/// Each door takes its own role: a watcher dialing the agents' door is refused as one, and an
/// agent dialing a watcher's door too, each told where to dial.
#[test]
fn a_watcher_at_the_agents_door_and_an_agent_at_the_watchers_are_refused() {
    use crate::fleet::introduce::{Joining, join};
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let port = crate::sys::ports::free_listener_port(loopback).unwrap();
    let settings = FleetSettings {
        agents: 1,
        listen: SocketAddr::new(loopback, port),
        timeout: Duration::from_secs(3),
        token: None,
    };
    let door = std::thread::spawn(move || {
        gather(&settings, Duration::from_secs(10), 1 << 20, &mut |_| {}).map(|_| ())
    });
    let address = format!("127.0.0.1:{port}");
    let refused = join(&address, "w", None, Joining::Watcher)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("refused this watcher") && refused.contains("--watcher-listen"),
        "{refused}"
    );
    assert!(door.join().unwrap().is_err(), "no agent joined");

    let port = crate::sys::ports::free_listener_port(loopback).unwrap();
    let listen = SocketAddr::new(loopback, port);
    let door = std::thread::spawn(move || {
        let times = (Duration::from_secs(3), Duration::from_secs(10));
        gather_watcher(listen, None, times, &mut |_| {}).map(|_| ())
    });
    let refused = join(&listen.to_string(), "a", None, Joining::Agent)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("refused this agent") && refused.contains("--listen"),
        "{refused}"
    );
    let none = door.join().unwrap().unwrap_err().to_string();
    assert!(none.contains("no watcher joined within"), "{none}");
}
