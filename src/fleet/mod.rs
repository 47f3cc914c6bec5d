//! Load from several machines: a coordinator (`pgstress run --agents N --listen ADDR:PORT`) and
//! agents (`pgstress agent --coordinator HOST:PORT`) that dial out to it. The coordinator owns
//! the run; each step it estimates every agent's clock offset, sends each its share with one
//! release time, and merges what they measured into one step, so the step loop, logs, flags
//! and verdict stay those of a single-machine run.
//!
//! - `frame`: length-prefixed JSON messages over a TCP stream, every read with a deadline.
//! - `messages`: what travels, in each direction.
//! - `auth`: the shared token proven by an HMAC challenge in each direction.
//! - `clock`: the offset estimate from ping exchanges, and the clock both sides read.
//! - `split`: a step's requests (and a pool's workers) split so the parts add up exactly.
//! - `coordinator`: waiting for the agents, the handshake, the plan.
//! - `remote`: the engine that sends each step to the agents and merges their answers.
//! - `agent`: the agent's side of the conversation.
//! - `introduce`: the dialing side's way in (dial, hello, proofs), an agent's or a watcher's.
//! - `watcher`, `watched`: a watcher on the server's host (`pgstress watch`), which dials the
//!   run the same way and answers its requests for the host's counters; and the run's side.

pub mod agent;
pub mod auth;
pub mod clock;
pub mod coordinator;
pub mod door;
pub mod frame;
pub mod introduce;
pub mod link;
pub mod messages;
pub mod remote;
pub mod split;
pub mod watched;
pub mod watcher;

use std::time::Duration;

/// How often an agent says it is alive while it runs a step.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the coordinator counts an agent as lost.
pub const LOST_AFTER: Duration = Duration::from_secs(3);
/// The environment variable holding the shared token, on both sides.
pub const TOKEN_VAR: &str = "PGSTRESS_TOKEN";

/// What goes wrong on the control connection, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the control connection to {peer} failed: {cause}")]
    Io { peer: String, cause: std::io::Error },
    #[error(
        "{peer} sent what pgstress cannot read ({reason}); are both sides the same pgstress version?"
    )]
    Garbled { peer: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Lost(String),
}
