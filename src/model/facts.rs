//! What a run is, fixed before step 1: the plan, the target, the server, the client. The
//! terminal header and the JSON summary both describe a run from this.

use serde::{Deserialize, Serialize};

use crate::model::server_cpu::ServerSource;

/// Facts read from the server before the first step.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerFacts {
    pub version: String,
    pub max_connections: u32,
    pub superuser_reserved_connections: u32,
    /// The run's role is a superuser, which may use the reserved connections too.
    #[serde(default)]
    pub superuser: bool,
    /// Client sessions already open when the run started (others', and pgstress's monitor).
    #[serde(default)]
    pub sessions_at_start: u32,
}

impl ServerFacts {
    /// Connections the run's requests can hold at once: what was free when it started, the
    /// superuser reserve left out only for a role that may not use it.
    pub fn usable_connections(&self) -> u32 {
        let reserved = match self.superuser {
            true => 0,
            false => self.superuser_reserved_connections,
        };
        self.max_connections
            .saturating_sub(reserved)
            .saturating_sub(self.sessions_at_start)
    }
}

/// A pooler's limit on the clients it serves at once, as the pooler itself reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolerLimit {
    /// The pooler, as it answered: `pgpool-II` or `PgBouncer`.
    pub pooler: String,
    /// Clients it serves at once: more wait in its queue (pgpool-II) or are refused
    /// (PgBouncer).
    pub clients: u32,
    /// Where the figure comes from, e.g. `num_init_children 64 less reserved_connections 0`.
    pub setting: String,
}

impl PoolerLimit {
    /// The limit of `processes` alike processes sharing one port, as one console reported
    /// it for its own process: each serves its own clients with its own pools.
    pub fn across(self, processes: u32) -> PoolerLimit {
        match processes {
            0 | 1 => self,
            n => PoolerLimit {
                clients: self.clients.saturating_mul(n),
                setting: format!("{} in each of {n} processes", self.setting),
                pooler: self.pooler,
            },
        }
    }
}

/// Connections the run's load can hold at once: through a pooler that reported its client
/// limit, that limit (the server behind it sees the pooler's own connections, not the
/// load's); else the server's usable connections.
pub fn clients_at_once(server: &ServerFacts, pooler: Option<&PoolerLimit>) -> u32 {
    pooler.map_or_else(|| server.usable_connections(), |limit| limit.clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poolers_client_limit_stands_for_the_servers_connections() {
        let server = ServerFacts {
            max_connections: 124,
            sessions_at_start: 1,
            superuser: true,
            ..ServerFacts::default()
        };
        assert_eq!(clients_at_once(&server, None), 123);
        let pgpool = PoolerLimit {
            pooler: "pgpool-II".into(),
            clients: 64,
            setting: "num_init_children 64".into(),
        };
        assert_eq!(clients_at_once(&server, Some(&pgpool)), 64);
        let two = pgpool.clone().across(2);
        assert_eq!(clients_at_once(&server, Some(&two)), 128);
        assert_eq!(two.setting, "num_init_children 64 in each of 2 processes");
        assert_eq!(pgpool.clone().across(1), pgpool);
    }

    #[test]
    fn usable_connections_are_those_free_at_the_start_for_this_role() {
        let mut server = ServerFacts {
            version: "15".into(),
            max_connections: 100,
            superuser_reserved_connections: 3,
            superuser: false,
            sessions_at_start: 10,
        };
        assert_eq!(server.usable_connections(), 87);
        server.superuser = true;
        assert_eq!(server.usable_connections(), 90);
        server.sessions_at_start = 120;
        assert_eq!(server.usable_connections(), 0);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFacts {
    pub mode: String,
    /// What a step's size counts.
    #[serde(default)]
    pub unit: String,
    /// How the mode sends its load, in a sentence.
    #[serde(default)]
    pub engine: String,
    pub steps: u32,
    pub start: u32,
    pub step: u32,
    pub largest_step: u32,
    pub total_requests: u64,
    pub query: String,
    /// Where `$1` comes from, when the query takes it.
    pub data: Option<String>,
    pub timeout_ms: f64,
    pub sample_every_ms: f64,
    pub stop_failure_rate: Option<f64>,
    pub stop_p99_ms: Option<f64>,
    pub stop_when_unresponsive: bool,
    pub slo_p99_ms: Option<f64>,
    /// The longest the steps can take in all, start-up excluded.
    #[serde(default)]
    pub bound_s: f64,
    /// The longest the largest step can take.
    #[serde(default)]
    pub largest_step_bound_s: f64,
    /// CPU mean over a step (percent of its own CPUs) from which a side counts as saturated;
    /// runs logged before this field existed used the default.
    #[serde(default = "default_saturated_cpu_pct")]
    pub saturated_cpu_pct: f64,
    /// The share of server failures a handled step may have (`--tolerate`).
    #[serde(default)]
    pub tolerate: f64,
    /// The requests could write (`--allow-writes`); else each ran read-only.
    #[serde(default)]
    pub allow_writes: bool,
    /// A timed pool step's duration (`--mode pool --duration`): its requests are as many as
    /// its workers answer in it, and `total_requests` is the least the steps send.
    #[serde(default)]
    pub step_duration_s: Option<f64>,
}

impl PlanFacts {
    /// How many requests the ramp sends, in the header's words.
    pub fn requests_in_all(&self) -> String {
        match self.step_duration_s {
            Some(seconds) => format!(
                "each step kept up for {}",
                humantime::format_duration(std::time::Duration::from_secs_f64(seconds))
            ),
            None => format!("{} requests in all", self.total_requests),
        }
    }

    /// What a step's size counts; runs logged before the field existed were all burst runs.
    pub fn unit_name(&self) -> &str {
        match self.unit.as_str() {
            "" => crate::model::plan::CONCURRENT,
            unit => unit,
        }
    }
}

fn default_saturated_cpu_pct() -> f64 {
    crate::model::rules::Thresholds::default().saturated_cpu_pct
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunFacts {
    pub pgstress_version: String,
    /// RFC 3339, local time.
    pub started_at: String,
    pub plan: PlanFacts,
    /// The target with its password redacted.
    pub target: String,
    /// The hosts of the target's list (`host:port`), when it has several: the steps count the
    /// requests each reached, in this order.
    #[serde(default)]
    pub nodes: Vec<String>,
    pub throwaway: bool,
    /// The pooler the load went through (a throwaway one pgstress started, or a target that
    /// behaved as one); None: straight to the server.
    #[serde(default)]
    pub pooler: Option<String>,
    /// The pooler's client limit, where it reported one: what the pool's default workers
    /// are sized by.
    #[serde(default)]
    pub pooler_limit: Option<PoolerLimit>,
    pub server: ServerFacts,
    pub server_cpu_visible: bool,
    pub server_stats_visible: bool,
    /// Where the server side's figures come from at the start (each step logs its own);
    /// runs logged before this field existed read as none.
    #[serde(default)]
    pub server_source: ServerSource,
    pub client: ClientFacts,
    /// Which CPUs each side had; runs logged before this field existed have it empty.
    #[serde(default)]
    pub cpus: CpuFacts,
}

/// Which CPUs each side had.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuFacts {
    /// pgstress's CPUs, as a list (`0-3`).
    pub client: String,
    /// The server's CPUs (its postmaster's `Cpus_allowed_list`); None when it is not local.
    pub server: Option<String>,
    /// How many CPUs the server may run on: the denominator of its saturation (its
    /// postmaster's CPUs when it is local, else `--server-cores`).
    pub server_cores: Option<f64>,
    /// `server_cores` is the user's `--server-cores`, not read from the server's processes.
    #[serde(default)]
    pub server_cores_given: bool,
    /// pgstress pinned the throwaway server and itself apart.
    pub pinned: bool,
    /// The two sides may run on the same CPUs and compete for them.
    pub shared: bool,
}

impl CpuFacts {
    /// One line for the header and the summary.
    pub fn describe(&self) -> String {
        let server = match (&self.server, self.server_cores) {
            (Some(list), _) => format!("server on CPUs {list}"),
            (None, Some(cores)) if self.server_cores_given => format!(
                "server not on this machine ({cores} CPU{} by --server-cores)",
                if cores == 1.0 { "" } else { "s" }
            ),
            (None, _) => "server not on this machine".to_owned(),
        };
        let how = match (self.pinned, self.shared) {
            (true, _) => "pinned apart",
            (false, true) => "the sides share CPUs and compete for them",
            (false, false) => "on CPUs of their own",
        };
        format!("{server}, pgstress on CPUs {}; {how}", self.client)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ClientFacts {
    pub host_cores: f64,
    pub allowed_cores: f64,
}

impl From<ClientCpus> for ClientFacts {
    fn from(cpus: ClientCpus) -> Self {
        ClientFacts {
            host_cores: cpus.host_cores,
            allowed_cores: cpus.allowed_cores,
        }
    }
}

/// The CPUs the client has and may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientCpus {
    /// All the host's cores: the denominator of the logged percentages.
    pub host_cores: f64,
    /// The cores this process may run on: its affinity mask, capped by a cgroup CPU quota.
    pub allowed_cores: f64,
}
