//! The configuration of `pgstress prepare`: a server to fill, never a throwaway one.

use std::path::PathBuf;

use crate::cli::PrepareArgs;
use crate::config::env::EnvTarget;
use crate::config::error::{ConfigError, invalid};
use crate::pg::target::ConnectTarget;

/// What `pgstress prepare` needs.
#[derive(Debug)]
pub struct PrepareConfig {
    pub target: ConnectTarget,
    pub rows: u64,
    pub write_data: Option<PathBuf>,
}

impl PrepareConfig {
    pub fn from_args(args: PrepareArgs) -> Result<Self, ConfigError> {
        let env = EnvTarget::from_process();
        let target = args.target;
        let inputs = env.inputs(target.dsn.map(|dsn| (dsn, "--dsn")));
        if !inputs.names_a_target() {
            return Err(invalid(
                "--dsn",
                "(none)",
                "prepare needs a server: give --dsn, DATABASE_URL, PGSERVICE or PGHOST",
            ));
        }
        if args.rows == 0 {
            return Err(invalid("--rows", 0, "create at least 1 row"));
        }
        Ok(PrepareConfig {
            target: ConnectTarget::resolve(&inputs)?
                .with_tls(target.sslmode, target.sslrootcert)?,
            rows: args.rows,
            write_data: args.write_data,
        })
    }
}
