//! Outages measured under load, against real clusters broken on purpose: the outage pgstress
//! measures is compared with the downtime the test reads on its own (its clock around the
//! fault, the new server's `pg_postmaster_start_time()`), within a tolerance derived from
//! how finely pgstress samples (its 100 ms throughput bins, the interval between requests).
//! Nothing here depends on how fast the machine is: every bound is the fault's own timing
//! plus that granularity.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use pgstress::pg::local::server::ThrowawayServer;

/// The width of the bins pgstress counts throughput in (docs/outages.md).
const BIN: Duration = Duration::from_millis(100);

fn control(server: &ThrowawayServer) -> postgres::Client {
    postgres::Client::connect(&server.dsn(), postgres::NoTls).unwrap()
}

/// Transactions committed in the database so far (ended backends' included).
fn commits(client: &mut postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Waits until `count` more transactions than `from` committed: the load is running.
fn wait_for_commits(server: &ThrowawayServer, from: i64, count: i64) {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let mut client = control(server);
        if commits(&mut client) >= from + count {
            return;
        }
        assert!(Instant::now() < deadline, "the load never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seconds(value: &serde_json::Value) -> Duration {
    Duration::from_secs_f64(value.as_f64().unwrap_or_else(|| panic!("{value}")))
}

/// ok + failed + dropped + unsent = scheduled, and nothing lost.
fn assert_every_request_accounted_for(logs: &Path, scheduled: u64) {
    let rows = step_rows(logs);
    let row = &rows[0];
    let accounted: u64 = ["ok", "failed", "dropped", "unsent"]
        .iter()
        .map(|column| number(row, column))
        .sum();
    assert_eq!(
        (number(row, "requests"), accounted),
        (scheduled, scheduled),
        "{row:?}"
    );
    assert_eq!(summary(logs)["steps"][0]["lost"], 0);
}

/// An outage pgstress caused (`fault`), or one from outside the load came back from, is no
/// breaking point: the step is judged on its requests outside it, and the verdict says the
/// outage; the steps CSV has it too, as the summary.
fn assert_judged_apart(logs: &Path, stdout: &str, fault: Option<&str>) {
    let summary = summary(logs);
    let verdict = &summary["verdict"];
    assert!(verdict["breaking_point"].is_null(), "{verdict:#}\n{stdout}");
    let said = match fault {
        Some(fault) => {
            format!("caused by pgstress (--fault {fault}), not the server's breaking point")
        }
        None => "throughput came back; not a capacity breaking point".to_owned(),
    };
    assert!(
        stdout.contains("step 1: outage ") && stdout.contains(&said),
        "{said}: {stdout}"
    );
    let row = &step_rows(logs)[0];
    let outage = &summary["steps"][0]["outage"];
    assert_eq!(
        float(row, "outage_start_s"),
        outage["start"].as_f64().unwrap()
    );
    assert_eq!(row["outage_caused_by"], fault.unwrap_or(""));
    assert_eq!(number(row, "lost"), 0);
}

#[test]
fn a_restart_in_the_middle_of_a_rate_step_is_measured_as_the_real_downtime() {
    let mut server = start_server(&[]);
    let dsn = server.dsn();
    let logs = tempfile::tempdir().unwrap();
    let before = commits(&mut control(&server));
    // 200 requests a second for 8 s, a new connection each: 20 successes a 100 ms bin.
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "rate",
            "--steps",
            "1",
            "--step",
            "200",
            "--max-inflight",
            "32",
            "--duration",
            "8s",
            "--timeout",
            "2s",
            "--no-report",
        ],
    );
    wait_for_commits(&server, before, 600);
    let stopped = SystemTime::now();
    // Down for a second between the stop and the start: an outage well above the granularity.
    server.restart_after(Duration::from_secs(1)).unwrap();
    let ready = SystemTime::now();
    let started: f64 = control(&server)
        .query_one(
            "SELECT extract(epoch FROM pg_postmaster_start_time())::float8",
            &[],
        )
        .unwrap()
        .get(0);
    let output = finish_run(run);
    let stdout = text(&output.stdout);
    let since_stop = |at: SystemTime| at.duration_since(stopped).unwrap_or_default();
    let new_postmaster = since_stop(UNIX_EPOCH + Duration::from_secs_f64(started));
    let answering = since_stop(ready);

    assert_every_request_accounted_for(logs.path(), 1600);
    assert_judged_apart(logs.path(), &stdout, None);
    let outage = &summary(logs.path())["steps"][0]["outage"];
    assert!(outage.is_object(), "an outage in the summary: {stdout}");
    let (start, first_success) = (seconds(&outage["start"]), seconds(&outage["first_success"]));
    let measured = first_success - start;
    // The first failure came at most an interval (5 ms) and a request's latency after the
    // stop, and not before it; the first success came after the new postmaster started, and
    // at most an interval and a request's latency after the server answered the test again.
    // A request's latency: at most the step's slowest success (its own figure, not the
    // machine's speed).
    let interval = Duration::from_millis(5);
    let slowest =
        Duration::from_secs_f64(float(&step_rows(logs.path())[0], "latency_max_ms") / 1e3);
    let low = new_postmaster.saturating_sub(interval + slowest);
    let high = answering + interval + slowest;
    println!(
        "restart: measured {measured:?} within [{low:?}, {high:?}]; new postmaster after \
         {new_postmaster:?}, answering within {answering:?}\n{stdout}"
    );
    assert!(
        low <= measured && measured <= high,
        "measured {measured:?}, the new postmaster started {new_postmaster:?} after the stop \
         and answered within {answering:?}: {outage:#}\n{stdout}"
    );
    // Throughput is back (95% of before, docs/outages.md) no sooner than the first success's bin.
    let end = seconds(&outage["end"]);
    assert!(end + BIN > first_success, "{outage:#}");
    // Every failure is the server's going or coming: refused, shutdown or starting.
    let failures = outage["failures"].as_object().unwrap();
    assert!(
        failures
            .keys()
            .all(|class| ["refused", "shutdown", "starting"].contains(&class.as_str())),
        "{failures:?}"
    );
    assert_eq!(outage["unrecovered"], 0, "{outage:#}");
    // The open-loop schedule went on through the outage from its senders (`--max-inflight`),
    // each connecting again for each request: several senders failed, and each was back.
    let gaps = outage["gaps"].as_array().unwrap();
    assert!(
        gaps.len() > 1 && gaps.iter().all(|g| g["to"].is_number()),
        "{outage:#}"
    );
    assert!(
        stdout.contains("outage ") && stdout.contains("nothing lost"),
        "{stdout}"
    );
}

#[test]
fn killed_backends_cost_every_pool_worker_one_reconnect() {
    let server = start_server(&[]);
    let dsn = server.dsn();
    let logs = tempfile::tempdir().unwrap();
    // Four workers, each request at least 4 ms: 3,000 requests take at least 3 s.
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--dsn",
            &dsn,
            "--mode",
            "pool",
            "--workers",
            "4",
            "--steps",
            "1",
            "--step",
            "3000",
            "--query",
            "SELECT 1 FROM pg_sleep(0.004)",
            "--no-report",
        ],
    );
    let mut client = control(&server);
    // Running it, not only prepared on a connection opened before step 1.
    let busy = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgstress' \
                AND query LIKE '%pg_sleep(0.004)%' AND state = 'active'";
    let deadline = Instant::now() + RUN_DEADLINE;
    while client.query_one(busy, &[]).unwrap().get::<_, i64>(0) < 4 {
        assert!(Instant::now() < deadline, "the workers never ran the query");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // a throughput to come back to
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'pgstress' AND query LIKE '%pg_sleep(0.004)%'",
            &[],
        )
        .unwrap()
        .get(0);
    let output = finish_run(run);
    let stdout = text(&output.stdout);
    println!("kill-backends:\n{stdout}");
    assert_eq!(killed, 4, "{stdout}");
    assert_every_request_accounted_for(logs.path(), 3000);
    let step = &summary(logs.path())["steps"][0];
    assert_eq!(
        step["failed"], 4,
        "one request a killed connection: {stdout}"
    );
    let outage = &step["outage"];
    let gaps = outage["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 4, "every worker had a gap: {outage:#}");
    for gap in gaps {
        // One failure (the request on the killed connection, in the server's words: 57P01,
        // terminating connection due to administrator command; or, when the session was
        // terminated between two requests, a connection reset before the words were read),
        // then a new connection served the next request: one reconnect.
        assert_one_killed_request(gap);
        assert!(gap["to"].is_number(), "reconnected: {gap}");
    }
    let clients: std::collections::BTreeSet<u64> =
        gaps.iter().map(|g| g["client"].as_u64().unwrap()).collect();
    assert_eq!(clients.len(), 4, "{outage:#}");
}

/// The instants a `--fault` said it acted at, from the load's start: "... at 2.001 s, ... at
/// 2.314 s".
fn fault_instants(stdout: &str) -> (Duration, Duration) {
    let line = stdout
        .lines()
        .find(|line| line.contains("fault "))
        .unwrap_or_else(|| panic!("no fault line: {stdout}"));
    let times: Vec<Duration> = line
        .split(" at ")
        .skip(1)
        .map(|rest| rest.split(' ').next().unwrap().parse::<f64>().unwrap())
        .map(Duration::from_secs_f64)
        .collect();
    assert_eq!(times.len(), 2, "{line}");
    (times[0], times[1])
}

/// A rate run on the throwaway server with `fault`, 50 requests a second for 8 s (a new
/// connection each: a frozen postmaster's backlog stays small, and the step goes on 3 s after
/// the fault), its report drawn; its stdout and its step's outage.
fn rate_run_with_fault(fault: &str, timeout: &str) -> (String, serde_json::Value) {
    let logs = tempfile::tempdir().unwrap();
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--mode",
            "rate",
            "--steps",
            "1",
            "--step",
            "50",
            "--duration",
            "8s",
            "--timeout",
            timeout,
            "--fault",
            fault,
        ],
    );
    let output = finish_run(run);
    let stdout = text(&output.stdout);
    assert_every_request_accounted_for(logs.path(), 400);
    let mut outage = summary(logs.path())["steps"][0]["outage"].clone();
    assert!(outage.is_object(), "{stdout}{}", text(&output.stderr));
    let slowest = float(&step_rows(logs.path())[0], "latency_max_ms");
    outage["max_ms"] = slowest.into(); // the run's own latency, for its tolerance
    assert_judged_apart(logs.path(), &stdout, Some(fault));
    // The report draws the step's timeline, the outage shaded.
    let report = std::fs::read_to_string(log_file(logs.path(), "_report.html")).unwrap();
    assert!(report.contains("<h2>Outages</h2>") && report.contains("outage-step-1"));
    (stdout, outage)
}

#[test]
fn a_restart_caused_by_pgstress_is_measured_as_the_one_caused_from_outside() {
    let (stdout, outage) = rate_run_with_fault("restart@2s", "2s");
    println!("--fault restart@2s:\n{stdout}");
    let (stop, answered) = fault_instants(&stdout);
    let start = seconds(&outage["start"]);
    let measured = seconds(&outage["first_success"]) - start;
    // As for a restart from outside: the first failure is the first request sent after the
    // stop (20 ms apart), the first success at most an interval and a request's latency (the
    // step's slowest) after the new server answered.
    let interval = Duration::from_millis(20);
    let slowest = Duration::from_secs_f64(outage["max_ms"].as_f64().unwrap() / 1e3);
    assert!(
        start + Duration::from_millis(50) >= stop && start <= stop + interval + slowest,
        "first failure at {start:?}, the stop at {stop:?}: {outage:#}"
    );
    assert!(
        measured <= answered - stop + interval + slowest,
        "measured {measured:?}, down from {stop:?} to {answered:?}: {outage:#}"
    );
    // The same restart from outside (the test's own fast stop and start, what `pg_ctl
    // restart` does), in the same run: measured the same, each against its own downtime
    // (stop to answering again), within an interval and both runs' slowest requests.
    let (outside, outside_down, outside_slowest) = restart_from_outside();
    let error = |measured: Duration, down: Duration| measured.as_secs_f64() - down.as_secs_f64();
    let (ours, theirs) = (
        error(measured, answered - stop),
        error(outside, outside_down),
    );
    let tolerance = (interval + slowest + outside_slowest).as_secs_f64();
    println!(
        "restart: --fault measured {measured:?} for {:?} down; from outside {outside:?} for \
         {outside_down:?} down",
        answered - stop
    );
    assert!(
        (ours - theirs).abs() <= tolerance,
        "--fault: measured {measured:?} for {:?} down; from outside: {outside:?} for \
         {outside_down:?}; tolerance {tolerance} s",
        answered - stop
    );
}

/// The run of `rate_run_with_fault` against a server of the test's own, restarted by the test
/// 2 s into the load: the measured outage (first failure to first success), the downtime
/// (from the stop to the server answering the test again) and the step's slowest success.
fn restart_from_outside() -> (Duration, Duration, Duration) {
    let mut server = start_server(&[]);
    let logs = tempfile::tempdir().unwrap();
    let before = commits(&mut control(&server));
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--dsn",
            &server.dsn(),
            "--mode",
            "rate",
            "--steps",
            "1",
            "--step",
            "50",
            "--duration",
            "8s",
            "--timeout",
            "2s",
            "--no-report",
        ],
    );
    wait_for_commits(&server, before, 100);
    let stopped = Instant::now();
    server.restart().unwrap();
    let down = stopped.elapsed();
    let output = finish_run(run);
    assert_every_request_accounted_for(logs.path(), 400);
    assert_judged_apart(logs.path(), &text(&output.stdout), None);
    let outage = &summary(logs.path())["steps"][0]["outage"];
    let measured = seconds(&outage["first_success"]) - seconds(&outage["start"]);
    let slowest = float(&step_rows(logs.path())[0], "latency_max_ms") / 1e3;
    (measured, down, Duration::from_secs_f64(slowest))
}

#[test]
fn a_frozen_server_is_an_outage_of_the_freeze_whose_failures_are_timeouts() {
    let (stdout, outage) = rate_run_with_fault("freeze@2s:3s", "1s");
    println!("--fault freeze@2s:3s:\n{stdout}");
    let (stopped, resumed) = fault_instants(&stdout);
    let frozen = resumed - stopped;
    let measured = seconds(&outage["first_success"]) - seconds(&outage["start"]);
    // The first timeout is a request sent at most an interval (20 ms) after the stop, or one
    // in flight at it (a request's latency before: the step's slowest success); nothing
    // succeeds until the resume, and the requests pending then are answered within a
    // request's latency.
    let interval = Duration::from_millis(20);
    let slowest = Duration::from_secs_f64(outage["max_ms"].as_f64().unwrap() / 1e3);
    let (low, high) = (
        frozen.saturating_sub(interval),
        frozen + 2 * slowest + interval,
    );
    assert!(
        low <= measured && measured <= high,
        "measured {measured:?}, frozen {frozen:?}: {outage:#}\n{stdout}"
    );
    let failures = outage["failures"].as_object().unwrap();
    assert_eq!(
        failures.keys().collect::<Vec<_>>(),
        ["timeout"],
        "a frozen server closes nothing: {failures:?}"
    );
}

#[test]
fn a_failover_to_the_standby_is_an_outage_after_which_the_load_runs_on_the_new_primary() {
    let logs = tempfile::tempdir().unwrap();
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--standby",
            "--mode",
            "rate",
            "--steps",
            "1",
            "--step",
            "50",
            "--duration",
            "5s",
            "--timeout",
            "1s",
            "--fault",
            "failover@2s",
            "--log-requests",
            "--no-report",
        ],
    );
    let output = finish_run(run);
    let stdout = text(&output.stdout);
    println!("--standby --fault failover@2s:\n{stdout}");
    assert_every_request_accounted_for(logs.path(), 250);
    assert_judged_apart(logs.path(), &stdout, Some("failover@2s"));
    let (stopped, _) = fault_instants(&stdout);
    let step = &summary(logs.path())["steps"][0];
    let outage = &step["outage"];
    assert!(
        outage["end"].is_number(),
        "the load came back: {outage:#}\n{stdout}"
    );
    assert!(
        seconds(&outage["start"]) + Duration::from_millis(50) >= stopped,
        "{outage:#}"
    );
    assert_eq!(
        outage["gaps"].as_array().unwrap().len(),
        1,
        "the schedule: {outage:#}"
    );
    // Both hosts took requests: the primary until its stop, then the promoted standby. No
    // request succeeded after the stop but on the standby: the old primary is gone.
    let nodes: Vec<u64> = (step["requests_by_node"].as_str().unwrap().split(';'))
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        nodes.len() == 2 && nodes[0] > 0 && nodes[1] > 0,
        "{nodes:?}"
    );
    let failures = outage["failures"].as_object().unwrap();
    assert!(
        failures.keys().all(
            |c| ["refused", "shutdown", "starting", "read_only", "timeout"].contains(&c.as_str())
        ),
        "{failures:?}"
    );
    assert_the_old_primary_took_nothing_after_its_stop(logs.path(), &stdout);
    assert!(
        stdout.contains("throwaway standby stopped and removed"),
        "{stdout}"
    );
}

/// Request by request (`--log-requests`: each names the host it reached, 0 the old primary,
/// 1 the standby): none started on the old primary after it was stopped, and none succeeded
/// there after; requests went on, and succeeded, on the promoted standby. The fault's clock
/// starts at most the samplers' start before the step's: a request's time on it is no earlier
/// than its start in the step, so a request started on the old primary after its stop is
/// caught whenever its start in the step is too.
fn assert_the_old_primary_took_nothing_after_its_stop(logs: &Path, stdout: &str) {
    let line = (stdout.lines())
        .find(|line| line.contains("primary stopped (immediate) at "))
        .unwrap_or_else(|| panic!("no failover line: {stdout}"));
    let stopped_ms = 1000.0
        * (line.split(" to ").nth(1))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|at| at.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no stop's end in {line}"));
    let rows = read_csv_with_header(&log_file(logs, "_requests.csv"));
    let time = |row: &Row, column: &str| row[column].parse::<f64>().unwrap_or(f64::NAN);
    let on = |node: &'static str| rows.iter().filter(move |row| row["node"] == node);
    let late: Vec<&Row> = on("0")
        .filter(|row| {
            let start = time(row, "start_ms");
            let end = start + time(row, "service_ms");
            start > stopped_ms || (row["outcome"] == "ok" && end > stopped_ms)
        })
        .collect();
    assert!(
        late.is_empty(),
        "the old primary took requests after its stop at {stopped_ms} ms: {late:?}"
    );
    let after = on("1")
        .filter(|row| row["outcome"] == "ok" && time(row, "start_ms") > stopped_ms)
        .count();
    assert!(after > 0, "no request succeeded on the promoted standby");
    assert!(
        on("0").count() > 0,
        "the old primary took the load before its stop"
    );
}

/// A long single step of the pool (`--steps 1 --duration`), its sessions terminated by
/// `--fault kill-backends`: the step runs on to its end, each worker fails once and is back
/// after one reconnect, the verdict says the fault was pgstress's, and nothing is lost.
#[test]
fn a_timed_pool_step_lives_through_kill_backends_each_worker_reconnecting_once() {
    let logs = tempfile::tempdir().unwrap();
    let run = spawn_pgstress(
        logs.path(),
        &[
            "--mode",
            "pool",
            "--workers",
            "4",
            "--steps",
            "1",
            "--duration",
            "4s",
            "--query",
            "SELECT 1 FROM pg_sleep(0.004)",
            "--fault",
            "kill-backends@2s",
            "--no-report",
        ],
    );
    let output = finish_run(run);
    let stdout = text(&output.stdout);
    println!("--fault kill-backends@2s, a timed pool step:\n{stdout}");
    assert!(
        stdout.contains("fault kill-backends@2s: 4 sessions terminated at "),
        "{stdout}"
    );
    let row = &step_rows(logs.path())[0];
    let accounted: u64 = ["ok", "failed", "dropped", "unsent"]
        .iter()
        .map(|column| number(row, column))
        .sum();
    assert_eq!(accounted, number(row, "requests"), "{row:?}");
    assert_eq!(
        number(row, "failed"),
        4,
        "one request a killed connection: {stdout}"
    );
    assert!(
        float(row, "wall_s") >= 4.0,
        "the step ran to its end: {row:?}"
    );
    assert_judged_apart(logs.path(), &stdout, Some("kill-backends@2s"));
    let outage = &summary(logs.path())["steps"][0]["outage"];
    let gaps = outage["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 4, "every worker: {outage:#}");
    for gap in gaps {
        assert_one_killed_request(gap);
        assert!(gap["to"].is_number(), "back after one reconnect: {gap}");
    }
}

/// A worker's gap of one failure, its session terminated: `shutdown` (57P01) when the worker
/// read the server's words, `refused` when it wrote first and met the reset.
fn assert_one_killed_request(gap: &serde_json::Value) {
    let failures = gap["failures"].as_object().unwrap();
    let count: u64 = failures.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(count, 1, "{gap}");
    assert!(
        failures.contains_key("shutdown") || failures.contains_key("refused"),
        "{gap}"
    );
}

/// A two-step run with `fault` and the options of `load`: its stdout, summary and steps'
/// rows, every request of each step accounted for.
fn two_steps_with_fault(load: &[&str], fault: &str) -> (String, serde_json::Value, Vec<Row>) {
    let logs = tempfile::tempdir().unwrap();
    let mut args = vec!["--steps", "2", "--no-report", "--fault", fault];
    args.extend(load);
    let output = finish_run(spawn_pgstress(logs.path(), &args));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        let accounted: u64 = ["ok", "failed", "dropped", "unsent"]
            .iter()
            .map(|column| number(row, column))
            .sum();
        assert_eq!(number(row, "requests"), accounted, "{row:?}");
        assert_eq!(number(row, "lost"), 0);
    }
    (stdout, summary(logs.path()), rows)
}

/// The fault reached step 2 from before its release: step 2 has an outage, pgstress's,
/// judged apart, which the verdict says; no step is the breaking point.
fn assert_step_2_reached_from_before(fault: &str, stdout: &str, summary: &serde_json::Value) {
    let verdict = &summary["verdict"];
    assert!(verdict["breaking_point"].is_null(), "{verdict:#}\n{stdout}");
    let outages = verdict["outages"].as_array().unwrap();
    let second = (outages.iter())
        .find(|outage| outage["step"] == 2)
        .unwrap_or_else(|| panic!("step 2 has no outage in the verdict: {verdict:#}\n{stdout}"));
    assert_eq!(second["caused_by"], fault, "{second:#}");
    assert_eq!(second["fault_began_before"], true, "{second:#}");
    assert_eq!(second["breaking_point"], false, "{second:#}");
    assert!(
        stdout.contains(&format!(
            "step 2: {}; caused by pgstress (--fault {fault}), not the server's breaking \
             point: the fault began before step 2, which is judged on its requests after the outage",
            second["line"].as_str().unwrap()
        )),
        "{stdout}"
    );
    let outage = &summary["steps"][1]["outage"];
    assert_eq!(outage["caused_by"], fault);
}

/// The classes of the failures in step `index`'s outage.
fn outage_classes(summary: &serde_json::Value, index: usize) -> Vec<String> {
    let outage = &summary["steps"][index]["outage"];
    let failures = outage["failures"].as_object().unwrap();
    failures.keys().cloned().collect()
}

/// Rate steps of 50 then 100 requests a second for `duration`, `pause` between them.
fn rate_steps<'a>(duration: &'a str, pause: &'a str) -> [&'a str; 10] {
    [
        "--mode",
        "rate",
        "--step",
        "50",
        "--duration",
        duration,
        "--pause",
        pause,
        "--timeout",
        "1s",
    ]
}

/// A freeze caused in the pause between two steps and still on when the second begins: the
/// second step's first requests fail before any succeeds, so it has no outage of its own
/// reckoning (no success before the failures); the fault's instants make it the fault's.
#[test]
fn a_fault_in_the_pause_between_steps_is_not_the_next_steps_breaking_point() {
    // Step 1 ends by 5 s (4 s and its last requests' 1 s deadline), before the freeze at
    // 6 s; step 2 begins 4 s after step 1's end, by 9 s, before the freeze ends at 10 s.
    let fault = "freeze@6s:4s";
    let (stdout, summary, rows) = two_steps_with_fault(&rate_steps("4s", "4s"), fault);
    println!("--fault {fault} in the pause:\n{stdout}");
    let (stopped, resumed) = fault_instants(&stdout);
    let step_1_end = Duration::from_secs_f64(float(&rows[0], "wall_s"));
    let step_2_release = step_1_end + Duration::from_secs(4);
    assert!(
        step_1_end < stopped && stopped < step_2_release && step_2_release < resumed,
        "the freeze ({stopped:?} to {resumed:?}) is not in the pause from {step_1_end:?} and \
         on at step 2's release: {stdout}"
    );
    assert!(summary["steps"][0]["outage"].is_null(), "{stdout}");
    assert!(number(&rows[1], "failed") > 0, "{stdout}");
    assert_step_2_reached_from_before(fault, &stdout, &summary);
    assert_eq!(outage_classes(&summary, 1), ["timeout"], "{stdout}");
    assert_eq!(rows[1]["outage_caused_by"], fault);
}

/// A freeze caused in step 1 that runs on into step 2: step 1 is judged on its requests
/// before the outage, step 2, whose first requests fail, on those after it; neither is the
/// breaking point, and the verdict says both outages.
#[test]
fn an_outage_that_runs_on_into_the_next_step_is_not_its_breaking_point() {
    // Step 1 runs from 0 to 3 s and its last requests' deadline (4 s at most); the freeze,
    // from 2 s to 5 s, outlasts it.
    let fault = "freeze@2s:3s";
    let (stdout, summary, rows) = two_steps_with_fault(&rate_steps("3s", "0s"), fault);
    println!("--fault {fault} across the step boundary:\n{stdout}");
    let (stopped, resumed) = fault_instants(&stdout);
    let step_1_end = Duration::from_secs_f64(float(&rows[0], "wall_s"));
    assert!(
        stopped < step_1_end && step_1_end < resumed,
        "the freeze ({stopped:?} to {resumed:?}) does not span step 1's end at {step_1_end:?}: \
         {stdout}"
    );
    let first = &summary["verdict"]["outages"][0];
    assert_eq!(
        (
            &first["step"],
            &first["caused_by"],
            &first["fault_began_before"]
        ),
        (&1.into(), &fault.into(), &false.into()),
        "{first:#}"
    );
    assert!(
        stdout.contains(
            "caused by pgstress (--fault freeze@2s:3s), not the server's breaking point: step 1 \
             is judged on its requests before the outage"
        ),
        "{stdout}"
    );
    assert_step_2_reached_from_before(fault, &stdout, &summary);
    assert_eq!(outage_classes(&summary, 1), ["timeout"], "{stdout}");
    assert_eq!(rows[1]["outage_caused_by"], fault);
}

/// A restart in the pause between two timed pool steps closes the pool's 4 sessions: each
/// worker's first request of step 2 fails, once, when it comes to it, after the server is
/// back. Those failures are the fault's, never step 2's breaking point.
#[test]
fn a_restart_in_the_pause_costs_each_pool_worker_one_request_not_a_breaking_point() {
    // Step 1 ends at 3 s (its last requests a few ms after), the restart at 4 s, step 2 at 6 s.
    let fault = "restart@4s";
    let load = [
        "--mode",
        "pool",
        "--workers",
        "4",
        "--duration",
        "3s",
        "--pause",
        "3s",
    ];
    let (stdout, summary, rows) = two_steps_with_fault(&load, fault);
    println!("--fault {fault} in the pause of a pool:\n{stdout}");
    let (stopped, answered) = fault_instants(&stdout);
    let step_1_end = Duration::from_secs_f64(float(&rows[0], "wall_s"));
    assert!(
        step_1_end < stopped && answered < step_1_end + Duration::from_secs(3),
        "the restart ({stopped:?} to {answered:?}) is not in the pause from {step_1_end:?}: \
         {stdout}"
    );
    assert_eq!(number(&rows[0], "failed"), 0, "{stdout}");
    assert_step_2_reached_from_before(fault, &stdout, &summary);
    let outage = &summary["steps"][1]["outage"];
    // One failure per worker, each `shutdown` or `refused` (assert_one_killed_request), and
    // each worker back after one reconnect; nothing of step 2 judged failed.
    assert_eq!(number(&rows[1], "failed"), 4, "{stdout}");
    let gaps = outage["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 4, "{outage:#}");
    gaps.iter().for_each(assert_one_killed_request);
    assert_eq!(outage["apart"]["server_failed"], 0, "{outage:#}");
}
