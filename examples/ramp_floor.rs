//! The floor of pgstress's design: the "150-line program" of issue 12, built from pgstress's own
//! lean connection and nothing else. A ramp of burst steps (50, 100, ... as `pgstress run
//! --steps S --step N`), a native thread per request, all of a step released together at its
//! gate, each one connect + SCRAM (keys derived once) + the run's lookup + close, with the run's
//! startup settings (read-only, statement_timeout) and its parameter values, and no sampler,
//! no histogram, no classification, no logs, no report. What pgstress spends per request above
//! this is what its measurements cost.
//!
//! `cargo run --release --example ramp_floor -- DSN DATA_DIR [STEPS] [STEP]`, as
//! benches/compare.sh part c runs it; prints the requests and how many succeeded. The CPU is
//! the process's, as /usr/bin/time reports it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
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
    // The threads are made once, before the first step, and kept, as pgstress's keep theirs
    // (making them is in the process's CPU, as it is in pgstress's). A thread makes its next
    // socket and waits at the gate of its next step, a write lock the main thread holds until
    // the release: one wake-up a request. The last thread of a step to finish wakes the main
    // thread.
    let gates: Arc<Vec<RwLock<()>>> = Arc::new((0..steps).map(|_| RwLock::new(())).collect());
    let mut shut: Vec<_> = gates.iter().map(|gate| gate.write().unwrap()).collect();
    let done = Arc::new((Mutex::new(0usize), Condvar::new()));
    let ok = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..largest)
        .map(|n| {
            let (params, gates, ok, done) =
                (params.clone(), gates.clone(), ok.clone(), done.clone());
            let values = values.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    // Thread n takes part from the first step with more than n requests.
                    for i in n / step..steps {
                        let ready = ReadySocket::new(&params);
                        drop(gates[i].read().unwrap());
                        let value = &values[(n * 7919 + i) % values.len()];
                        let deadline = Instant::now() + TIMEOUT;
                        let outcome = wire::timed_request(
                            &params,
                            ready,
                            DEFAULT_QUERY,
                            Some(value),
                            deadline,
                        );
                        ok.fetch_add(usize::from(outcome.outcome.is_ok()), Ordering::Relaxed);
                        let mut finished = done.0.lock().unwrap();
                        *finished += 1;
                        if *finished == (i + 1) * step {
                            done.1.notify_one();
                        }
                    }
                })
                .expect("a thread")
        })
        .collect();
    for i in 0..steps {
        drop(shut.remove(0));
        let mut finished = done.0.lock().unwrap();
        while *finished < (i + 1) * step {
            finished = done.1.wait(finished).unwrap();
        }
        *finished = 0;
    }
    let total = step * steps * (steps + 1) / 2;
    let ok = ok.load(Ordering::Relaxed);
    println!("{total} requests, {ok} ok");
    for thread in threads {
        let _ = thread.join();
    }
}
