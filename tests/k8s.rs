//! `pgstress k8s render`: the manifests pass the Kubernetes API's own schemas (checked by
//! kubernetes-validate, strict), and their parts that must name each other do: the Service,
//! the Job's subdomain, the selectors, the address the agents dial and the Secret's keys.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The newest Kubernetes whose schemas kubernetes-validate 1.37.0 (as .ci/run installs it)
/// bundles.
const KUBERNETES_VERSION: &str = "1.37.0";
/// Where .ci/run installs the validator.
const CI_VENV: &str = "target/tools/kubernetes-validate";

/// Option sets that between them take every option of `k8s render`.
const OPTION_SETS: [&[&str]; 3] = [
    &["--agents", "1", "--image", "pgstress:dev"],
    &[
        "--agents",
        "3",
        "--image",
        "registry.example.com/team/pgstress:0.1.0",
        "--name",
        "load-test",
        "--namespace",
        "perf",
        "--port",
        "9000",
        "--secret",
        "db.creds",
        "--secret-template",
        "--hold",
        "30m",
        "--deadline",
        "2h",
        "--logs-claim",
        "pgstress-logs",
        "--cpu-request",
        "1500m",
        "--cpu-limit",
        "2",
        "--memory-request",
        "512Mi",
        "--memory-limit",
        "2Gi",
        "--max-connections",
        "20000",
        "--max-duration",
        "45m",
        "--",
        "--mode",
        "pool",
        "--steps",
        "20",
        "--query",
        "SELECT 1",
    ],
    &[
        "--agents",
        "40",
        "--image",
        "pgstress:dev",
        "--name",
        "a1",
        "--hold",
        "0s",
    ],
];

fn render(args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgstress"));
    for var in TARGET_VARS {
        command.env_remove(var);
    }
    command.args(["k8s", "render"]).args(args).output().unwrap()
}

fn rendered(args: &[&str]) -> String {
    let output = render(args);
    assert!(
        output.status.success(),
        "k8s render {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(yaml).expect("the manifests parse back as YAML")
}

fn kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    let mut found = documents.iter().filter(|d| d["kind"] == kind);
    let one = found.next().unwrap_or_else(|| panic!("no {kind} rendered"));
    assert!(found.next().is_none(), "two {kind}s rendered");
    one
}

fn validator() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("kubernetes-validate"))
            .find(|candidate| candidate.is_file())
    });
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(CI_VENV)
        .join("bin/kubernetes-validate");
    // .ci/run's pinned one first: another on PATH may lack this Kubernetes version's schemas.
    venv.is_file().then_some(venv).or(on_path).unwrap_or_else(|| {
        panic!(
            "kubernetes-validate is neither in {CI_VENV} nor on PATH: install it as .ci/run does \
             (python3 -m venv {CI_VENV} && {CI_VENV}/bin/pip install kubernetes-validate=={KUBERNETES_VERSION})"
        )
    })
}

#[test]
fn rendered_manifests_pass_kubernetes_validate_strict() {
    let validator = validator();
    let dir = tempfile::tempdir().unwrap();
    for (n, args) in OPTION_SETS.iter().enumerate() {
        let file = dir.path().join(format!("set{n}.yaml"));
        std::fs::write(&file, rendered(args)).unwrap();
        let output = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
            .arg(&file)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", validator.display()));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "option set {args:?}:\n{report}");
        for resource in ["service/", "job/"] {
            assert!(
                report
                    .lines()
                    .any(|l| l.contains("passed") && l.contains(resource)),
                "option set {args:?}: no pass for {resource}:\n{report}"
            );
        }
    }
}

#[test]
fn the_validator_refuses_a_field_the_api_does_not_have() {
    // The control of the test above: strict validation sees a misspelt field deep in the Job.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("misspelt.yaml");
    let yaml = rendered(OPTION_SETS[0]).replace("subdomain:", "subdomian:");
    std::fs::write(&file, yaml).unwrap();
    let output = Command::new(validator())
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("subdomian"));
}

/// Every key and value of `part` is in `whole` (a selector and the labels it selects).
fn selects(part: &Value, whole: &Value) -> bool {
    let part = part.as_object().expect("a map of labels");
    !part.is_empty()
        && part
            .iter()
            .all(|(key, value)| whole.get(key) == Some(value))
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// The value following `option` in a command line.
fn option_value(command: &[String], option: &str) -> String {
    let at = command.iter().position(|a| a == option);
    let at = at.unwrap_or_else(|| panic!("{option} missing in {command:?}"));
    command[at + 1].clone()
}

#[test]
fn the_service_the_subdomain_the_selectors_and_the_coordinator_address_agree() {
    for args in OPTION_SETS {
        let documents = documents(&rendered(args));
        let service = kind(&documents, "Service");
        let job = kind(&documents, "Job");
        let pod = &job["spec"]["template"];
        let name = service["metadata"]["name"].as_str().unwrap();
        assert_eq!(pod["spec"]["subdomain"], name, "{args:?}");
        assert_eq!(service["spec"]["clusterIP"], "None");
        assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
        assert!(selects(
            &service["spec"]["selector"],
            &pod["metadata"]["labels"]
        ));
        let term = &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        assert!(selects(
            &term["labelSelector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
        assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(
            service["metadata"]["namespace"],
            job["metadata"]["namespace"]
        );

        let agents: u64 = option_value(
            &args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "--agents",
        )
        .parse()
        .unwrap();
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["completions"], agents + 1, "{args:?}");
        assert_eq!(spec["parallelism"], agents + 1, "{args:?}");
        assert_eq!(spec["backoffLimit"], 0);

        let container = &pod["spec"]["containers"][0];
        let command = string_list(&container["command"]);
        assert_eq!(command[..3], ["pgstress", "k8s", "entrypoint"]);
        assert_eq!(option_value(&command, "--agents"), agents.to_string());
        let port = &service["spec"]["ports"][0]["port"];
        let job_name = job["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            option_value(&command, "--coordinator"),
            format!("{job_name}-0.{name}:{port}"),
            "the agents must dial pod 0's name in the Service's DNS"
        );
        assert_eq!(container["ports"][0]["containerPort"], *port);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], *port);
        let sysctls = &pod["spec"]["securityContext"]["sysctls"][0];
        assert_eq!(sysctls["name"], "net.ipv4.ip_local_port_range");
    }
}

#[test]
fn the_pods_read_the_documented_secret_keys_and_the_template_has_exactly_those() {
    let documents = documents(&rendered(OPTION_SETS[1]));
    let container = &kind(&documents, "Job")["spec"]["template"]["spec"]["containers"][0];
    let mut referenced = BTreeSet::new();
    for env in container["env"].as_array().unwrap() {
        let reference = &env["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "db.creds");
        assert_eq!(
            env["name"], reference["key"],
            "each variable is named as its key"
        );
        referenced.insert(reference["key"].as_str().unwrap().to_owned());
    }
    let documented = BTreeSet::from(["DATABASE_URL".to_owned(), "PGSTRESS_TOKEN".to_owned()]);
    assert_eq!(referenced, documented);
    let secret = kind(&documents, "Secret");
    assert_eq!(secret["metadata"]["name"], "db.creds");
    let keys: BTreeSet<String> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, documented);
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/agents.md"))
            .expect("docs/agents.md documents the Secret");
    for key in &documented {
        assert!(
            docs.contains(&format!("--from-literal={key}=")),
            "docs/agents.md: {key}"
        );
    }
}

#[test]
fn no_secret_is_rendered_without_the_flag_and_no_password_from_the_environment_ever() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgstress"));
    let output = command
        .args([
            "k8s",
            "render",
            "--agents",
            "2",
            "--image",
            "pgstress:dev",
            "--secret-template",
        ])
        .env("DATABASE_URL", "postgres://u:hunter2@db.example.com/app")
        .env("PGPASSWORD", "hunter2")
        .env("PGSTRESS_TOKEN", "hunter2")
        .output()
        .unwrap();
    let yaml = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    assert!(!yaml.contains("hunter2"), "{yaml}");
    let without = documents(&rendered(OPTION_SETS[0]));
    assert!(without.iter().all(|d| d["kind"] != "Secret"));
}

#[test]
fn bad_options_are_one_line_errors_naming_the_value() {
    // Exit 1 for a value refused by its checks, 2 for one that does not parse (a usage error).
    let cases: [(&[&str], i32, &str); 6] = [
        (&["--agents", "0"], 1, "--agents '0'"),
        (
            &["--agents", "2", "--name", "Load_Test"],
            1,
            "--name 'Load_Test'",
        ),
        (&["--agents", "2", "--port", "80"], 1, "--port '80'"),
        (
            &["--agents", "2", "--cpu-request", "lots"],
            1,
            "--cpu-request 'lots'",
        ),
        (
            &["--agents", "2", "--hold", "soon"],
            2,
            "'soon' for '--hold <DURATION>'",
        ),
        (
            &["--agents", "2", "--", "--dsn", "postgres://u:hunter2@db/x"],
            1,
            "DATABASE_URL",
        ),
    ];
    for (args, code, expected) in cases {
        let mut all = vec!["--image", "pgstress:dev"];
        all.extend(args);
        let output = render(&all);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        assert!(
            output.stdout.is_empty(),
            "{args:?}: nothing printed on a refusal"
        );
        let error = match code {
            1 => one_line_error(&output.stderr),
            _ => usage_error(&output.stderr).0,
        };
        assert!(error.contains(expected), "{args:?}: {error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}

#[test]
fn the_entrypoint_outside_an_indexed_job_is_a_one_line_error() {
    for index in [None, Some("7")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pgstress"));
        command.args([
            "k8s",
            "entrypoint",
            "--agents",
            "3",
            "--coordinator",
            "pgstress-0.pgstress:7433",
        ]);
        command.env_remove("JOB_COMPLETION_INDEX");
        if let Some(index) = index {
            command.env("JOB_COMPLETION_INDEX", index);
        }
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{index:?}");
        let error = one_line_error(&output.stderr);
        assert!(error.contains("JOB_COMPLETION_INDEX"), "{error}");
    }
}

#[test]
fn run_options_without_the_separator_are_a_usage_error_with_the_fix() {
    let output = render(&["--agents", "2", "--image", "pgstress:dev", "--mode", "pool"]);
    assert_eq!(output.status.code(), Some(2));
    let (error, tip) = usage_error(&output.stderr);
    assert!(error.contains("`pgstress k8s render --help`"), "{error}");
    assert!(tip.is_some_and(|tip| tip.contains("-- --mode")));
}

/// `--watcher-patch FILE`: the coordinator takes the watcher on its own port of the Service,
/// and the patch's pod spec, beside a PostgreSQL container as in the user's own StatefulSet,
/// passes kubernetes-validate strict: the watcher shares the pod's processes, runs as the
/// PostgreSQL user, dials the coordinator's name from the database's namespace with the token
/// from the Secret, and finds the server by its port.
#[test]
fn the_watcher_patch_places_a_valid_watcher_beside_postgresql_and_the_coordinator_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let patch_file = dir.path().join("watcher.yaml");
    let args = [
        "--agents",
        "2",
        "--image",
        "pgstress:dev",
        "--name",
        "load",
        "--namespace",
        "perf",
        "--secret",
        "creds",
        "--watcher-patch",
        patch_file.to_str().unwrap(),
        "--watcher-port",
        "7500",
        "--watcher-server-port",
        "5433",
        "--watcher-uid",
        "26",
        "--",
        "--mode",
        "pool",
    ];
    let manifests = rendered(&args);
    let documents = documents(&manifests);
    let service = kind(&documents, "Service");
    let ports: Vec<(String, u64)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [("control".to_owned(), 7433), ("watcher".to_owned(), 7500)]
    );
    let job = kind(&documents, "Job");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let command = string_list(&container["command"]);
    assert_eq!(option_value(&command, "--watcher-listen"), "0.0.0.0:7500");
    assert_eq!(container["ports"][1]["containerPort"], 7500);

    let patch: Value = serde_saphyr::from_str(&std::fs::read_to_string(&patch_file).unwrap())
        .expect("the patch parses back as YAML");
    let mut spec = patch["spec"]["template"]["spec"].clone();
    assert_eq!(spec["shareProcessNamespace"], true);
    let watcher = spec["containers"][0].clone();
    let watch = string_list(&watcher["command"]);
    assert_eq!(watch[..2], ["pgstress", "watch"]);
    assert_eq!(option_value(&watch, "--run"), "load-0.load.perf.svc:7500");
    assert_eq!(option_value(&watch, "--port"), "5433");
    assert!(watch.contains(&"--keep-watching".to_owned()), "{watch:?}");
    assert_eq!(watcher["securityContext"]["runAsUser"], 26);
    assert_eq!(
        watcher["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "creds"
    );
    assert_eq!(watcher["env"][0]["name"], "PGSTRESS_TOKEN");
    // The patch merged into a PostgreSQL pod, as `kubectl patch` would: validated whole.
    spec["containers"] = serde_json::json!([
        { "name": "postgres", "image": "postgres:17", "ports": [{ "containerPort": 5433 }] },
        watcher,
    ]);
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "postgres-0", "namespace": "db" },
        "spec": spec,
    });
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&pod).unwrap()).unwrap();
    let output = Command::new(validator())
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&file)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.contains("passed"),
        "{report}"
    );
    let manifests_file = dir.path().join("run.yaml");
    std::fs::write(&manifests_file, &manifests).unwrap();
    let output = Command::new(validator())
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(&manifests_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    // A watcher on the agents' own port is refused, naming the value.
    let clash = render(&[
        "--agents",
        "1",
        "--image",
        "pgstress:dev",
        "--watcher-patch",
        patch_file.to_str().unwrap(),
        "--watcher-port",
        "7433",
    ]);
    assert_eq!(clash.status.code(), Some(1), "{clash:?}");
    let error = String::from_utf8_lossy(&clash.stderr);
    assert!(
        error.contains("--watcher-port") && error.contains("7433"),
        "{error}"
    );
}
