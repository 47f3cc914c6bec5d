//! Client CPU per request of the lean connection (pgstress::pg::wire) against the `postgres`
//! crate's path (pgstress::pg::request::execute), N connect + query + close cycles each, one at a
//! time, against a throwaway cluster with SCRAM-SHA-256 over loopback TCP.
//!
//! `cargo run --release --example wire_cpu [N]` (default 1000). The CPU is this process's own
//! (user + system, getrusage): the server's work is in its own processes and not counted.
//! The three ways alternate in rounds of N/10, so a machine that gets busier during the run
//! weighs on all of them alike.

use std::time::{Duration, Instant};

use pgstress::pg::local::server::ThrowawayServer;
use pgstress::pg::request::{RequestClient, RequestSpec, execute};
use pgstress::pg::target::tls::{SslMode, TlsOptions};
use pgstress::pg::wire::{self, ConnectParams};

const SQL: &str = "SELECT $1::text";
const TIMEOUT: Duration = Duration::from_secs(10);

/// This process's user + system CPU time so far.
fn cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU and wall time of `n` requests made by `request`, which must all succeed.
fn measure(n: usize, mut request: impl FnMut() -> bool) -> (Duration, Duration) {
    let (cpu0, wall0) = (cpu(), Instant::now());
    for _ in 0..n {
        assert!(request(), "a request failed");
    }
    (cpu() - cpu0, wall0.elapsed())
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1000, |a| a.parse().expect("N"));
    let server = ThrowawayServer::start(&[]).expect("a throwaway cluster (server binaries needed)");
    let tls = TlsOptions {
        client_cert: None,
        client_key: None,
        mode: SslMode::Disable,
        root_cert: None,
    };
    let mut config = postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(server.port())
        .user("postgres");
    config.password(server.password()).dbname("postgres");
    config.connect_timeout(TIMEOUT);
    let cached = ConnectParams::from_config(&config, &tls).unwrap();
    let fresh = ConnectParams {
        scram_per_connection: true,
        ..cached.clone()
    };
    let spec = RequestSpec::new(
        config,
        &tls,
        Default::default(),
        SQL.into(),
        TIMEOUT,
        RequestClient::Postgres,
    )
    .unwrap();
    let lean = |params: &ConnectParams| {
        wire::rows_outcome(wire::run_once(params, SQL, Some("x"), TIMEOUT)).is_ok()
    };
    // A second argument runs one way alone (lean, fresh or postgres), for a profiler.
    if let Some(only) = std::env::args().nth(2) {
        let (cpu, wall) = match only.as_str() {
            "lean" => measure(n, || lean(&cached)),
            "fresh" => measure(n, || lean(&fresh)),
            _ => measure(n, || {
                execute(&spec, Some("x"), Duration::ZERO).outcome.is_ok()
            }),
        };
        println!("{only}: {:?} CPU, {:?} wall for {n}", cpu, wall);
        server.stop();
        return;
    }
    let mut totals = [(Duration::ZERO, Duration::ZERO); 3];
    let round = (n / 10).max(1);
    for _ in 0..n / round {
        let runs = [
            measure(round, || lean(&cached)),
            measure(round, || lean(&fresh)),
            measure(round, || {
                execute(&spec, Some("x"), Duration::ZERO).outcome.is_ok()
            }),
        ];
        for (total, run) in totals.iter_mut().zip(runs) {
            total.0 += run.0;
            total.1 += run.1;
        }
    }
    let done = (n / round) * round;
    println!("{done} requests each (connect, SCRAM-SHA-256, {SQL:?}, close), one at a time:");
    println!(
        "{:<44} {:>16} {:>16}",
        "client", "CPU ms/request", "wall ms/request"
    );
    let names = [
        "lean, SCRAM keys cached",
        "lean, --scram-per-connection",
        "postgres crate (today's path)",
    ];
    for (name, (cpu, wall)) in names.iter().zip(totals) {
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / done as f64;
        println!("{name:<44} {:>16.3} {:>16.3}", per(cpu), per(wall));
    }
    println!(
        "key derivations by the lean connection: {}",
        wire::key_derivations()
    );
    server.stop();
}
