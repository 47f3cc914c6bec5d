//! The floor of pgstress's design: the "150-line program" of issue 12, built from pgstress's own
//! lean connection and nothing else. A ramp of burst steps (50, 100, ... as `pgstress run
//! --steps S --step N`), a native thread per request, all of a step released by one barrier,
//! each one connect + SCRAM (keys derived once) + the run's lookup + close, with the run's
//! startup settings (read-only, statement_timeout) and its parameter values, and no sampler,
//! no histogram, no classification, no logs, no report. What pgstress spends per request above
//! this is what its measurements cost.
//!
//! `cargo run --release --example ramp_floor -- DSN DATA_DIR [STEPS] [STEP]`, as
//! benches/compare.sh part c runs it; prints the requests and how many succeeded. The CPU is
//! the process's, as /usr/bin/time reports it (the threads are made before the first step,
//! as pgstress's crew keeps its threads, and their making is counted there too).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pgstress::config::DEFAULT_QUERY;
use pgstress::pg::target::ConnectTarget;
use pgstress::pg::wire::{self, ConnectParams, ReadySocket};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The first column of every CSV file in `dir`, as pgstress reads its parameter values.
fn values(dir: &str) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("DATA_DIR: a folder of CSV files")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let text: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let values: Vec<String> = text
        .lines()
        .filter_map(|line| line.split(',').next())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!values.is_empty(), "no values in {dir}");
    values
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: ramp_floor DSN DATA_DIR [STEPS] [STEP]";
    let dsn = args.next().expect(usage);
    let values = Arc::new(values(&args.next().expect(usage)));
    let steps: usize = args.next().map_or(6, |a| a.parse().expect("STEPS"));
    let step: usize = args.next().map_or(50, |a| a.parse().expect("STEP"));
    let target = ConnectTarget::parse(&dsn, None).expect("a libpq DSN");
    let config = target.request_config(TIMEOUT, "ramp_floor", false);
    let params = ConnectParams::from_config(&config, target.tls_options()).expect("TLS settings");
    let params = Arc::new(params);
    let largest = steps * step;
    // The threads are made once, before the first step, and kept, as pgstress's crew keeps
    // its; each step's share of them is released by the step's barrier. Making them is in the
    // process's CPU, as the crew's is in pgstress's.
    let barriers: Arc<Vec<(Barrier, Barrier)>> = Arc::new(
        (1..=steps)
            .map(|i| (Barrier::new(i * step), Barrier::new(largest + 1)))
            .collect(),
    );
    let ok = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..largest)
        .map(|n| {
            let (params, barriers, ok) = (params.clone(), barriers.clone(), ok.clone());
            let values = values.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    for (i, (release, end)) in barriers.iter().enumerate() {
                        if n < (i + 1) * step {
                            let ready = ReadySocket::new(&params);
                            release.wait();
                            let value = &values[(n * 7919 + i) % values.len()];
                            let deadline = Instant::now() + TIMEOUT;
                            let outcome = wire::timed_request(
                                &params,
                                ready,
                                DEFAULT_QUERY,
                                Some(value),
                                deadline,
                            );
                            ok.fetch_add(usize::from(outcome.2.is_ok()), Ordering::Relaxed);
                        }
                        end.wait();
                    }
                })
                .expect("a thread")
        })
        .collect();
    for (_, end) in barriers.iter() {
        end.wait();
    }
    let total = step * steps * (steps + 1) / 2;
    let ok = ok.load(Ordering::Relaxed);
    println!("{total} requests, {ok} ok");
    for thread in threads {
        let _ = thread.join();
    }
}
