//! A pooler's admin console (PgBouncer's `pgbouncer` database), opened for its own view of
//! the load: reachable when the login may read it (the throwaway pooler's stats user, or a
//! `--dsn` user among the pooler's `admin_users`/`stats_users`). And each pooler's client
//! limit, as it reports it: PgBouncer's `SHOW CONFIG` on that console, pgpool-II's
//! `PGPOOL SHOW` on any connection.

use postgres::{Client, SimpleQueryMessage};

use crate::model::facts::PoolerLimit;
use crate::pg::target::{ConnectTarget, within};

/// A connection to the console of the pooler at `target`, when it answers `SHOW POOLS`.
pub fn open(target: &ConnectTarget) -> Option<Client> {
    let mut config = target.request_config(target.setup_timeout(), "pgstress-console", true);
    config.dbname("pgbouncer");
    let connector = target.connector().clone();
    let timeout = target.setup_timeout();
    within(timeout, move || {
        let mut client = connector.connect(&config).ok()?;
        // The console speaks the simple protocol only; a server with a `pgbouncer` database
        // is not one.
        client.simple_query("SHOW POOLS").ok()?;
        Some(client)
    })
    .flatten()
}

/// The first row's first value of a simple query, when it has one.
fn first_value(client: &mut Client, query: &str) -> Option<String> {
    let messages = client.simple_query(query).ok()?;
    messages.into_iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.try_get(0).ok().flatten().map(str::to_owned),
        _ => None,
    })
}

/// pgpool-II's client limit, asked on a connection to the target: `num_init_children`
/// children each serve one client at a time, less `reserved_connections` (past them pgpool
/// refuses clients, "Sorry, too many clients already"; with none reserved the rest wait in its
/// queue, unanswered). None when the target is not pgpool-II: PostgreSQL, or PgBouncer passing
/// the command on, answer `PGPOOL SHOW` with a syntax error, which leaves the connection as it was.
pub fn pgpool_limit(client: &mut Client) -> Option<PoolerLimit> {
    let children: u32 = first_value(client, "PGPOOL SHOW num_init_children")?
        .trim()
        .parse()
        .ok()?;
    let reserved: u32 = first_value(client, "PGPOOL SHOW reserved_connections")
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    Some(PoolerLimit {
        pooler: "pgpool-II".to_owned(),
        clients: children.saturating_sub(reserved).max(1),
        setting: format!("num_init_children {children} less reserved_connections {reserved}"),
    })
}

/// PgBouncer's client limit, read on its console (a stats user may read `SHOW CONFIG`):
/// `max_client_conn` (past it PgBouncer refuses clients, `pooler_too_many_clients`); in
/// session pooling each client holds a server connection for its whole session, so no more
/// than `default_pool_size` of them are served at once, the rest waiting in PgBouncer for a
/// session to end. (A database's own `pool_size` or `pool_mode` in `[databases]` is not read.)
pub fn pgbouncer_limit(console: &mut Client) -> Option<PoolerLimit> {
    let messages = console.simple_query("SHOW CONFIG").ok()?;
    let settings: Vec<(String, String)> = messages
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => {
                let key = row.try_get("key").ok()??;
                let value = row.try_get("value").ok()??;
                Some((key.to_owned(), value.trim().to_owned()))
            }
            _ => None,
        })
        .collect();
    let setting = |key: &str| {
        settings
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    let max_client_conn: u32 = setting("max_client_conn")?.parse().ok()?;
    let session_pool = setting("pool_mode")
        .filter(|mode| *mode == "session")
        .and(setting("default_pool_size"))
        .and_then(|size| size.parse::<u32>().ok())
        .filter(|size| *size < max_client_conn);
    let (clients, setting) = match session_pool {
        Some(size) => (
            size,
            format!(
                "pool_mode session: default_pool_size {size}, of max_client_conn {max_client_conn}"
            ),
        ),
        None => (
            max_client_conn,
            format!("max_client_conn {max_client_conn}"),
        ),
    };
    Some(PoolerLimit {
        pooler: "PgBouncer".to_owned(),
        clients,
        setting,
    })
}
