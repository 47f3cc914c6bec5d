//! The objects of a run on Kubernetes, built as JSON values and printed as YAML documents:
//! a headless Service whose DNS gives the coordinator pod a stable name, and an Indexed Job
//! whose index 0 is the coordinator and 1..=N the agents.

use serde_json::{Value, json};

use crate::config::k8s::{RenderConfig, SECRET_KEYS};

/// Where the image keeps pgstress's working folder; `logs/` under it is the logs volume.
pub const WORKDIR: &str = "/pgstress";
/// The logs volume's mount point (the run's default `--logs logs`, under the working folder).
pub const LOGS_DIR: &str = "/pgstress/logs";
/// The user the image runs as (distroless's and many images' "nonroot").
const NON_ROOT_UID: u32 = 65532;
/// All but the privileged ports: an agent's burst of new connections from one pod address is
/// otherwise capped by the kernel's default 32768-60999 (28,232 ports), not by the server.
pub const LOCAL_PORT_RANGE: &str = "1024 65535";

/// Every document to print, in the order `kubectl apply -f` should create them.
pub fn manifests(config: &RenderConfig) -> Vec<Value> {
    let mut documents = Vec::new();
    if config.secret_template {
        documents.push(secret_template(config));
    }
    documents.push(service(config));
    documents.push(job(config));
    documents
}

/// The labels of every object and the selector of the pods.
pub fn labels(config: &RenderConfig) -> Value {
    json!({
        "app.kubernetes.io/name": "pgstress",
        "app.kubernetes.io/instance": config.name,
    })
}

fn metadata(config: &RenderConfig, name: &str) -> Value {
    let mut metadata = json!({ "name": name, "labels": labels(config) });
    if let Some(namespace) = &config.namespace {
        metadata["namespace"] = json!(namespace);
    }
    metadata
}

/// Placeholders only: the real values are the user's to put in, never pgstress's to print.
fn secret_template(config: &RenderConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(config, &config.secret),
        "type": "Opaque",
        "stringData": {
            (SECRET_KEYS[0]): "postgres://USER:PASSWORD@HOST:5432/DATABASE",
            (SECRET_KEYS[1]): "REPLACE-WITH-A-LONG-RANDOM-TOKEN",
        },
    })
}

fn service(config: &RenderConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(config, &config.name),
        "spec": {
            "clusterIP": "None",
            // The coordinator's name resolves as soon as its pod has an address, not once
            // Kubernetes counts it Ready: the agents start dialing at once.
            "publishNotReadyAddresses": true,
            "selector": labels(config),
            "ports": service_ports(config),
        },
    })
}

/// The agents' port, and the watcher's when it has one.
fn service_ports(config: &RenderConfig) -> Vec<Value> {
    let mut ports = vec![
        json!({ "name": "control", "port": config.port, "targetPort": config.port, "protocol": "TCP" }),
    ];
    if let Some(watcher) = &config.watcher {
        ports.push(json!({ "name": "watcher", "port": watcher.port, "targetPort": watcher.port, "protocol": "TCP" }));
    }
    ports
}

fn job(config: &RenderConfig) -> Value {
    let pods = config.agents + 1;
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(config, &config.name),
        "spec": {
            "completionMode": "Indexed",
            "completions": pods,
            "parallelism": pods,
            // A lost agent is a lost step: the run says so; a retried pod would join a run
            // that no longer waits for it.
            "backoffLimit": 0,
            "activeDeadlineSeconds": config.deadline.as_secs().max(1),
            "template": {
                "metadata": { "labels": labels(config) },
                "spec": pod_spec(config),
            },
        },
    })
}

fn pod_spec(config: &RenderConfig) -> Value {
    let logs = match &config.logs_claim {
        Some(claim) => json!({ "name": "logs", "persistentVolumeClaim": { "claimName": claim } }),
        None => json!({ "name": "logs", "emptyDir": {} }),
    };
    json!({
        // With the Job's pod host names `<job>-<index>`, this gives `<job>-0.<service>`.
        "subdomain": config.name,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": NON_ROOT_UID,
            "runAsGroup": NON_ROOT_UID,
            "fsGroup": NON_ROOT_UID,
            // With the container's settings, what the "restricted" Pod Security level asks.
            "seccompProfile": { "type": "RuntimeDefault" },
            // A "safe" (namespaced) sysctl: allowed by every kubelet without extra flags.
            "sysctls": [{ "name": "net.ipv4.ip_local_port_range", "value": LOCAL_PORT_RANGE }],
        },
        "affinity": anti_affinity(config),
        "containers": [container(config)],
        "volumes": [logs],
    })
}

/// One pod per node where the cluster has the nodes: agents sharing a node share its CPU,
/// its NIC and its conntrack table, and the point of many agents is not to.
fn anti_affinity(config: &RenderConfig) -> Value {
    json!({
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": { "matchLabels": labels(config) },
                    "topologyKey": "kubernetes.io/hostname",
                },
            }],
        },
    })
}

fn container(config: &RenderConfig) -> Value {
    let env: Vec<Value> = SECRET_KEYS
        .iter()
        .map(|key| json!({ "name": key, "valueFrom": { "secretKeyRef": { "name": config.secret, "key": key } } }))
        .collect();
    let mut container = json!({
        "name": "pgstress",
        "image": config.image,
        "workingDir": WORKDIR,
        "command": command(config),
        "env": env,
        "ports": service_ports(config).iter().map(|port| json!({
            "name": port["name"], "containerPort": port["port"], "protocol": "TCP",
        })).collect::<Vec<Value>>(),
        "volumeMounts": [{ "name": "logs", "mountPath": LOGS_DIR }],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
        },
    });
    if let Some(resources) = resources(config) {
        container["resources"] = resources;
    }
    container
}

/// `pgstress k8s entrypoint`, which reads JOB_COMPLETION_INDEX and starts the pod's role.
pub fn command(config: &RenderConfig) -> Vec<String> {
    let mut command: Vec<String> = ["pgstress", "k8s", "entrypoint", "--agents"]
        .map(str::to_owned)
        .to_vec();
    command.push(config.agents.to_string());
    command.push("--coordinator".to_owned());
    command.push(format!("{}:{}", config.coordinator_host(), config.port));
    command.push("--hold".to_owned());
    command.push(humantime::format_duration(config.hold).to_string());
    command.extend(crate::config::k8s::caps_args(&config.caps));
    let run_args = config.coordinator_run_args();
    if !run_args.is_empty() {
        command.push("--".to_owned());
        command.extend(run_args);
    }
    command
}

fn resources(config: &RenderConfig) -> Option<Value> {
    let r = &config.resources;
    let pick = |cpu: &Option<String>, memory: &Option<String>| {
        let mut map = serde_json::Map::new();
        if let Some(cpu) = cpu {
            map.insert("cpu".to_owned(), json!(cpu));
        }
        if let Some(memory) = memory {
            map.insert("memory".to_owned(), json!(memory));
        }
        (!map.is_empty()).then_some(Value::Object(map))
    };
    let mut resources = serde_json::Map::new();
    if let Some(requests) = pick(&r.cpu_request, &r.memory_request) {
        resources.insert("requests".to_owned(), requests);
    }
    if let Some(limits) = pick(&r.cpu_limit, &r.memory_limit) {
        resources.insert("limits".to_owned(), limits);
    }
    (!resources.is_empty()).then_some(Value::Object(resources))
}

/// The documents as YAML, separated by `---`.
pub fn to_yaml(documents: &[Value]) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string_multiple(documents)
}
