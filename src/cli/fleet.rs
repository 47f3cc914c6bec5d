//! The options of the fleet: `pgstress agent`, and `pgstress k8s` which places the coordinator
//! and its agents on Kubernetes.

use clap::{Args, Subcommand};

use super::target::TargetArgs;
use super::values::Span;

/// What an agent takes on for any coordinator: `pgstress agent`'s own limits, which
/// `k8s render` and `k8s entrypoint` pass on to the agents they start.
#[derive(Debug, Clone, Default, Args)]
pub struct CapsArgs {
    /// Agents' cap: the most connections any coordinator may have an agent hold at once
    /// [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<u32>,

    /// Agents' cap: the longest an agent works for any coordinator, from joining to the last
    /// step, e.g. 30m [default: 1h].
    #[arg(long, value_name = "DURATION")]
    pub max_duration: Option<Span>,
}

#[derive(Debug, Args)]
pub struct K8sArgs {
    #[command(subcommand)]
    pub command: K8sCommand,
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Print the manifests (YAML) of a run on N agents: a headless Service and an Indexed Job.
    Render(Box<K8sRenderArgs>),
    /// The container's command: run the coordinator (index 0) or an agent, by JOB_COMPLETION_INDEX.
    Entrypoint(K8sEntrypointArgs),
}

#[derive(Debug, Args)]
pub struct K8sRenderArgs {
    /// Agents sending the load, one pod each (the coordinator is one pod more).
    #[arg(long, value_name = "N")]
    pub agents: u32,

    /// Container image holding pgstress, e.g. registry.example.com/pgstress:0.1.0.
    #[arg(long, value_name = "IMAGE")]
    pub image: String,

    /// Name of the Job and of its headless Service (a DNS label).
    #[arg(long, value_name = "NAME", default_value = "pgstress")]
    pub name: String,

    /// Namespace of every object [default: kubectl's current one].
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Port the coordinator listens on for its agents.
    #[arg(long, value_name = "PORT", default_value_t = 7433)]
    pub port: u32,

    /// Secret holding the keys DATABASE_URL and PGSTRESS_TOKEN.
    #[arg(long, value_name = "SECRET", default_value = "pgstress")]
    pub secret: String,

    /// Also print a template of that Secret, with placeholders to replace (never a real value).
    #[arg(long)]
    pub secret_template: bool,

    /// How long the coordinator's pod keeps running after the run, so its logs can be copied
    /// out with `kubectl cp`; 0s to end at once.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub hold: Span,

    /// Deadline of the whole Job (activeDeadlineSeconds), hold included.
    #[arg(long, value_name = "DURATION", default_value = "3h")]
    pub deadline: Span,

    /// Keep the coordinator's logs on this PersistentVolumeClaim instead of the pod's own
    /// emptyDir (which goes with the pod).
    #[arg(long, value_name = "CLAIM")]
    pub logs_claim: Option<String>,

    /// CPU each pod requests, e.g. 1 or 500m.
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_request: Option<String>,

    /// CPU limit of each pod (a throttled agent measures itself, not the server).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu_limit: Option<String>,

    /// Memory each pod requests, e.g. 512Mi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory_request: Option<String>,

    /// Memory limit of each pod, e.g. 2Gi.
    #[arg(long, value_name = "QUANTITY")]
    pub memory_limit: Option<String>,

    #[command(flatten)]
    pub caps: CapsArgs,

    /// Also write to FILE a patch that adds the server's watcher (`pgstress watch`) beside the
    /// PostgreSQL container of your StatefulSet or Deployment (`kubectl patch statefulset NAME
    /// --patch-file FILE`); the coordinator then waits for it [default: none].
    #[arg(long, value_name = "FILE")]
    pub watcher_patch: Option<std::path::PathBuf>,

    /// With --watcher-patch: the port the coordinator listens on for the watcher.
    #[arg(long, value_name = "PORT", default_value_t = 7434)]
    pub watcher_port: u32,

    /// With --watcher-patch: the PostgreSQL server's port in its pod (the watcher finds the
    /// postmaster listening on it).
    #[arg(long, value_name = "PORT", default_value_t = 5432)]
    pub watcher_server_port: u16,

    /// With --watcher-patch: the user id the PostgreSQL container runs as (999 in the official
    /// image); the watcher runs as it, to read the server's processes.
    #[arg(long, value_name = "UID", default_value_t = 999)]
    pub watcher_uid: u32,

    /// Options of the coordinator's `pgstress run`, after `--`, e.g. -- --mode pool --steps 20.
    #[arg(last = true, value_name = "RUN OPTIONS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct K8sEntrypointArgs {
    /// Agents the coordinator waits for.
    #[arg(long, value_name = "N")]
    pub agents: u32,

    /// The coordinator's address, HOST:PORT: agents dial it, the coordinator listens on PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,

    #[command(flatten)]
    pub caps: CapsArgs,

    /// How long the coordinator's pod keeps running after the run.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub hold: Span,

    /// Options of the coordinator's `pgstress run`.
    #[arg(last = true, value_name = "RUN OPTIONS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The coordinator to dial: the HOST:PORT of `pgstress run --agents N --listen ADDR:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,

    /// This agent's own target (the coordinator never sends one).
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub caps: CapsArgs,

    /// This agent's name in the coordinator's logs [default: the host name and process id].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The local address the load's connections leave from (e.g. 127.0.0.2), on a host with
    /// several addresses: each has its own ephemeral ports.
    #[arg(long, value_name = "ADDR")]
    pub source_address: Option<std::net::IpAddr>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("server").required(true).multiple(true))]
pub struct WatchArgs {
    /// The run to report to: the HOST:PORT of `pgstress run --watcher-listen ADDR:PORT`.
    #[arg(long, value_name = "HOST:PORT")]
    pub run: String,

    /// The server's data folder: its postmaster.pid names the postmaster.
    #[arg(long, value_name = "DIR", group = "server")]
    pub pgdata: Option<std::path::PathBuf>,

    /// The server's port, when its data folder is not at hand: the postgres process listening
    /// on it is the postmaster.
    #[arg(long, value_name = "PORT", group = "server")]
    pub port: Option<u16>,

    /// This watcher's name in the run's logs [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// After each run (or 2 minutes with none listening), find the server and dial again for
    /// the next one, until stopped: a watcher that lives beside the server, as in a pod
    /// [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub keep_watching: Option<bool>,
}
