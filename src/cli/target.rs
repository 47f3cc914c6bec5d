//! The target's options, shared by every subcommand that connects to a server.

use std::path::PathBuf;

use clap::Args;
use merge::Merge;
use serde::Deserialize;

use crate::pg::target::tls::SslMode;

/// Where the load goes and how TLS reaches it.
#[derive(Debug, Clone, Default, Args, Deserialize, Merge)]
#[serde(rename_all = "kebab-case")]
#[merge(strategy = merge::option::overwrite_none)]
pub struct TargetArgs {
    /// Target: libpq key=value string or postgres:// URL [default: DATABASE_URL, then libpq's
    /// PG* variables and service file; for run, with none of them, a throwaway server].
    #[arg(long, value_name = "DSN")]
    pub dsn: Option<String>,

    /// TLS: libpq's sslmode, winning over the DSN's [default: prefer].
    #[arg(long, value_name = "MODE")]
    pub sslmode: Option<SslMode>,

    /// Root certificate (PEM) to verify the server with (libpq's sslrootcert).
    #[arg(long, value_name = "FILE")]
    pub sslrootcert: Option<PathBuf>,
}
