//! Every host of a DSN, chosen as libpq chooses it: against a real primary and its streaming
//! standby (made with `pg_basebackup -R`), the node pgstress's load reaches is the node psql
//! reaches with the same DSN, for each `target_session_attrs`, either order of the hosts, a
//! first host that is down, `hostaddr` alone and beside `host`; `load_balance_hosts=random`
//! spreads the load over both; `channel_binding=require` refuses a login that cannot bind.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::*;
use pgstress::pg::local::server::ThrowawayServer;

/// One node's DSN, for the test's own connections.
fn node_dsn(primary: &ThrowawayServer, port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres password={}",
        primary.password()
    )
}

struct Pair {
    primary: ThrowawayServer,
    standby: ThrowawayServer,
}

/// The primary (logging every statement) and its standby, shared by the tests of this binary.
fn pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| {
        let primary = start_server(&[("log_statement", "all")]);
        // pgstress's own standby: its watchdog removes it with the test binary, which never
        // drops this static.
        let standby = (primary.start_standby()).expect("a streaming standby of the primary");
        Pair { primary, standby }
    })
}

/// The load's query, whose text marks where it ran in a node's statement log.
const LOAD: &str = "SELECT 'pgstress-load'";

/// The load's queries a node ran, by its statement log. A connection that reached a server of
/// the wrong kind and left ran none there.
fn load_connections(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.ends_with(LOAD))
        .count()
}

/// How many of a run's queries each node ran: (primary, standby); the request pgstress tries
/// before the load counts too. One run at a time: the logs are shared.
fn spread_of(pair: &Pair, dsn: &str, requests: u32, extra: &[&str]) -> (usize, usize) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let primary_log = pair.primary.folder().join("server.log");
    let before = (
        load_connections(&primary_log),
        load_connections(&pair.standby.folder().join("server.log")),
    );
    let logs = tempfile::tempdir().unwrap();
    let stdout = run_ok(
        logs.path(),
        &[
            &["--dsn", dsn, "--query", LOAD, "--steps", "1"][..],
            &["--step", &requests.to_string(), "--no-report", "--quiet"],
            extra,
        ]
        .concat(),
    );
    let rows = step_rows(logs.path());
    assert_eq!(number(&rows[0], "ok"), u64::from(requests), "{stdout}");
    let spread = (
        load_connections(&primary_log) - before.0,
        load_connections(&pair.standby.folder().join("server.log")) - before.1,
    );
    // What pgstress says it reached is what the nodes ran (less the request tried first).
    let nodes = &summary(logs.path())["facts"]["nodes"];
    let by_node: Vec<usize> = match rows[0]["requests_by_node"].as_str() {
        "" => Vec::new(),
        text => text.split(';').map(|n| n.parse().unwrap()).collect(),
    };
    if let Some(hosts) = nodes.as_array() {
        assert_eq!(by_node.len(), hosts.len(), "{nodes} {by_node:?}");
        let counted = |port: u16| {
            hosts
                .iter()
                .zip(&by_node)
                .filter(|(host, _)| host.as_str().unwrap().ends_with(&format!(":{port}")))
                .map(|(_, n)| *n)
                .sum::<usize>()
        };
        assert_eq!(
            counted(pair.primary.port()) + counted(pair.standby.port()),
            requests as usize
        );
        assert!(
            counted(pair.primary.port()) <= spread.0,
            "{by_node:?} {spread:?}"
        );
        assert!(
            counted(pair.standby.port()) <= spread.1,
            "{by_node:?} {spread:?}"
        );
        assert!(stdout.contains("nodes: "), "{stdout}");
    }
    spread
}

/// The port psql reaches with `dsn`.
fn psql_port(dsn: &str) -> u16 {
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT inet_server_port()", dsn])
        .output()
        .expect("psql (apt-get install postgresql-client)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_load_reaches_the_node_psql_reaches() {
    let pair = pair();
    let (p, s) = (pair.primary.port(), pair.standby.port());
    let down = pgstress::sys::ports::free_listener_port([127, 0, 0, 1].into()).unwrap();
    let login = format!(
        "user=postgres dbname=postgres password={}",
        pair.primary.password()
    );
    let hosts = "host=127.0.0.1,127.0.0.1";
    let named = "host=first.invalid,second.invalid hostaddr=127.0.0.1,127.0.0.1";
    let cases = [
        (
            format!("{hosts} port={s},{p} target_session_attrs=read-write"),
            p,
        ),
        (format!("{hosts} port={s},{p} target_session_attrs=any"), s),
        (
            format!("{hosts} port={p},{s} target_session_attrs=read-only"),
            s,
        ),
        (
            format!("{hosts} port={s},{p} target_session_attrs=primary"),
            p,
        ),
        (
            format!("{hosts} port={p},{s} target_session_attrs=standby"),
            s,
        ),
        (
            format!("{hosts} port={p},{s} target_session_attrs=prefer-standby"),
            s,
        ),
        (
            format!("host=127.0.0.1 port={p} target_session_attrs=prefer-standby"),
            p,
        ),
        (format!("{hosts} port={down},{p}"), p),
        (
            format!("hostaddr=127.0.0.1 port={s} target_session_attrs=read-only"),
            s,
        ),
        (
            format!("{named} port={s},{p} target_session_attrs=primary"),
            p,
        ),
        (format!("host=localhost port={s}"), s),
    ];
    // The postgres client takes the same choices through code of its own (the crate knows
    // neither primary, standby nor prefer-standby): checked on the cases that ask for a kind.
    for (dsn, expected) in cases {
        let dsn = format!("{dsn} {login}");
        let shown = dsn.replace(pair.primary.password(), "***");
        assert_eq!(psql_port(&dsn), expected, "psql with {shown}");
        let clients: &[&str] = match dsn.contains("target_session_attrs=") {
            true => &["lean", "postgres"],
            false => &["lean"],
        };
        for &client in clients {
            let (on_primary, on_standby) = spread_of(pair, &dsn, 6, &["--client", client]);
            let reached = match (on_primary, on_standby) {
                (n, 0) if n >= 6 => p,
                (0, n) if n >= 6 => s,
                other => panic!("{client} with {shown}: split {other:?}"),
            };
            assert_eq!(reached, expected, "{client} with {shown}");
        }
    }
}

#[test]
fn load_balance_hosts_random_spreads_a_step_over_both_nodes() {
    let pair = pair();
    let dsn = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} load_balance_hosts=random {}",
        pair.primary.port(),
        pair.standby.port(),
        format_args!(
            "user=postgres dbname=postgres password={}",
            pair.primary.password()
        )
    );
    let (on_primary, on_standby) = spread_of(pair, &dsn, 400, &[]);
    assert!(
        on_primary + on_standby >= 400,
        "{on_primary} + {on_standby}"
    );
    // Each connection picks its first host with probability 1/2: below 140 of 400 on either
    // node is more than six standard deviations (10) from 200.
    assert!(
        on_primary >= 140 && on_standby >= 140,
        "{on_primary} on the primary, {on_standby} on the standby"
    );
}

/// The one-line error of a run refused before any load (exit 1, no step logged).
fn refused(dsn: &str) -> String {
    let logs = tempfile::tempdir().unwrap();
    let output = pgstress_run(logs.path())
        .args(["--dsn", dsn, "--steps", "1", "--step", "2", "--no-report"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", output_text(&output));
    assert_eq!(
        std::fs::read_dir(logs.path()).unwrap().count(),
        0,
        "no step ran"
    );
    one_line_error(&output.stderr)
}

#[test]
fn a_target_with_no_node_of_the_kind_asked_is_refused_naming_it() {
    let pair = pair();
    let dsn = format!(
        "host=127.0.0.1 port={} target_session_attrs=read-write {}",
        pair.standby.port(),
        format_args!(
            "user=postgres dbname=postgres password={}",
            pair.primary.password()
        )
    );
    let error = refused(&dsn);
    assert!(error.contains("target_session_attrs=read-write"), "{error}");
    assert!(!error.contains(pair.primary.password()), "{error}");
}

#[test]
fn channel_binding_require_refuses_a_login_without_tls() {
    let pair = pair();
    let dsn = format!(
        "{} channel_binding=require",
        node_dsn(&pair.primary, pair.primary.port())
    );
    let error = refused(&dsn);
    assert!(error.contains("channel_binding"), "{error}");
}
