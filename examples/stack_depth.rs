//! How much stack a request thread really touches, to size `--stack-kib`.
//!
//! `cargo run --release --example stack_depth [ROUNDS [STACK_KIB]]` (default 5 rounds, 1024
//! KiB). Each request runs on a thread of its own, as in burst mode, with a stack of STACK_KIB
//! (a smaller one checks a candidate default: a request that overflowed it would abort the
//! process at its guard page). The thread first fills the free part
//! of its stack with a pattern, then makes one request exactly as a burst thread does
//! (`engine::guarded(request::execute)`: connect, authenticate, query, classify, close), then
//! finds the deepest byte that no longer holds the pattern. The figure is measured from the top
//! of the thread's stack block, so it counts what glibc keeps there (the thread descriptor and
//! static TLS) and the thread's start-up frames, as a `--stack-kib` must; the guard page comes
//! on top of the requested size. Every way a request can go is tried: the lean connection with
//! SCRAM keys cached and derived, over TLS with channel binding, a host name to resolve, the
//! `postgres` crate with and without TLS, and failures (a wrong password, a refused port).
//! The server is a throwaway cluster (SCRAM-SHA-256 over loopback TCP, TLS on with a
//! certificate made by the `openssl` command).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pgstress::engine::guarded;
use pgstress::pg::local::server::ThrowawayServer;
use pgstress::pg::request::{RequestClient, RequestSpec, execute};
use pgstress::pg::target::tls::{SslMode, TlsOptions};

const PATTERN: u64 = 0xA5C3_5A3C_A5C3_5A3C;
const SQL: &str = "SELECT $1::text";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The lowest usable address (above the guard page) and the top of this thread's stack block.
fn stack_bounds() -> (usize, usize) {
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let (mut addr, mut size, mut guard) = (std::ptr::null_mut(), 0usize, 0usize);
        assert_eq!(libc::pthread_attr_getstack(&attr, &mut addr, &mut size), 0);
        assert_eq!(libc::pthread_attr_getguardsize(&attr, &mut guard), 0);
        libc::pthread_attr_destroy(&mut attr);
        let low = addr as usize;
        // glibc counts the guard page in the block it reports; it is never written.
        (low + guard, low + size)
    }
}

/// Fills the stack below this frame (less a margin for the frame itself) with the pattern.
#[inline(never)]
fn paint(low: usize) {
    let here = std::ptr::addr_of!(low) as usize;
    let mut at = low.next_multiple_of(8);
    while at + 4096 < here {
        unsafe { (at as *mut u64).write_volatile(PATTERN) };
        at += 8;
    }
}

/// The deepest address whose pattern was overwritten: how far down the stack was touched.
fn deepest_touched(low: usize) -> usize {
    let mut at = low.next_multiple_of(8);
    while unsafe { (at as *const u64).read_volatile() } == PATTERN {
        at += 8;
    }
    at
}

/// Runs one request on a fresh thread as burst mode does; returns the stack it touched (bytes
/// from the top of the block) and whether the request succeeded.
fn touched_by(spec: &Arc<RequestSpec>, stack: usize) -> (usize, bool) {
    let spec = Arc::clone(spec);
    std::thread::Builder::new()
        .name("pgstress-request".into())
        .stack_size(stack)
        .spawn(move || {
            let (low, high) = stack_bounds();
            paint(low);
            let record = guarded(Duration::ZERO, || execute(&spec, Some("x"), Duration::ZERO));
            (high - deepest_touched(low), record.outcome.is_ok())
        })
        .unwrap()
        .join()
        .unwrap()
}

fn tls(mode: SslMode) -> TlsOptions {
    TlsOptions {
        client_cert: None,
        client_key: None,
        mode,
        root_cert: None,
    }
}

/// A certificate and key for the server, owned by the user it runs as.
fn make_certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command (apt-get install openssl)");
    assert!(status.status.success(), "openssl req failed");
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [dir, &cert, &key] {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    (cert.display().to_string(), key.display().to_string())
}

fn spec(
    port: u16,
    host: &str,
    password: &str,
    mode: SslMode,
    client: RequestClient,
) -> RequestSpec {
    let mut config = postgres::Config::new();
    config.host(host).port(port).user("postgres");
    config.password(password).dbname("postgres");
    config.connect_timeout(TIMEOUT);
    RequestSpec::new(
        config,
        &tls(mode),
        Default::default(),
        SQL.into(),
        TIMEOUT,
        client,
    )
    .unwrap()
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(5, |a| a.parse().expect("ROUNDS"));
    let stack_kib: usize = std::env::args()
        .nth(2)
        .map_or(1024, |a| a.parse().expect("STACK_KIB"));
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_certificate(certs.path());
    let settings = [
        ("ssl", "on"),
        ("ssl_cert_file", &*cert),
        ("ssl_key_file", &*key),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let server = ThrowawayServer::start(&settings).expect("a throwaway cluster");
    let (port, password) = (server.port(), server.password().to_owned());
    let lean = RequestClient::Lean {
        scram_per_connection: false,
    };
    let derive = RequestClient::Lean {
        scram_per_connection: true,
    };
    let pg = RequestClient::Postgres;
    let (off, tls_on) = (SslMode::Disable, SslMode::Require);
    let cases: Vec<(&str, RequestSpec, bool)> = vec![
        (
            "lean, SCRAM keys cached",
            spec(port, "127.0.0.1", &password, off, lean),
            true,
        ),
        (
            "lean, SCRAM keys derived",
            spec(port, "127.0.0.1", &password, off, derive),
            true,
        ),
        (
            "lean, host name resolved",
            spec(port, "localhost", &password, off, derive),
            true,
        ),
        (
            "lean, TLS + SCRAM-PLUS, derived",
            spec(port, "127.0.0.1", &password, tls_on, derive),
            true,
        ),
        (
            "lean, wrong password",
            spec(port, "127.0.0.1", "wrong", off, derive),
            false,
        ),
        (
            "lean, refused port",
            spec(1, "127.0.0.1", &password, off, lean),
            false,
        ),
        (
            "postgres crate",
            spec(port, "127.0.0.1", &password, off, pg),
            true,
        ),
        (
            "postgres crate, TLS",
            spec(port, "127.0.0.1", &password, tls_on, pg),
            true,
        ),
        (
            "postgres crate, wrong password",
            spec(port, "127.0.0.1", "wrong", off, pg),
            false,
        ),
    ];
    println!(
        "stack touched by one request thread with a {stack_kib} KiB stack, from the top of its \
         block (max of {rounds}):"
    );
    println!("{:<36} {:>12}", "request", "KiB touched");
    let mut deepest = 0;
    for (name, spec, should_succeed) in cases {
        let spec = Arc::new(spec);
        let mut most = 0;
        for _ in 0..rounds {
            let (touched, ok) = touched_by(&spec, stack_kib * 1024);
            assert_eq!(ok, should_succeed, "{name}: unexpected outcome");
            most = most.max(touched);
        }
        deepest = deepest.max(most);
        println!("{name:<36} {:>12.1}", most as f64 / 1024.0);
    }
    println!("deepest: {:.1} KiB", deepest as f64 / 1024.0);
    server.stop();
}
