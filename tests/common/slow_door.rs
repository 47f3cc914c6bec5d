//! A door in front of a real server that lets one connection through at a time, a fixed gap
//! apart: a server that accepts its connections one after another, on demand, whatever the
//! machine's load (a burst of short queries shows it only when the client is quick enough).

use std::io::copy;
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use pgstress::sys::ports::free_listener_port;

/// Listens on a free loopback port below 32768 and forwards each connection to
/// `127.0.0.1:upstream`: the first `first_after` after the door opens (so that a burst's
/// threads have all started, however loaded the machine), each later one `gap` after the
/// previous. Lives as long as the test binary.
pub fn slow_door(upstream: u16, first_after: Duration, gap: Duration) -> u16 {
    let ip = IpAddr::from([127, 0, 0, 1]);
    let port = free_listener_port(ip).expect("a free port for the slow door");
    let listener = TcpListener::bind((ip, port)).expect("the slow door's port");
    thread::spawn(move || {
        let mut wait = first_after;
        for client in listener.incoming().flatten() {
            thread::sleep(std::mem::replace(&mut wait, gap));
            let Ok(server) = TcpStream::connect((ip, upstream)) else {
                continue;
            };
            pipe(client, server);
        }
    });
    port
}

fn pipe(client: TcpStream, server: TcpStream) {
    for (mut from, mut to) in [
        (client.try_clone().unwrap(), server.try_clone().unwrap()),
        (server, client),
    ] {
        thread::spawn(move || {
            let _ = copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
    }
}
