//! Ports for the listeners pgstress starts (a throwaway server, a pooler, a coordinator).
//! Always below 32768: in the ephemeral range (32768-60999 on Linux) the source ports of a
//! connection storm can take a listener's port first.

use std::net::{SocketAddr, TcpListener};

use rand::RngExt;

/// The listener ports pgstress picks from.
pub const LISTENER_PORTS: std::ops::RangeInclusive<u16> = 10_000..=32_767;
/// Ports tried before giving up: the range is wide, so a miss means a crowded machine.
const ATTEMPTS: usize = 200;

/// A port of `LISTENER_PORTS` free on `ip` right now, from a random start so that concurrent
/// runs rarely reach for the same one.
pub fn free_listener_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    let mut rng = rand::rng();
    for _ in 0..ATTEMPTS {
        let port = rng.random_range(LISTENER_PORTS);
        if TcpListener::bind(SocketAddr::new(ip, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port between 10000 and 32767 on {ip} after {ATTEMPTS} tries"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_port_is_free_and_below_the_ephemeral_range() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        for _ in 0..20 {
            let port = free_listener_port(ip).unwrap();
            assert!(LISTENER_PORTS.contains(&port), "{port}");
            assert!(port < 32768);
            TcpListener::bind((ip, port)).expect("the port is free");
        }
    }
}
