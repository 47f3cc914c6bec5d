//! Load from several agents on loopback against a real throwaway server: a coordinator and
//! agent processes, the merge, the release in sync, the loss of an agent, and the refusals.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{
    log_file, one_line_error, output_text, pgstress, read_csv_with_header, shared_dsn, step_rows,
    summary,
};

use pgstress::model::hdr;

/// A free port below the ephemeral range for the coordinator to listen on.
fn coordinator_address() -> String {
    let loopback: IpAddr = [127, 0, 0, 1].into();
    let port = pgstress::sys::ports::free_listener_port(loopback).expect("a free port");
    format!("127.0.0.1:{port}")
}

/// `pgstress agent` dialing `address`, sending to `dsn`, with no other target or token.
fn agent(address: &str, dsn: &str, name: &str) -> Command {
    let mut cmd = pgstress();
    cmd.env_remove("PGSTRESS_TOKEN")
        .args([
            "agent",
            "--coordinator",
            address,
            "--dsn",
            dsn,
            "--name",
            name,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The coordinator: a run with `agents` agents on `address`, logging into `logs`.
fn coordinator(logs: &Path, address: &str, agents: u32, extra: &[&str]) -> Command {
    let mut cmd = common::run_command(logs);
    cmd.env_remove("PGSTRESS_TOKEN")
        .args([
            "--dsn",
            &shared_dsn(),
            "--agents",
            &agents.to_string(),
            "--listen",
            address,
        ])
        .args(["--agents-timeout", "40s", "--no-report", "--quiet"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a child within `deadline`, killing it past that (a test never hangs).
fn finish(mut child: Child, deadline: Duration, what: &str) -> Output {
    let give_up = Instant::now() + deadline;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > give_up {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what} did not end within {deadline:?}:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Lets the test server take connections from any loopback address (initdb allows 127.0.0.1
/// only), so that agents can each send from their own, and gives it a table to note them in.
fn allow_loopback_sources(dsn: &str) -> postgres::Client {
    let mut client = postgres::Client::connect(dsn, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS agent_sources (addr inet)")
        .unwrap();
    let hba: String = client.query_one("SHOW hba_file", &[]).unwrap().get(0);
    let rules = std::fs::read_to_string(&hba).unwrap();
    if !rules.contains("127.0.0.0/8") {
        std::fs::write(
            &hba,
            format!("host all all 127.0.0.0/8 scram-sha-256\n{rules}"),
        )
        .unwrap();
        client.execute("SELECT pg_reload_conf()", &[]).unwrap();
    }
    client
}

/// Three agents, one of them with its clock 5 s ahead: the merged step is the sum of the
/// agents' shares, its histogram the sum of theirs and the one built from every request, and
/// the release in sync whatever the skew.
#[test]
fn three_agents_send_one_step_merged_exactly_and_released_together() {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    let mut client = allow_loopback_sources(&dsn);
    // Each request notes the address it came from.
    let query =
        "INSERT INTO agent_sources SELECT inet_client_addr() FROM pg_sleep(0.2) RETURNING 1";
    let run = coordinator(
        logs.path(),
        &address,
        3,
        &[
            "--steps",
            "2",
            "--step",
            "31",
            "--query",
            query,
            "--allow-writes",
            "--log-requests",
        ],
    )
    .spawn()
    .unwrap();
    let mut agents: Vec<Child> = (1..=3)
        .map(|i| {
            let mut cmd = agent(&address, &dsn, &format!("agent-{i}"));
            cmd.args(["--source-address", &format!("127.0.0.{}", i + 1)]);
            if i == 2 {
                cmd.env(pgstress::fleet::clock::TEST_SKEW_VAR, "5000");
            }
            cmd.spawn().unwrap()
        })
        .collect();
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    for (i, agent) in agents.drain(..).enumerate() {
        let out = finish(agent, Duration::from_secs(10), "an agent");
        assert!(
            out.status.success(),
            "agent {}: {}",
            i + 1,
            output_text(&out)
        );
    }
    assert!(output.status.success(), "{}", output_text(&output));

    let json = summary(logs.path());
    let requests = read_csv_with_header(&log_file(logs.path(), "_requests.csv"));
    for (index, step) in json["steps"].as_array().unwrap().iter().enumerate() {
        let agents = step["agents"].as_array().expect("a per-agent breakdown");
        assert_eq!(agents.len(), 3);
        let sum = |key: &str| agents.iter().map(|a| a[key].as_u64().unwrap()).sum::<u64>();
        let size = 31 * (index as u64 + 1);
        assert_eq!(step["requests"].as_u64(), Some(size));
        assert_eq!(sum("requests"), size, "the shares add up to the step");
        assert_eq!(step["ok"].as_u64(), Some(sum("ok")));
        assert_eq!(step["failed"].as_u64(), Some(sum("failed")));
        let merged = hdr::decode(step["latency_histogram_us"].as_str().unwrap()).unwrap();
        let mut added = pgstress::model::step::histogram();
        for part in agents {
            added += hdr::decode(part["latency_histogram_us"].as_str().unwrap()).unwrap();
        }
        assert_eq!(merged, added, "the merged histogram is the agents' added");
        // The one built from every request's own latency, as the request log holds it.
        let mut from_rows = pgstress::model::step::histogram();
        let number = (index + 1).to_string();
        for row in requests
            .iter()
            .filter(|r| r["step"] == number && r["outcome"] == "ok")
        {
            let us = (row["latency_ms"].parse::<f64>().unwrap() * 1000.0).round() as u64;
            from_rows.record(us).unwrap();
        }
        assert_eq!(from_rows.len(), merged.len());
        for q in [0.5, 0.9, 0.99, 1.0] {
            let (a, b) = (from_rows.value_at_quantile(q), merged.value_at_quantile(q));
            assert!(a.abs_diff(b) <= 1 + b / 500, "p{q}: {a} vs {b}");
        }
        let spread = step["launch_spread_ms"].as_f64().unwrap();
        assert!(
            spread < 150.0,
            "step {}: launch spread {spread} ms with a 5 s skew",
            index + 1
        );
        // Each agent's clock starts with its process; agent-2's also runs 5 s ahead.
        let offset = |name: &str| {
            let agent = agents.iter().find(|a| a["agent"] == name).unwrap();
            agent["clock_offset_ms"].as_f64().unwrap()
        };
        let skew = offset("agent-2") - offset("agent-1");
        assert!(
            (skew - 5000.0).abs() < 1000.0,
            "agent-2 ahead of agent-1 by {skew} ms"
        );
        eprintln!(
            "step {}: launch spread {spread:.2} ms, agent-2's clock ahead by {skew:.1} ms",
            index + 1
        );
    }
    let names: std::collections::BTreeSet<&str> =
        requests.iter().map(|r| r["agent"].as_str()).collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["agent-1", "agent-2", "agent-3"]
    );
    assert!(json["verdict"].is_object(), "{}", json["verdict"]);
    assert!(!json["verdict_text"].as_array().unwrap().is_empty());
    assert_eq!(json["complete"], true);
    let rows = client
        .query(
            "SELECT host(addr), count(*) FROM agent_sources GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap();
    let sources: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let from = |addr: &str| {
        sources
            .iter()
            .find(|(a, _)| a == addr)
            .map_or(0, |(_, n)| *n)
    };
    // Each agent's requests came from its own address (the probes from 127.0.0.1).
    for i in 1..=3 {
        let name = format!("agent-{i}");
        let sent: u64 = json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|step| step["agents"].as_array().unwrap())
            .filter(|a| a["agent"] == name.as_str())
            .map(|a| a["requests"].as_u64().unwrap())
            .sum();
        let addr = format!("127.0.0.{}", i + 1);
        assert_eq!(from(&addr) as u64, sent, "{name} from {addr}: {sources:?}");
    }
    assert_eq!(
        from("127.0.0.2") + from("127.0.0.3") + from("127.0.0.4"),
        93
    );
}

/// An agent with the wrong token, and one with none, are refused with a one-line error each;
/// the coordinator says so, keeps waiting, and runs with the agent that holds the token.
#[test]
fn a_wrong_or_missing_token_is_refused_and_the_coordinator_keeps_waiting() {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    let steps = ["--steps", "1", "--step", "4", "--query", "SELECT 1"];
    let run = coordinator(logs.path(), &address, 1, &steps)
        .env("PGSTRESS_TOKEN", "the-right-token")
        .spawn()
        .unwrap();
    let wrong = agent(&address, &dsn, "wrong")
        .env("PGSTRESS_TOKEN", "a-wrong-token")
        .spawn()
        .unwrap();
    let wrong = finish(
        wrong,
        Duration::from_secs(30),
        "the agent with a wrong token",
    );
    assert!(!wrong.status.success());
    let line = one_line_error(&wrong.stderr);
    assert!(line.contains("PGSTRESS_TOKEN"), "{line}");
    let none = agent(&address, &dsn, "none").spawn().unwrap();
    let none = finish(none, Duration::from_secs(30), "the agent without a token");
    assert!(!none.status.success());
    let line = one_line_error(&none.stderr);
    assert!(line.contains("no token"), "{line}");
    let right = agent(&address, &dsn, "right")
        .env("PGSTRESS_TOKEN", "the-right-token")
        .spawn()
        .unwrap();
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    let right = finish(right, Duration::from_secs(10), "the agent with the token");
    assert!(right.status.success(), "{}", output_text(&right));
    assert!(output.status.success(), "{}", output_text(&output));
    let said = output_text(&output);
    assert_eq!(said.matches("refused an agent").count(), 2, "{said}");
    let everything = format!("{said}{}{}", output_text(&wrong), output_text(&none));
    assert!(!everything.contains("the-right-token") && !everything.contains("a-wrong-token"));
    assert_eq!(
        summary(logs.path())["steps"][0]["agents"][0]["agent"],
        "right"
    );
}

/// A coordinator asking more connections than an agent allows: the agent refuses the plan
/// and exits, the coordinator fails before step 1, each with one line naming the cap.
#[test]
fn a_plan_beyond_an_agents_caps_is_refused_on_both_sides() {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let steps = ["--steps", "1", "--step", "30", "--query", "SELECT 1"];
    let run = coordinator(logs.path(), &address, 1, &steps)
        .spawn()
        .unwrap();
    let capped = agent(&address, &shared_dsn(), "capped")
        .args(["--max-connections", "5"])
        .spawn()
        .unwrap();
    let capped = finish(capped, Duration::from_secs(30), "the capped agent");
    let output = finish(run, Duration::from_secs(30), "the coordinator");
    assert!(!capped.status.success());
    let line = one_line_error(&capped.stderr);
    assert!(line.contains("--max-connections 5"), "{line}");
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    let line = one_line_error(&output.stderr);
    assert!(
        line.contains("refused the plan") && line.contains("--max-connections 5"),
        "{line}"
    );
}

/// Beyond loopback the coordinator needs a token, and says which variable to set.
#[test]
fn listening_beyond_loopback_without_a_token_is_refused() {
    let logs = tempfile::tempdir().unwrap();
    let output = coordinator(logs.path(), "0.0.0.0:7777", 2, &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let line = one_line_error(&output.stderr);
    assert!(
        line.contains("--listen '0.0.0.0:7777'") && line.contains("PGSTRESS_TOKEN"),
        "{line}"
    );
}

/// SIGKILL one agent in the middle of step 2: that step is logged incomplete (partial, the
/// lost agent's share unsent), the run ends with the agent-lost exit code, step 1 intact.
#[test]
fn an_agent_killed_mid_step_ends_the_run_with_the_step_incomplete() {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    let steps = [
        "--steps",
        "3",
        "--step",
        "4",
        "--query",
        "SELECT pg_sleep(2)",
        "--pause",
        "0s",
    ];
    let run = coordinator(logs.path(), &address, 2, &steps)
        .spawn()
        .unwrap();
    let mut survivor = agent(&address, &dsn, "survivor").spawn().unwrap();
    let mut victim = agent(&address, &dsn, "victim").spawn().unwrap();
    common::wait_for_steps(logs.path(), 1, Duration::from_secs(60));
    // Step 2 holds its connections for 2 s: 0.8 s in, it is in flight.
    std::thread::sleep(Duration::from_millis(800));
    victim.kill().unwrap();
    let _ = victim.wait();
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    let _ = finish_or_kill(&mut survivor);
    assert_eq!(output.status.code(), Some(4), "{}", output_text(&output));
    let said = output_text(&output);
    assert!(said.contains("victim") && said.contains("lost"), "{said}");
    let rows = step_rows(logs.path());
    assert_eq!(rows.len(), 2, "step 1 and the incomplete step 2");
    assert_eq!(rows[0]["ok"], "4", "step 1 intact");
    assert!(rows[1]["flags"].contains("partial"), "{:?}", rows[1]);
    let json = summary(logs.path());
    let agents = json["steps"][1]["agents"].as_array().unwrap();
    let lost = agents.iter().find(|a| a["agent"] == "victim").unwrap();
    assert_eq!(lost["lost"], true);
    assert_eq!(lost["unsent"], 4, "its half of step 2's 8 requests");
    assert_eq!(json["complete"], false);
}

/// The surviving agent ends once the coordinator is gone; killed if it lingers.
fn finish_or_kill(child: &mut Child) -> Option<std::process::ExitStatus> {
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A run with `n` agents on loopback, each ending well; the coordinator's output and summary.
fn run_with_agents(n: u32, extra: &[&str]) -> (Output, serde_json::Value) {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    let started = Instant::now();
    let run = coordinator(logs.path(), &address, n, extra)
        .spawn()
        .unwrap();
    let agents: Vec<Child> = (1..=n)
        .map(|i| agent(&address, &dsn, &format!("a{i}")).spawn().unwrap())
        .collect();
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    eprintln!("{extra:?}: {:?}", started.elapsed());
    for agent in agents {
        let out = finish(agent, Duration::from_secs(10), "an agent");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    assert!(output.status.success(), "{}", output_text(&output));
    let json = summary(logs.path());
    (output, json)
}

/// Pool and rate modes split their workers and arrivals across the agents, and the parts add
/// up to the step.
#[test]
fn pool_workers_and_rate_arrivals_are_split_across_agents() {
    let query = ["--query", "SELECT 1", "--steps", "1"];
    let (_, pool) = run_with_agents(
        2,
        &[
            &query[..],
            &["--mode", "pool", "--workers", "5", "--step", "21"],
        ]
        .concat(),
    );
    let step = &pool["steps"][0];
    assert_eq!(step["ok"], 21, "{step}");
    let shares: Vec<u64> = step["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(shares.iter().sum::<u64>(), 21);
    assert!(
        pool["plan"]["engine"]
            .as_str()
            .unwrap()
            .contains("2 agents"),
        "{}",
        pool["plan"]
    );
    let (_, rate) = run_with_agents(
        2,
        &[
            &query[..],
            &["--mode", "rate", "--duration", "1s", "--step", "15"],
        ]
        .concat(),
    );
    let step = &rate["steps"][0];
    assert_eq!(step["requests"], 15, "{step}");
    let agents = step["agents"].as_array().unwrap();
    assert_eq!(
        agents
            .iter()
            .map(|a| a["requests"].as_u64().unwrap())
            .sum::<u64>(),
        15
    );
    assert_eq!(step["ok"], 15, "{step}");
}

/// A stranger at the coordinator's door: it dials in as soon as the coordinator listens, then
/// either announces a 500 MiB message and trickles it a byte every 200 ms (each byte well
/// within any per-read timeout), or says nothing. Its thread ends when `stop` is set or its
/// connection is cut.
fn stranger(address: &str, trickle: bool, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match TcpStream::connect(address) {
            Ok(stream) => break stream,
            Err(err) if Instant::now() > give_up => panic!("the coordinator never listened: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    std::thread::spawn(move || {
        if trickle && stream.write_all(&(500u32 << 20).to_be_bytes()).is_err() {
            return;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let bound = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < bound {
            if trickle && stream.write_all(b"{").is_err() {
                return;
            }
            // The coordinator never writes to a stranger that has not introduced itself:
            // anything read is the end of the connection.
            match stream.read(&mut [0u8; 64]) {
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                _ => return,
            }
        }
    })
}

/// Eight strangers reach the coordinator before its two agents: four announce 500 MiB and
/// trickle it, four say nothing. The announcers are refused on their length alone before any
/// agent starts; the agents join beside the four silent ones and the run succeeds, the silent
/// ones still held (their handshake's deadline, 10 s, far from passed) when the last agent
/// joined, and cut then.
#[test]
fn strangers_at_the_door_keep_no_agent_out() {
    let both = |output: &Output| {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        format!("{}\n{}", text(&output.stdout), text(&output.stderr))
    };
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    let steps = ["--steps", "1", "--step", "4", "--query", "SELECT 1"];
    let mut run = coordinator(logs.path(), &address, 2, &steps)
        .spawn()
        .unwrap();
    // The coordinator's lines as it prints them.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = run.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let strangers: Vec<JoinHandle<()>> = (0..8)
        .map(|i| stranger(&address, i < 4, Arc::clone(&stop)))
        .collect();
    let refused = "a message of 524288000 bytes, above the 4096";
    let mut said: Vec<String> = Vec::new();
    while said.iter().filter(|line| line.contains(refused)).count() < 4 {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => said.push(line),
            Err(_) => panic!("the announcers were not refused: {said:#?}"),
        }
    }
    let agents: Vec<Child> = (1..=2)
        .map(|i| agent(&address, &dsn, &format!("a{i}")).spawn().unwrap())
        .collect();
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    stop.store(true, Ordering::Relaxed);
    for stranger in strangers {
        stranger.join().unwrap();
    }
    reader.join().unwrap();
    said.extend(lines.try_iter());
    let said = format!("{}\n{}", said.join("\n"), both(&output));
    for agent in agents {
        let out = finish(agent, Duration::from_secs(10), "an agent");
        assert!(out.status.success(), "{}", both(&out));
    }
    assert!(output.status.success(), "{said}");
    assert_eq!(said.matches("joined from").count(), 2, "{said}");
    assert_eq!(said.matches(refused).count(), 4, "{said}");
    assert!(
        said.contains("closed 4 connections that had not finished their handshake"),
        "{said}"
    );
}

/// Four agents through one transaction-mode PgBouncer. Through a
/// transaction pooler a named statement outlives its client on the server connection, and the
/// next client handed that connection meets it: one agent's pre-flight left the `postgres`
/// crate's "s0" for the next one's ("prepared statement \"s0\" already exists"). Here the
/// pool has one server connection and the test leaves an "s0" on it first, so that every check
/// of the query that names a statement meets it, whatever the timing; the unnamed statement
/// holds. The agents find the pooler as `run` does (settings in-band), every request is ok,
/// and `run` itself checks the query through the same pool.
#[test]
fn four_agents_through_a_transaction_pooler_check_the_query_and_run() {
    let server = common::start_server(&[]);
    let settings = [
        ("pool_mode".to_owned(), "transaction".to_owned()),
        ("default_pool_size".to_owned(), "1".to_owned()),
    ];
    let pooler = pgstress::pg::local::pooler::ThrowawayPooler::start(&server.target(), &settings)
        .expect("start pgbouncer");
    let dsn = pooler.dsn();
    let mut other = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    other.batch_execute("PREPARE s0 AS SELECT 1").unwrap();
    drop(other);
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    // The coordinator reaches the server itself: what is checked here is the agents'.
    let mut run = common::run_command(logs.path());
    run.env_remove("PGSTRESS_TOKEN")
        .args([
            "--dsn",
            &server.dsn(),
            "--agents",
            "4",
            "--listen",
            &address,
        ])
        .args(["--agents-timeout", "40s", "--no-report", "--quiet"])
        .args(["--steps", "2", "--step", "8", "--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run.spawn().unwrap();
    let agents: Vec<Child> = (1..=4)
        .map(|i| agent(&address, &dsn, &format!("t{i}")).spawn().unwrap())
        .collect();
    let output = finish(run, Duration::from_secs(90), "the coordinator");
    let agents: Vec<Output> = agents
        .into_iter()
        .map(|agent| finish(agent, Duration::from_secs(10), "an agent"))
        .collect();
    let direct_logs = tempfile::tempdir().unwrap();
    let direct = common::pgstress_run(direct_logs.path())
        .args(["--dsn", &dsn, "--steps", "1", "--step", "4", "--no-report"])
        .args(["--quiet", "--timeout", "30s"])
        .output()
        .unwrap();
    pooler.stop();
    server.stop();
    for out in &agents {
        assert!(out.status.success(), "{}", common::output_text(out));
    }
    assert!(output.status.success(), "{}", common::output_text(&output));
    let json = summary(logs.path());
    assert_eq!(json["complete"], true, "{json}");
    for (step, requests) in json["steps"].as_array().unwrap().iter().zip([8, 16]) {
        assert_eq!(step["requests"], requests, "{step}");
        assert_eq!(step["ok"], requests, "{step}");
        assert_eq!(step["agents"].as_array().unwrap().len(), 4, "{step}");
    }
    assert!(direct.status.success(), "{}", common::output_text(&direct));
    assert_eq!(summary(direct_logs.path())["steps"][0]["ok"], 4);
}

/// Two agents of two pool workers each, their sessions terminated from outside mid-step: each
/// of the four workers has its own gap in the step's outage, numbered across the fleet (agent
/// `i`'s worker `w` is client `i × 1,000,000 + w`), not one client per agent.
#[test]
fn an_outage_under_agents_counts_every_worker_of_every_agent_as_a_client() {
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let dsn = shared_dsn();
    // Named by their query, so that only this run's sessions are terminated on the shared
    // server; each request at least 4 ms: 2,000 requests on 4 workers take at least 2 s.
    let query = "SELECT 'agents-outage' FROM pg_sleep(0.004)";
    let run = coordinator(
        logs.path(),
        &address,
        2,
        &[
            "--mode",
            "pool",
            "--workers",
            "4",
            "--steps",
            "1",
            "--step",
            "2000",
            "--timeout",
            "1s",
            "--query",
            query,
        ],
    )
    .spawn()
    .unwrap();
    let agents: Vec<Child> = ["a1", "a2"]
        .iter()
        .map(|name| agent(&address, &dsn, name).spawn().unwrap())
        .collect();
    let mut client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    let ours = "FROM pg_stat_activity WHERE query LIKE '%''agents-outage''%' \
                AND pid <> pg_backend_pid()";
    // Running it, not only prepared (before step 1): the step has begun.
    let busy = format!("SELECT count(*) {ours} AND state = 'active'");
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.query_one(&busy, &[]).unwrap().get::<_, i64>(0) < 4 {
        if Instant::now() > deadline {
            let output = finish(run, Duration::from_secs(1), "the coordinator");
            panic!(
                "the agents' workers never ran the query: {}",
                output_text(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300)); // a throughput to come back to
    let killed: i64 = client
        .query_one(
            &format!("SELECT count(pg_terminate_backend(pid)) {ours}"),
            &[],
        )
        .unwrap()
        .get(0);
    let output = finish(run, Duration::from_secs(60), "the coordinator");
    for agent in agents {
        let out = finish(agent, Duration::from_secs(10), "an agent");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    let said = output_text(&output);
    assert_eq!(killed, 4, "{said}");
    let step = &summary(logs.path())["steps"][0];
    assert_eq!(step["failed"], 4, "one request a killed connection: {said}");
    assert_eq!(step["lost"], 0);
    let gaps = (step["outage"]["gaps"].as_array())
        .unwrap_or_else(|| panic!("an outage: {step:#}\n{said}"));
    let clients: std::collections::BTreeSet<u64> =
        gaps.iter().map(|g| g["client"].as_u64().unwrap()).collect();
    // Two workers on each agent: clients 0 and 1 of agent 0, 1,000,000 and 1,000,001 of
    // agent 1.
    assert_eq!(
        clients.into_iter().collect::<Vec<_>>(),
        [0, 1, 1_000_000, 1_000_001],
        "{:#}",
        step["outage"]
    );
    for gap in gaps {
        assert!(gap["to"].is_number(), "each worker reconnected: {gap}");
    }
}

/// Hold mode from two agents, each on its own source address: each holds its share of every
/// step, kept from one step to the next; the server sees the whole crowd, half from each
/// address, and the coordinator's step is the agents' crowds summed, none dropped.
#[test]
fn two_agents_hold_their_shares_of_the_crowd_from_their_own_addresses() {
    let server = common::start_server(&[("max_connections", "400")]);
    let dsn = server.dsn();
    let mut watcher = allow_loopback_sources(&dsn);
    let logs = tempfile::tempdir().unwrap();
    let address = coordinator_address();
    let mut run = common::run_command(logs.path());
    run.env_remove("PGSTRESS_TOKEN")
        .args(["--dsn", &dsn, "--agents", "2", "--listen", &address])
        .args(["--agents-timeout", "40s", "--no-report", "--quiet"])
        .args(["--mode", "hold", "--query", "SELECT 1", "--every", "300ms"])
        .args(["--duration", "5s", "--steps", "2", "--step", "150"])
        .args(["--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = run.spawn().unwrap();
    let agents: Vec<Child> = (2..=3)
        .map(|i| {
            agent(&address, &dsn, &format!("h{i}"))
                .args(["--source-address", &format!("127.0.0.{i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    // Each step's crowd as the server sees it while the step holds it: backend pid → address.
    let backends = |client: &mut postgres::Client| -> std::collections::BTreeMap<i32, String> {
        let rows = client
            .query(
                "SELECT pid, host(client_addr) FROM pg_stat_activity \
                 WHERE host(client_addr) IN ('127.0.0.2', '127.0.0.3')",
                &[],
            )
            .unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let mut seen = Vec::new();
    for step in 1..=2usize {
        let end = Instant::now() + Duration::from_secs(60);
        let mut now = backends(&mut watcher);
        while now.len() != step * 150 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
            now = backends(&mut watcher);
        }
        if now.len() != step * 150 {
            let mut run = run;
            let _ = run.kill();
            let out = run.wait_with_output().unwrap();
            panic!(
                "step {step}: the server saw {} of the crowd: {}",
                now.len(),
                output_text(&out)
            );
        }
        seen.push(now);
    }
    let output = finish(run, Duration::from_secs(120), "the coordinator");
    for agent in agents {
        let out = finish(agent, Duration::from_secs(30), "an agent");
        assert!(out.status.success(), "{}", output_text(&out));
    }
    assert!(output.status.success(), "{}", output_text(&output));
    let kept = seen[0].keys().all(|pid| seen[1].contains_key(pid));
    assert!(kept, "a connection of step 1 was not kept into step 2");
    for address in ["127.0.0.2", "127.0.0.3"] {
        let from = seen[1].values().filter(|a| *a == address).count();
        assert_eq!(from, 150, "from {address}: {:?}", seen[1]);
    }
    let json = summary(logs.path());
    for (i, step) in json["steps"].as_array().unwrap().iter().enumerate() {
        let size = 150 * (i as u64 + 1);
        assert_eq!(step["held"], size, "{step}");
        assert_eq!(step["held_dropped"], 0, "{step}");
        assert_eq!(
            step["held_opened"], 150,
            "each step opens its growth only: {step}"
        );
        assert_eq!(step["held_reopened"], 0, "{step}");
        assert!(step["client_kib_per_held"].as_f64().is_some(), "{step}");
        assert_eq!(step["failed"], 0, "{step}");
        let agents = step["agents"].as_array().unwrap();
        let held: Vec<u64> = agents
            .iter()
            .map(|a| a["hold"]["held"].as_u64().unwrap())
            .collect();
        assert_eq!(held, [size / 2, size / 2], "{step}");
    }
}
