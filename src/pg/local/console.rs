//! A pooler's admin console (PgBouncer's `pgbouncer` database), opened for its own view of
//! the load: reachable when the login may read it (the throwaway pooler's stats user, or a
//! `--dsn` user among the pooler's `admin_users`/`stats_users`).

use postgres::Client;

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
