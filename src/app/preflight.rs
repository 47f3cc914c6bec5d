//! Before step 1: one connection that reads the server's facts and prepares the query, so that a
//! wrong target or a broken query fails fast with the server's own words, within a deadline.

use std::time::Duration;

use anyhow::{Context, bail};
use postgres::Client;

use crate::config::RunConfig;
use crate::config::data::{ParamData, SampleValue};
use crate::measure::sampler::cpu::LocalServer;
use crate::model::facts::ServerFacts;
use crate::model::outcome::{Failure, FailureClass, Side};
use crate::pg::request::kept::Kept;
use crate::pg::request::{self, RequestSpec};
use crate::pg::target::{ConnectTarget, describe_error, refuses_startup_options, within};

/// What the pre-flight connection learnt: the target as requests must reach it (its settings
/// in-band when it refused them at startup, as a pooler does), the server's facts, and the
/// server's processes when they are visible from here.
pub type Reached = (ConnectTarget, ServerFacts, Option<LocalServer>);

/// One connection before step 1: reads the server's facts and prepares the query, so that a
/// wrong target or a broken query fails fast with the server's own words, within a deadline.
pub fn preflight(target: &ConnectTarget, config: &RunConfig) -> anyhow::Result<Reached> {
    let deadline = target.setup_timeout() * 2;
    let redacted = target.redacted().to_owned();
    let (target, query) = (target.clone(), config.query.clone());
    let takes_parameter = config.takes_parameter;
    match within(deadline, move || {
        check_server(&target, &query, takes_parameter)
    }) {
        Some(result) => result,
        None => bail!(
            "no answer from {redacted} within {}: the server accepts connections but does not respond",
            humantime::format_duration(deadline)
        ),
    }
}

/// Connects; a target that refuses the `options` startup parameter (PgBouncer: "unsupported
/// startup parameter", 08P01) is reached again with the settings sent in-band.
fn reach(target: &ConnectTarget) -> anyhow::Result<(ConnectTarget, Client)> {
    let cannot = |err: crate::pg::target::ConnectError| {
        let err = err.to_string();
        let hint = match err.contains("password") && !target.has_password() {
            true => {
                "; no password was given: set PGPASSWORD, add a line to ~/.pgpass (mode 0600) or put password= in the DSN"
            }
            false => "",
        };
        anyhow::anyhow!("cannot connect to {}: {err}{hint}", target.redacted())
    };
    match target.connect(target.setup_timeout(), "pgstress-preflight") {
        Ok(client) => Ok((target.clone(), client)),
        Err(err) if refuses_startup_options(&err) && !target.settings_in_band() => {
            let in_band = target.clone().with_settings_in_band();
            let client = in_band
                .connect(target.setup_timeout(), "pgstress-preflight")
                .map_err(cannot)?;
            Ok((in_band, client))
        }
        Err(err) => Err(cannot(err)),
    }
}

fn check_server(
    target: &ConnectTarget,
    query: &str,
    takes_parameter: bool,
) -> anyhow::Result<Reached> {
    let (target, mut client) = reach(target)?;
    let facts = read_facts(&mut client).context("cannot read the server's settings")?;
    // Looked up while this connection's backend is alive: its parent is the postmaster.
    // Unnamed statements only: behind a transaction-mode pooler a named one may be gone.
    let backend_pid = client
        .query_typed("SELECT pg_backend_pid()", &[])
        .ok()
        .and_then(|rows| rows.first().map(|row| row.get::<_, i32>(0)))
        .and_then(|pid| u32::try_from(pid).ok());
    let visible_server = match target.is_loopback() {
        true => backend_pid.and_then(LocalServer::from_backend_pid),
        false => None,
    };
    // Let go before the check's own connection: a pool of one is not held twice.
    drop(client);
    let parameters = parameters_of(&target, query)?;
    let expected = usize::from(takes_parameter);
    if parameters != expected {
        bail!(
            "the query takes {parameters} parameters but pgstress binds {expected}; use $1 once for the drawn value"
        );
    }
    Ok((target, facts, visible_server))
}

/// The parameters the query takes, as the server parses it, on the unnamed statement of a
/// connection of its own (pgstress's lean one): through a transaction-mode pooler a named
/// statement (the `postgres` crate's "s0") outlives the check on the server connection, where
/// the next client's "s0" meets it (issue 32).
fn parameters_of(target: &ConnectTarget, query: &str) -> anyhow::Result<usize> {
    let mut conn = target
        .connect_lean(target.setup_timeout(), "pgstress-preflight")
        .map_err(|err| anyhow::anyhow!("cannot connect to {}: {err}", target.redacted()))?;
    let described = conn.parameters_of(query);
    conn.close();
    described.map_err(|err| {
        let hint = if query == crate::config::DEFAULT_QUERY {
            " or create the demo table with `pgstress prepare --dsn ...`"
        } else {
            ""
        };
        let why = match err {
            crate::pg::wire::WireError::Server { code, message } => format!("{message} ({code})"),
            other => other.to_string(),
        };
        anyhow::anyhow!("the query does not prepare on the server: {why}; fix --query{hint}")
    })
}

fn read_facts(client: &mut Client) -> anyhow::Result<ServerFacts> {
    // The monitor opens after this connection closes and holds one slot: counted with the
    // sessions already there.
    let rows = client.query_typed(
        "SELECT current_setting('server_version'),
                current_setting('max_connections')::int,
                current_setting('superuser_reserved_connections')::int,
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                (SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())::int",
        &[],
    )?;
    let row = rows.first().context("no row")?;
    Ok(ServerFacts {
        version: row.get(0),
        max_connections: row.get::<_, i32>(1).max(0) as u32,
        superuser_reserved_connections: row.get::<_, i32>(2).max(0) as u32,
        superuser: row.get::<_, Option<bool>>(3).unwrap_or(false),
        sessions_at_start: row.get::<_, i32>(4).max(0) as u32 + 1,
    })
}

/// Sends the exact request a step sends, with real values (the first row of every parameter
/// file, all at once), before any load: a mistake of the client, the data or the query (a
/// wrong type, a header row, a query that writes, values the table lacks) is an error here,
/// in the server's own words, never a breaking point. What the server may do under load
/// (time out, refuse) is left for the steps to measure, with a note.
pub fn probe_requests(spec: &RequestSpec, data: Option<&ParamData>) -> anyhow::Result<Vec<String>> {
    let Some(data) = data else {
        return match send(spec, None)? {
            Err(failure) if stops_the_run(&failure) => Err(probe_error(&failure, None)),
            Err(failure) => Ok(vec![probe_note(&failure)]),
            Ok(()) => Ok(Vec::new()),
        };
    };
    let firsts = data.first_values(1);
    let answers = std::thread::scope(|scope| {
        let probes: Vec<_> = firsts
            .iter()
            .map(|first| scope.spawn(|| send(spec, Some(first.value))))
            .collect();
        probes
            .into_iter()
            .map(|probe| probe.join().unwrap_or_else(|_| Ok(Ok(()))))
            .collect::<Vec<_>>()
    });
    let mut notes = Vec::new();
    for (first, answer) in firsts.iter().zip(answers) {
        match answer? {
            Ok(()) => {}
            Err(failure) if stops_the_run(&failure) => {
                return Err(first_row_error(spec, data, first, &failure));
            }
            Err(failure) => notes.push(probe_note(&failure)),
        }
    }
    notes.dedup();
    Ok(notes)
}

/// The error for a first row that failed: a header row when the row after it succeeds.
fn first_row_error(
    spec: &RequestSpec,
    data: &ParamData,
    first: &SampleValue<'_>,
    failure: &Failure,
) -> anyhow::Error {
    let seconds = data.first_values(2);
    let next = seconds
        .iter()
        .find(|s| s.file == first.file && s.line > first.line);
    if let Some(next) = next
        && matches!(send(spec, Some(next.value)), Ok(Ok(())))
    {
        return anyhow::anyhow!(
            "{} has a header row: its first value {} fails ({}) while the next succeeds; \
             give --skip-header",
            first.file.display(),
            shown(first.value),
            failure.message
        );
    }
    probe_error(failure, Some(first))
}

/// A failure that says the request itself is wrong (its query, its data, its credentials,
/// the client), not how the server bears load. A first request that meets a read-only server
/// is one too: a query that writes (pgstress sends it read-only) or a target that is a standby.
fn stops_the_run(failure: &Failure) -> bool {
    matches!(failure.class.side(), Side::Client | Side::Data)
        || matches!(
            failure.class,
            FailureClass::Query | FailureClass::Auth | FailureClass::Io | FailureClass::ReadOnly
        )
}

fn probe_note(failure: &Failure) -> String {
    format!(
        "note: the first request, sent alone before the load, ended as {} ({}); the steps measure it",
        failure.class, failure.message
    )
}

/// One request, bounded by its deadline and the time its thread may take to report.
fn send(spec: &RequestSpec, value: Option<&str>) -> anyhow::Result<Result<(), Failure>> {
    let deadline = spec.timeout + crate::engine::REPORT_GRACE;
    let (spec, value) = (spec.clone(), value.map(str::to_owned));
    let answer = within(deadline, move || {
        request::execute(&spec, value.as_deref(), Duration::ZERO).outcome
    });
    answer.ok_or_else(|| {
        anyhow::anyhow!(
            "the first request got no answer within {}: the server accepts connections but does not respond",
            humantime::format_duration(deadline)
        )
    })
}

fn probe_error(failure: &Failure, value: Option<&SampleValue<'_>>) -> anyhow::Error {
    let with = value.map_or_else(String::new, |v| {
        format!(
            " with the value {} ({} line {})",
            shown(v.value),
            v.file.display(),
            v.line
        )
    });
    let fix = if failure.message.starts_with(READ_ONLY_VIOLATION) {
        "the query writes, and pgstress sends every request read-only: give --allow-writes if \
         the run may change the data"
    } else if failure.class == FailureClass::NoRow {
        "a step counts such a request as failed: check that --data holds values the table has"
    } else {
        "fix --query or the data before the load"
    };
    anyhow::anyhow!("the first request failed{with}: {}; {fix}", failure.message)
}

/// SQLSTATE 25006: a write in a read-only transaction.
const READ_ONLY_VIOLATION: &str = "25006";

/// A value as the error shows it: quoted, and cut short when long.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(40).collect();
    match cut.len() < value.len() {
        true => format!("'{cut}…'"),
        false => format!("'{cut}'"),
    }
}

/// Pool mode keeps a connection per worker: its exact path is tried twice, with another
/// transaction holding a server connection in between, so that a pooler which hands the
/// second transaction another server connection (transaction pooling) shows here, as a
/// one-line error, and never as a breaking point.
pub fn probe_kept(
    target: &ConnectTarget,
    spec: &RequestSpec,
    data: Option<&ParamData>,
) -> anyhow::Result<()> {
    let param = data.and_then(|d| d.first_values(1).first().map(|v| v.value.to_owned()));
    let tries = SECOND_TRIES as u32 + 1;
    let deadline =
        target.setup_timeout() * tries + spec.timeout * (tries + 1) + crate::engine::REPORT_GRACE;
    let (target, spec) = (target.clone(), spec.clone());
    match within(deadline, move || {
        kept_twice(&target, &spec, param.as_deref())
    }) {
        Some(result) => result,
        None => bail!(
            "a pool worker's requests got no answer within {}: the server accepts connections but does not respond",
            humantime::format_duration(deadline)
        ),
    }
}

/// How many times the pool worker's request is tried again with another transaction held open.
const SECOND_TRIES: usize = 5;

fn kept_twice(
    target: &ConnectTarget,
    spec: &RequestSpec,
    param: Option<&str>,
) -> anyhow::Result<()> {
    let mut kept = Kept::open(spec).map_err(|failure| {
        anyhow::anyhow!(
            "a pool worker cannot open its connection: {}",
            failure.message
        )
    })?;
    if let Err(failure) = kept.execute(spec, param, Duration::ZERO).0.outcome {
        bail!(
            "the first request on a pool worker's connection failed: {}; fix --query or the data before the load",
            failure.message
        );
    }
    // Transactions held open elsewhere take server connections, so that the worker's next
    // transaction goes to another one than its statement was prepared on. Which ones a
    // pooler hands out is its own choice, so each try holds one more, all kept open.
    let mut second = Ok(());
    let mut holders = Vec::new();
    for _ in 0..SECOND_TRIES {
        let mut holder = target
            .connect(target.setup_timeout(), "pgstress-preflight")
            .map_err(|err| anyhow::anyhow!("cannot connect to {}: {err}", target.redacted()))?;
        holder.simple_query("BEGIN; SELECT 1").map_err(|err| {
            anyhow::anyhow!("cannot open a transaction: {}", describe_error(&err))
        })?;
        holders.push(holder);
        second = kept.execute(spec, param, Duration::ZERO).0.outcome;
        if second.is_err() {
            break;
        }
    }
    for mut holder in holders {
        let _ = holder.simple_query("ROLLBACK");
    }
    match second {
        Ok(()) => Ok(()),
        Err(failure) => bail!(
            "the second request on a pool worker's connection failed ({}): the --prepare {} \
             statement did not outlive its transaction, as behind a transaction-mode pooler; \
             give --prepare never",
            failure.message.replace('\n', " "),
            spec.prepare.name()
        ),
    }
}
