//! `pgstress k8s`: the options of the manifests and of the container's entrypoint, checked
//! before anything is printed or started, so a bad name is refused here and not by the
//! cluster after `kubectl apply` half-created the objects.

use std::time::Duration;

use clap::Parser;

use crate::cli::values::Span;
use crate::cli::{Cli, K8sEntrypointArgs, K8sRenderArgs};
use crate::config::caps::agent_caps;
use crate::config::error::{ConfigError, invalid};

/// The Secret's keys, as the user creates them and the pods read them.
pub const SECRET_KEYS: [&str; 2] = ["DATABASE_URL", "PGSTRESS_TOKEN"];
/// Options of `pgstress run` that the manifests set themselves, or that must not be written
/// into them: `--dsn` would put the target (and its password) in plain YAML.
const RESERVED_RUN_OPTIONS: [(&str, &str); 4] = [
    (
        "--dsn",
        "the target comes from the Secret's DATABASE_URL, so no password is written into the manifests",
    ),
    ("--agents", "it is set from k8s render's --agents"),
    ("--listen", "it is set from k8s render's --port"),
    (
        "--logs",
        "the logs go to the pod's /pgstress/logs volume, where the docs copy them from",
    ),
];
/// An Indexed Job's most completions.
const MAX_AGENTS: u32 = 99_999;
/// Longest Kubernetes name of a label, a Service or a namespace (RFC 1123 / 1035 label).
const MAX_LABEL: usize = 63;

/// What `pgstress k8s render` prints, every value checked.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    pub agents: u32,
    pub image: String,
    /// Name of the Job and of its headless Service.
    pub name: String,
    pub namespace: Option<String>,
    pub port: u16,
    pub secret: String,
    pub secret_template: bool,
    pub hold: Duration,
    pub deadline: Duration,
    pub logs_claim: Option<String>,
    pub resources: Resources,
    /// The agents' caps as given (checked), passed on to `pgstress agent`.
    pub caps: crate::cli::CapsArgs,
    pub run_args: Vec<String>,
    /// The watcher to place beside the PostgreSQL container, if asked for.
    pub watcher: Option<WatcherPatch>,
}

/// `--watcher-patch FILE` and how the watcher reaches the coordinator and finds the server.
#[derive(Debug, Clone)]
pub struct WatcherPatch {
    pub file: std::path::PathBuf,
    /// The coordinator's port for the watcher.
    pub port: u16,
    /// The server's port in its pod.
    pub server_port: u16,
    /// The PostgreSQL container's user id.
    pub uid: u32,
}

/// Kubernetes quantities, checked, as written.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub cpu_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_request: Option<String>,
    pub memory_limit: Option<String>,
}

impl RenderConfig {
    pub fn from_args(args: K8sRenderArgs) -> Result<Self, ConfigError> {
        let agents = agents(args.agents)?;
        let name = rfc1035_label("--name", &args.name)?;
        let pod_host = format!("{name}-{agents}");
        if pod_host.len() > MAX_LABEL {
            return Err(invalid(
                "--name",
                &name,
                format!(
                    "the pods' host names (as {pod_host}) must fit in {MAX_LABEL} characters; give a shorter name"
                ),
            ));
        }
        let Span(hold) = args.hold;
        let Span(deadline) = args.deadline;
        let watcher = watcher_patch(&args)?;
        if deadline <= hold {
            return Err(invalid(
                "--deadline",
                args.deadline,
                "give more than --hold: the deadline counts the run and the hold together",
            ));
        }
        Ok(RenderConfig {
            agents,
            image: image(&args.image)?,
            name,
            namespace: args
                .namespace
                .map(|ns| rfc1123_label("--namespace", &ns))
                .transpose()?,
            port: port(args.port)?,
            secret: dns_subdomain("--secret", &args.secret)?,
            secret_template: args.secret_template,
            hold,
            deadline,
            logs_claim: args
                .logs_claim
                .map(|claim| dns_subdomain("--logs-claim", &claim))
                .transpose()?,
            resources: Resources {
                cpu_request: quantity("--cpu-request", args.cpu_request)?,
                cpu_limit: quantity("--cpu-limit", args.cpu_limit)?,
                memory_request: quantity("--memory-request", args.memory_request)?,
                memory_limit: quantity("--memory-limit", args.memory_limit)?,
            },
            caps: {
                agent_caps(&args.caps)?;
                args.caps
            },
            run_args: run_args(args.run_args)?,
            watcher,
        })
    }

    /// The coordinator's run options: the user's, and where it takes the watcher.
    pub fn coordinator_run_args(&self) -> Vec<String> {
        let mut args = self.run_args.clone();
        if let Some(watcher) = &self.watcher {
            args.push("--watcher-listen".to_owned());
            args.push(format!("0.0.0.0:{}", watcher.port));
        }
        args
    }

    /// The coordinator's name from any namespace when the run's is given, else from its own.
    pub fn coordinator_from_anywhere(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}.{namespace}.svc", self.coordinator_host()),
            None => self.coordinator_host(),
        }
    }

    /// `<job>-0.<service>`: the coordinator pod's name in the headless Service's DNS.
    pub fn coordinator_host(&self) -> String {
        format!("{}-0.{}", self.name, self.name)
    }
}

/// Which role this pod plays, and how to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Index 0: `pgstress run RUN_ARGS --agents N --listen 0.0.0.0:PORT`.
    Coordinator { args: Vec<String>, hold: Duration },
    /// Index 1..=N: `pgstress agent --coordinator HOST:PORT [caps]`.
    Agent { args: Vec<String> },
}

/// The role of the pod whose Job completion index is `index` (JOB_COMPLETION_INDEX).
pub fn role(args: K8sEntrypointArgs, index: Option<&str>) -> Result<Role, ConfigError> {
    let agents = agents(args.agents)?;
    let (host, port) = coordinator(&args.coordinator)?;
    let index = match index {
        None => {
            return Err(invalid(
                "JOB_COMPLETION_INDEX",
                "(unset)",
                "`pgstress k8s entrypoint` runs in a pod of an Indexed Job; use `pgstress run` or `pgstress agent` elsewhere",
            ));
        }
        Some(text) => text.trim().parse::<u32>().ok().filter(|i| *i <= agents).ok_or_else(|| {
            invalid(
                "JOB_COMPLETION_INDEX",
                text,
                format!("expected 0 (the coordinator) to {agents} (the agents); render the manifests again with --agents {agents}"),
            )
        })?,
    };
    if index == 0 {
        let Span(hold) = args.hold;
        let mut run = vec!["run".to_owned()];
        run.extend(run_args(args.run_args)?);
        run.extend([
            "--agents".to_owned(),
            agents.to_string(),
            "--listen".to_owned(),
            format!("0.0.0.0:{port}"),
        ]);
        return Ok(Role::Coordinator { args: run, hold });
    }
    let mut agent = vec![
        "agent".to_owned(),
        "--coordinator".to_owned(),
        format!("{host}:{port}"),
    ];
    agent_caps(&args.caps)?;
    agent.extend(caps_args(&args.caps));
    Ok(Role::Agent { args: agent })
}

fn watcher_patch(args: &K8sRenderArgs) -> Result<Option<WatcherPatch>, ConfigError> {
    let Some(file) = args.watcher_patch.clone() else {
        return Ok(None);
    };
    let watcher_port = port(args.watcher_port).map_err(|_| {
        invalid(
            "--watcher-port",
            args.watcher_port,
            "give a port from 1024 to 65535 (the pods run as a non-root user)",
        )
    })?;
    if u32::from(watcher_port) == args.port {
        return Err(invalid(
            "--watcher-port",
            watcher_port,
            "it is the agents' --port; give the watcher a port of its own",
        ));
    }
    if args.watcher_uid == 0 {
        return Err(invalid(
            "--watcher-uid",
            0,
            "give the PostgreSQL container's own user id (PostgreSQL never runs as root)",
        ));
    }
    Ok(Some(WatcherPatch {
        file,
        port: watcher_port,
        server_port: args.watcher_server_port,
        uid: args.watcher_uid,
    }))
}

fn agents(agents: u32) -> Result<u32, ConfigError> {
    if (1..=MAX_AGENTS).contains(&agents) {
        return Ok(agents);
    }
    Err(invalid(
        "--agents",
        agents,
        format!(
            "give 1 to {MAX_AGENTS} (an Indexed Job's most completions, the coordinator included)"
        ),
    ))
}

fn port(port: u32) -> Result<u16, ConfigError> {
    // Below 1024 a non-root container may not listen.
    match u16::try_from(port) {
        Ok(port) if port >= 1024 => Ok(port),
        _ => Err(invalid(
            "--port",
            port,
            "give a port from 1024 to 65535 (the pods run as a non-root user)",
        )),
    }
}

fn coordinator(text: &str) -> Result<(String, u16), ConfigError> {
    let bad = || {
        invalid(
            "--coordinator",
            text,
            "expected HOST:PORT, e.g. pgstress-0.pgstress:7433",
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u32>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), self::port(port)?))
}

fn image(image: &str) -> Result<String, ConfigError> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "--image",
            image,
            "expected an image reference such as registry.example.com/pgstress:0.1.0",
        ));
    }
    Ok(image.to_owned())
}

/// The caps given, as `pgstress agent`'s options.
pub fn caps_args(caps: &crate::cli::CapsArgs) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(cap) = caps.max_connections {
        args.extend(["--max-connections".to_owned(), cap.to_string()]);
    }
    if let Some(cap) = caps.max_duration {
        args.extend(["--max-duration".to_owned(), cap.to_string()]);
    }
    args
}

/// The options after `--`, refused here when `pgstress run` would refuse them in the pod.
fn run_args(args: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for arg in &args {
        let option = arg
            .split_once('=')
            .map_or(arg.as_str(), |(option, _)| option);
        if let Some((_, why)) = RESERVED_RUN_OPTIONS
            .iter()
            .find(|(name, _)| *name == option)
        {
            let shown = crate::pg::target::redact::redact_secrets(arg);
            return Err(invalid("run option", shown, format!("leave it out: {why}")));
        }
    }
    let command = ["pgstress", "run"].into_iter().map(str::to_owned);
    if let Err(err) = Cli::try_parse_from(command.chain(args.iter().cloned())) {
        let rendered = err.render().to_string();
        let first = rendered.lines().next().unwrap_or("invalid option");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let shown = crate::pg::target::redact::redact_secrets(&args.join(" "));
        return Err(invalid(
            "run options",
            shown,
            format!("`pgstress run` refuses them: {first}"),
        ));
    }
    Ok(args)
}

/// A Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`), as the API server parses them.
fn quantity(option: &'static str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(text) = value else { return Ok(None) };
    const SUFFIXES: [&str; 14] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
    ];
    let number = SUFFIXES
        .iter()
        .find_map(|suffix| text.strip_suffix(suffix))
        .or_else(|| text.strip_suffix('E'))
        .unwrap_or(&text);
    let (mantissa, exponent) = match number.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (number, None),
    };
    let decimal = |s: &str| {
        let mut parts = s.splitn(2, '.');
        let whole = parts.next().unwrap_or_default();
        let fraction = parts.next().unwrap_or_default();
        !(whole.is_empty() && fraction.is_empty())
            && whole
                .chars()
                .chain(fraction.chars())
                .all(|c| c.is_ascii_digit())
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
    });
    if decimal(mantissa) && exponent_ok {
        return Ok(Some(text));
    }
    Err(invalid(
        option,
        &text,
        "expected a Kubernetes quantity such as 500m, 2, 512Mi or 2Gi",
    ))
}

/// A Service's name: an RFC 1035 label (lower case, digits and '-', starting with a letter).
fn rfc1035_label(option: &'static str, text: &str) -> Result<String, ConfigError> {
    let label = rfc1123_label(option, text)?;
    if label.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Ok(label);
    }
    Err(invalid(
        option,
        text,
        "must start with a letter (it names a Service)",
    ))
}

/// A namespace's name: an RFC 1123 label.
fn rfc1123_label(option: &'static str, text: &str) -> Result<String, ConfigError> {
    let ok = !text.is_empty()
        && text.len() <= MAX_LABEL
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if ok {
        return Ok(text.to_owned());
    }
    Err(invalid(
        option,
        text,
        format!(
            "expected a DNS label: at most {MAX_LABEL} lower-case letters, digits or '-', \
             starting and ending with a letter or digit, e.g. pgstress"
        ),
    ))
}

/// A Secret's or claim's name: an RFC 1123 subdomain (labels joined by dots).
fn dns_subdomain(option: &'static str, text: &str) -> Result<String, ConfigError> {
    let ok = text.len() <= 253
        && text
            .split('.')
            .all(|label| rfc1123_label(option, label).is_ok());
    if ok {
        return Ok(text.to_owned());
    }
    Err(invalid(
        option,
        text,
        "expected a DNS name: lower-case letters, digits, '-' and '.', e.g. pgstress",
    ))
}

#[cfg(test)]
#[path = "k8s_tests.rs"]
mod tests;
