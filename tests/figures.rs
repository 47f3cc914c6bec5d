//! Every figure means what its name says: whose failure, latency from the release, achieved
//! concurrency, throughput, pgstress's own sessions, tolerance and partial steps, end to end
//! against real clusters.

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::*;

/// A run of 60 requests holding their connections, with 80 open files for the whole process.
fn out_of_open_files(mode: &[&str]) {
    let logs = tempfile::tempdir().unwrap();
    let mut command = run_command(logs.path());
    // The `postgres` crate's client builds a runtime per connection (several files each) and
    // panics when it cannot: 60 of them do not fit in 80 files.
    command.args(["--dsn", &shared_dsn(), "--client", "postgres"]);
    command.args([
        "--steps",
        "1",
        "--step",
        "60",
        "--no-stop",
        "--timeout",
        "60s",
    ]);
    command.args(["--query", "SELECT $1::text FROM pg_sleep(0.3)"]);
    command.args(mode);
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 80,
                rlim_max: 80,
            };
            match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let output = command.output().unwrap();
    let all = output_text(&output);
    assert!(output.status.success(), "{all}");
    assert!(
        !all.contains("panicked at"),
        "a panic reached the terminal:\n{all}"
    );
    let row = &step_rows(logs.path())[0];
    assert!(number(row, "client") > 0, "{row:?}\n{all}");
    assert_eq!(
        number(row, "ok") + number(row, "client"),
        60,
        "{row:?}\n{all}"
    );
    assert_eq!(number(row, "server_failed"), 0, "{row:?}");
    assert!(row["flags"].contains("client-errors"), "{row:?}");
    // The failures were reported as they happened, not waited out to the deadline (a request
    // thread that died with its panic would hold the step for 62 s). The successful requests
    // take a few seconds on a loaded machine: the postgres crate derives SCRAM keys for each.
    assert_eq!(number(row, "timeout"), 0, "{row:?}");
    assert!(float(row, "wall_s") < 30.0, "{row:?}");
    let verdict = &summary(logs.path())["verdict"];
    assert!(verdict["breaking_point"].is_null(), "{verdict}");
    assert_ne!(verdict["limit"]["side"], "server", "{verdict}");
    assert!(!all.contains("whose limit: the server's"), "{all}");
}

#[test]
fn running_out_of_open_files_is_the_clients_failure_and_ends_at_once() {
    out_of_open_files(&[]);
}

#[test]
fn a_pool_worker_out_of_open_files_fails_its_request_at_once() {
    out_of_open_files(&["--mode", "pool", "--workers", "60", "--connect-per-request"]);
}

#[test]
fn values_without_a_row_or_malformed_are_the_datas_failures_not_a_breaking_point() {
    let logs = tempfile::tempdir().unwrap();
    // 0 has no row; x is not an integer (SQLSTATE 22P02); the first value is good, for the
    // pre-flight request.
    let data = data_folder("values.csv", "1\n2\n3\n4\n5\n6\n7\n8\n0\nx\n");
    let query = "SELECT $1::int WHERE $1::int <> 0";
    let data_path = data.path().to_str().unwrap();
    let out = run_ok(
        logs.path(),
        &[
            "--dsn",
            &shared_dsn(),
            "--steps",
            "3",
            "--step",
            "20",
            "--query",
            query,
            "--data",
            data_path,
        ],
    );
    let rows = step_rows(logs.path());
    let no_row: u64 = rows.iter().map(|r| number(r, "no_row")).sum();
    let bad: u64 = rows.iter().map(|r| number(r, "bad_value")).sum();
    assert!(no_row > 0 && bad > 0, "{rows:?}");
    for row in &rows {
        assert_eq!(number(row, "server_failed"), 0, "{row:?}");
        let data_failed = number(row, "no_row") + number(row, "bad_value");
        assert_eq!(number(row, "failed"), data_failed, "{row:?}");
        if data_failed > 0 {
            assert!(row["flags"].contains("data-errors"), "{row:?}");
        }
    }
    let verdict = &summary(logs.path())["verdict"];
    assert!(verdict["breaking_point"].is_null(), "{verdict}\n{out}");
    assert_eq!(verdict["capacity"], 60, "{verdict}");
}

#[test]
fn a_thread_held_back_waits_from_the_release_and_is_cut_off_by_the_releases_deadline() {
    let held_back = |timeout: &str| {
        let logs = tempfile::tempdir().unwrap();
        let output = pgstress_run(logs.path())
            .env(pgstress::engine::burst::HOLD_BACK_VAR, "1500")
            .args(["--dsn", &shared_dsn(), "--steps", "1", "--step", "5"])
            .args([
                "--query",
                "SELECT $1::text",
                "--no-stop",
                "--timeout",
                timeout,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
        step_rows(logs.path()).remove(0)
    };
    let row = held_back("10s");
    assert_eq!(number(&row, "ok"), 5, "{row:?}");
    // The held thread's client waited from the release: 1.5 s and its own request.
    assert!(float(&row, "latency_max_ms") >= 1500.0, "{row:?}");
    assert!(float(&row, "queue_wait_p99_ms") >= 1500.0, "{row:?}");
    assert!(float(&row, "service_p99_ms") < 1500.0, "{row:?}");
    assert!(row["flags"].contains("started-late"), "{row:?}");
    assert!(number(&row, "peak_in_flight") < 5, "{row:?}");

    // With a 1 s deadline from the release, the held thread is late whatever its own time.
    let row = held_back("1s");
    assert_eq!(
        (number(&row, "ok"), number(&row, "timeout")),
        (4, 1),
        "{row:?}"
    );
    assert!(float(&row, "latency_max_ms") < 1000.0, "{row:?}");
}

#[test]
fn a_burst_the_server_serialises_falls_short_of_its_concurrency_and_one_it_holds_does_not() {
    let burst = |dsn: &str, requests: &str, query: &str| {
        let logs = tempfile::tempdir().unwrap();
        run_ok(
            logs.path(),
            &[
                "--dsn",
                dsn,
                "--steps",
                "1",
                "--step",
                requests,
                "--no-stop",
                "--query",
                query,
            ],
        );
        step_rows(logs.path()).remove(0)
    };
    // Each request holds its connection for two seconds: all 30 are connected at once.
    let held = burst(&shared_dsn(), "30", "SELECT $1::text FROM pg_sleep(2)");
    assert_eq!(number(&held, "ok"), 30, "{held:?}");
    assert_eq!(number(&held, "concurrency_asked"), 30, "{held:?}");
    assert!(number(&held, "peak_connected") >= 27, "{held:?}");
    assert!(number(&held, "server_connections_peak") >= 20, "{held:?}");
    assert!(!held["flags"].contains("accepted-slowly"), "{held:?}");
    assert!(!held["flags"].contains("started-late"), "{held:?}");

    // A query of no time through a door that lets one connection in every 10 ms, the first
    // after a second: every thread is in flight, waiting at the door, and each is done before
    // the next one connects. The threads were all in flight; the server's connections were not.
    let dsn = shared_dsn();
    let port = dsn
        .split_whitespace()
        .find_map(|word| word.strip_prefix("port="))
        .unwrap();
    let door = slow_door(
        port.parse().unwrap(),
        Duration::from_secs(1),
        Duration::from_millis(10),
    );
    let through_door = dsn.replace(&format!("port={port}"), &format!("port={door}"));
    let quick = burst(&through_door, "100", "SELECT $1::text");
    assert_eq!(number(&quick, "ok"), 100, "{quick:?}");
    assert!(number(&quick, "peak_in_flight") >= 90, "{quick:?}");
    assert!(number(&quick, "peak_connected") < 90, "{quick:?}");
    assert!(quick["flags"].contains("accepted-slowly"), "{quick:?}");
    assert!(!quick["flags"].contains("started-late"), "{quick:?}");
}

#[test]
fn throughput_counts_successes_and_attempts_beside_them() {
    let (_guard, dsn) = small_server();
    let logs = tempfile::tempdir().unwrap();
    run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--steps",
            "1",
            "--step",
            "40",
            "--no-stop",
            "--query",
            "SELECT $1::text FROM pg_sleep(0.5)",
        ],
    );
    let row = &step_rows(logs.path())[0];
    let (ok, refused) = (number(row, "ok"), number(row, "too_many_clients"));
    assert!(ok > 0 && refused > 0, "{row:?}");
    let wall = float(row, "wall_s");
    let near = |figure: f64, expected: f64| (figure - expected).abs() <= expected * 0.01 + 0.1;
    assert!(
        near(float(row, "throughput_rps"), ok as f64 / wall),
        "{row:?}"
    );
    assert!(near(float(row, "attempts_rps"), 40.0 / wall), "{row:?}");
    assert!(
        float(row, "throughput_rps") < float(row, "attempts_rps"),
        "{row:?}"
    );
}

#[test]
fn sessions_already_open_shrink_the_usable_connections_and_are_not_counted_as_pgstresss() {
    let (_guard, dsn) = small_server();
    // Five idle sessions of someone else, one of them even named like pgstress's requests.
    let mut others: Vec<postgres::Client> = (0..5)
        .map(|k| {
            let dsn = match k {
                0 => format!("{dsn} application_name=pgstress-other"),
                _ => dsn.clone(),
            };
            postgres::Client::connect(&dsn, postgres::NoTls).unwrap()
        })
        .collect();
    let logs = tempfile::tempdir().unwrap();
    let out = run_ok(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--steps",
            "3",
            "--start",
            "10",
            "--step",
            "4",
            "--no-stop",
            "--query",
            "SELECT $1::text FROM pg_sleep(1)",
        ],
    );
    for client in &mut others {
        client.simple_query("SELECT 1").unwrap(); // they were open all along
    }
    let server = &summary(logs.path())["server"];
    let open = server["sessions_at_start"].as_u64().unwrap();
    assert!(open >= 5, "{server}");
    // A superuser may use the reserve: everything not open is free.
    assert_eq!(server["superuser"], true, "{server}");
    let usable = 20 - open;
    assert!(
        out.contains(&format!("{open} sessions open): {usable} free")),
        "{out}"
    );
    let rows = step_rows(logs.path());
    // 10 fit beside the others; 18 cannot, and the step says so.
    assert_eq!(number(&rows[0], "too_many_clients"), 0, "{:?}", rows[0]);
    assert!(!rows[0]["flags"].contains("over-max-connections"));
    let peak = number(&rows[0], "server_connections_peak");
    assert!((8..=10).contains(&peak), "pgstress's own 10: {:?}", rows[0]);
    assert!(number(&rows[2], "too_many_clients") > 0, "{:?}", rows[2]);
    assert!(
        rows[2]["flags"].contains("over-max-connections"),
        "{:?}",
        rows[2]
    );
    assert!(number(&rows[2], "server_connections_peak") <= usable);
}

#[test]
fn a_small_share_of_server_failures_is_tolerated_only_when_asked() {
    let (_guard, dsn) = small_server();
    // 20 requests holding their connections against 20 slots less the monitor's: one or two
    // are refused, a tenth at most.
    let run = |tolerate: &str| {
        let logs = tempfile::tempdir().unwrap();
        run_ok(
            logs.path(),
            &[
                "--dsn",
                &dsn,
                "--steps",
                "1",
                "--step",
                "20",
                "--no-stop",
                "--tolerate",
                tolerate,
                "--query",
                "SELECT $1::text FROM pg_sleep(1)",
            ],
        );
        let row = step_rows(logs.path()).remove(0);
        (row, summary(logs.path())["verdict"].clone())
    };
    let (row, tolerated) = run("0.2");
    let refused = number(&row, "server_failed");
    assert!((1..=4).contains(&refused), "{row:?}");
    assert!(tolerated["breaking_point"].is_null(), "{tolerated}");
    assert_eq!(tolerated["capacity"], 20, "{tolerated}");

    let (row, strict) = run("0");
    assert!(number(&row, "server_failed") > 0, "{row:?}");
    assert_eq!(strict["breaking_point"]["step"], 1, "{strict}");
    assert!(strict["capacity"].is_null(), "{strict}");
}

#[test]
fn a_rate_step_interrupted_half_way_is_partial_and_not_in_the_capacity() {
    let logs = tempfile::tempdir().unwrap();
    let mut child = run_command(logs.path())
        .args(["--dsn", &shared_dsn(), "--mode", "rate", "--duration", "3s"])
        .args(["--steps", "2", "--step", "10", "--no-stop"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_steps(logs.path(), 1, Duration::from_secs(60));
    // Step 2 offers 20/s for 3 s: 1.2 s in, about half of it is unsent.
    std::thread::sleep(Duration::from_millis(1200));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{rows:?}\n{}", output_text(&output));
    let (first, cut) = (&rows[0], &rows[1]);
    assert_eq!(number(first, "unsent"), 0, "{first:?}");
    assert!(!first["flags"].contains("partial"), "{first:?}");
    assert_eq!(
        number(cut, "requests"),
        60,
        "the plan, sent or not: {cut:?}"
    );
    let unsent = number(cut, "unsent");
    assert!((10..=50).contains(&unsent), "{cut:?}");
    assert_eq!(
        number(cut, "ok") + number(cut, "failed") + number(cut, "dropped") + unsent,
        60,
        "{cut:?}"
    );
    assert!(cut["flags"].contains("partial"), "{cut:?}");
    let summary = summary(logs.path());
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["verdict"]["capacity"], 10, "{}", summary["verdict"]);
}
