//! What pgstress adds to every request, measured alone: drawing its parameter, recording its
//! latency into a step's histogram, and classifying how it failed.
//!
//! `cargo bench --bench hot_path`. Each figure is meant to be compared with a request's own cost
//! (a connection with SCRAM authentication costs the client about a millisecond of CPU): the
//! hot path should be thousands of times cheaper.
//!
//! Failures are real `postgres::Error`s, made once: a refused connection (a port nobody
//! listens on) and a server's `53300 too many clients` (a listener that answers every startup
//! message with the ErrorResponse PostgreSQL sends at max_connections).

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgstress::config::data::ParamData;
use pgstress::pg::request::classify::{classify, failure_of};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The demo's parameter files: 5 files of 1,000 hex hashes each.
fn demo_data() -> ParamData {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
    ParamData::load(std::path::Path::new(dir), 0).expect("the repository's data/*.csv")
}

fn draw(c: &mut Criterion) {
    let data = demo_data();
    let mut rng = StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("draw_step");
    for requests in [1usize, 300, 10_000] {
        group.throughput(Throughput::Elements(requests as u64));
        group.bench_function(format!("{requests}_values"), |b| {
            b.iter(|| data.draw_step(black_box(requests), &mut rng))
        });
    }
    group.finish();
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram");
    // Latencies spread from 100 µs to 10 s, as a step that overloads the server records them.
    let latencies: Vec<u64> = (0..1024u64).map(|i| 100 + i * i * 9_500).collect();
    group.throughput(Throughput::Elements(latencies.len() as u64));
    group.bench_function("record_1024_latencies", |b| {
        let mut histogram = pgstress::model::step::histogram();
        b.iter(|| {
            for &micros in &latencies {
                histogram.saturating_record(black_box(micros));
            }
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("new_step_histogram", |b| {
        b.iter(pgstress::model::step::histogram)
    });
    group.finish();
}

/// A listener that answers every startup message as a server at max_connections does.
fn too_many_clients_server() -> u16 {
    let port = pgstress::sys::ports::free_listener_port([127, 0, 0, 1].into()).expect("a port");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind a local port");
    let port = listener.local_addr().expect("local address").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer_too_many_clients(stream);
        }
    });
    port
}

fn answer_too_many_clients(mut stream: TcpStream) -> std::io::Result<()> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length)?;
    let mut startup = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
    stream.read_exact(&mut startup)?;
    let mut fields = Vec::new();
    for (kind, text) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
    ] {
        fields.push(kind);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    stream.write_all(&message)
}

fn connect(port: u16) -> postgres::Error {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(postgres::NoTls)
        .err()
        .expect("this connection cannot succeed")
}

fn closed_port() -> u16 {
    pgstress::sys::ports::free_listener_port([127, 0, 0, 1].into()).expect("a port")
}

fn classify_outcome(c: &mut Criterion) {
    let server = too_many_clients_server();
    let errors = [
        ("too_many_clients", connect(server)),
        ("refused", connect(closed_port())),
    ];
    let mut group = c.benchmark_group("outcome");
    for (name, error) in &errors {
        group.bench_function(format!("classify/{name}"), |b| {
            b.iter(|| classify(black_box(error)))
        });
        group.bench_function(format!("failure_from_error/{name}"), |b| {
            b.iter(|| failure_of(black_box(error)))
        });
    }
    // For scale: the whole client side of a connection attempt the server refuses at once
    // (a runtime, a TCP connection, the startup message, the error parsed): what a burst step
    // past max_connections costs pgstress per request, without any authentication.
    group.bench_function("connect_attempt/too_many_clients", |b| {
        b.iter(|| connect(server))
    });
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = hot_path;
    config = quick();
    targets = draw, record, classify_outcome
}
criterion_main!(hot_path);
