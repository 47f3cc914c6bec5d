//! `--watcher-patch FILE`: a strategic-merge patch that places the server's watcher beside
//! the PostgreSQL container of the user's own StatefulSet or Deployment. The pod shares one
//! process namespace, so the watcher sees the postmaster and its backends; it runs as the
//! PostgreSQL user, whose processes it reads (the postmaster's listening socket among them).

use serde_json::{Value, json};

use crate::config::k8s::{RenderConfig, SECRET_KEYS, WatcherPatch};

/// The watcher container's name in the database's pod.
pub const CONTAINER: &str = "pgstress-watcher";

/// The patch: `spec.template.spec`, with the process namespace shared and the container.
pub fn patch(config: &RenderConfig, watcher: &WatcherPatch) -> Value {
    json!({
        "spec": {
            "template": {
                "spec": {
                    "shareProcessNamespace": true,
                    "containers": [container(config, watcher)],
                },
            },
        },
    })
}

/// The watcher container: `pgstress watch` dialing the coordinator, the token from the
/// Secret, nothing asked of the node beyond its user's own rights.
pub fn container(config: &RenderConfig, watcher: &WatcherPatch) -> Value {
    let run = format!("{}:{}", config.coordinator_from_anywhere(), watcher.port);
    let token = SECRET_KEYS[1];
    json!({
        "name": CONTAINER,
        "image": config.image,
        "command": [
            "pgstress", "watch", "--run", run,
            "--port", watcher.server_port.to_string(), "--name", CONTAINER,
            // It lives as long as the server's pod: each run in turn.
            "--keep-watching",
        ],
        "env": [{ "name": token, "valueFrom": { "secretKeyRef": { "name": config.secret, "key": token } } }],
        "securityContext": {
            "runAsUser": watcher.uid,
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
        },
        // A reading every --sample-every: a few milliseconds of CPU a second.
        "resources": {
            "requests": { "cpu": "50m", "memory": "32Mi" },
            "limits": { "memory": "128Mi" },
        },
    })
}
