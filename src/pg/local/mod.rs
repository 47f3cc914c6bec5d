//! The processes pgstress starts on this machine and removes however it exits: the throwaway
//! server (seeded with the demo table), a throwaway PgBouncer, and the watchdog behind both.

pub mod console;
pub mod demo;
pub mod pooler;
mod pooler_config;
pub mod server;
pub mod throwaway;
pub mod watchdog;
