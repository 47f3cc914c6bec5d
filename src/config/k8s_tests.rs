//! The manifests' options and the pod's role, each refusal checked for the value it names.

use super::*;

fn render_args(agents: u32) -> K8sRenderArgs {
    K8sRenderArgs {
        agents,
        image: "registry.example.com/pgstress:0.1.0".to_owned(),
        name: "pgstress".to_owned(),
        namespace: None,
        port: 7433,
        secret: "pgstress".to_owned(),
        secret_template: false,
        hold: "10m".parse().unwrap(),
        deadline: "3h".parse().unwrap(),
        logs_claim: None,
        cpu_request: None,
        cpu_limit: None,
        memory_request: None,
        memory_limit: None,
        caps: Default::default(),
        watcher_patch: None,
        watcher_port: 7434,
        watcher_server_port: 5432,
        watcher_uid: 999,
        run_args: Vec::new(),
    }
}

fn refusal(args: K8sRenderArgs) -> String {
    RenderConfig::from_args(args).unwrap_err().to_string()
}

fn entrypoint_args(run_args: &[&str]) -> K8sEntrypointArgs {
    K8sEntrypointArgs {
        agents: 3,
        coordinator: "load-0.load:7433".to_owned(),
        caps: crate::cli::CapsArgs {
            max_connections: Some(2000),
            max_duration: Some("30m".parse().unwrap()),
        },
        hold: "5m".parse().unwrap(),
        run_args: run_args.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn defaults_render_and_the_coordinator_is_pod_zero_of_the_service() {
    let config = RenderConfig::from_args(render_args(3)).unwrap();
    assert_eq!(config.coordinator_host(), "pgstress-0.pgstress");
    assert_eq!(config.port, 7433);
    assert_eq!(config.hold, Duration::from_secs(600));
}

#[test]
fn zero_agents_is_refused_naming_the_value() {
    let error = refusal(render_args(0));
    assert!(error.contains("--agents '0'"), "{error}");
}

#[test]
fn names_that_are_not_dns_labels_are_refused() {
    for bad in [
        "Pgstress",
        "pg_stress",
        "-pg",
        "pg-",
        "",
        "9pg",
        &"a".repeat(64),
    ] {
        let mut args = render_args(1);
        args.name = bad.to_owned();
        let error = refusal(args);
        assert!(error.contains("--name"), "{bad}: {error}");
    }
}

#[test]
fn a_name_whose_last_pod_host_name_is_too_long_is_refused() {
    let mut args = render_args(100);
    args.name = "a".repeat(60);
    let error = refusal(args);
    assert!(error.contains("63 characters"), "{error}");
}

#[test]
fn namespace_and_secret_follow_kubernetes_names() {
    let mut args = render_args(1);
    args.namespace = Some("Load".to_owned());
    assert!(refusal(args).contains("--namespace 'Load'"));
    let mut args = render_args(1);
    args.secret = "db.creds-1".to_owned();
    assert_eq!(RenderConfig::from_args(args).unwrap().secret, "db.creds-1");
    let mut args = render_args(1);
    args.secret = "db..creds".to_owned();
    assert!(refusal(args).contains("--secret 'db..creds'"));
}

#[test]
fn ports_outside_1024_to_65535_are_refused() {
    for bad in [0, 80, 65536] {
        let mut args = render_args(1);
        args.port = bad;
        let error = refusal(args);
        assert!(error.contains(&format!("--port '{bad}'")), "{error}");
    }
}

#[test]
fn quantities_are_checked_as_kubernetes_parses_them() {
    for good in ["500m", "2", "1.5", "512Mi", "2Gi", "1e3", "1E", "0.5k"] {
        assert_eq!(
            quantity("--cpu-request", Some(good.to_owned())).unwrap(),
            Some(good.to_owned())
        );
    }
    for bad in ["", "lots", "2 Gi", "Gi", "1.2.3", "-1", "1e"] {
        assert!(
            quantity("--memory-limit", Some(bad.to_owned())).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_deadline_shorter_than_the_hold_is_refused() {
    let mut args = render_args(1);
    args.deadline = "5m".parse().unwrap();
    assert!(refusal(args).contains("--deadline '5m'"));
}

#[test]
fn a_dsn_in_the_run_options_is_refused_without_its_password() {
    let mut args = render_args(1);
    args.run_args = vec!["--dsn=postgres://u:hunter2@db/x".to_owned()];
    let error = refusal(args);
    assert!(error.contains("Secret's DATABASE_URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn run_options_that_pgstress_run_refuses_are_refused_when_rendering() {
    let mut args = render_args(1);
    args.run_args = vec!["--mode".to_owned(), "sideways".to_owned()];
    let error = refusal(args);
    assert!(error.contains("sideways"), "{error}");
    let mut args = render_args(1);
    args.run_args = vec!["--mode".to_owned(), "pool".to_owned()];
    assert_eq!(RenderConfig::from_args(args).unwrap().run_args.len(), 2);
}

#[test]
fn index_zero_runs_the_coordinator_listening_on_the_port() {
    let role = role(entrypoint_args(&["--mode", "pool"]), Some("0")).unwrap();
    let expected: Vec<String> = ["run", "--mode", "pool", "--agents", "3", "--listen"]
        .into_iter()
        .map(str::to_owned)
        .chain(["0.0.0.0:7433".to_owned()])
        .collect();
    assert_eq!(
        role,
        Role::Coordinator {
            args: expected,
            hold: Duration::from_secs(300)
        }
    );
}

#[test]
fn other_indexes_run_an_agent_dialing_the_coordinator_with_its_caps() {
    let role = role(entrypoint_args(&["--mode", "pool"]), Some("3")).unwrap();
    let expected = [
        "agent",
        "--coordinator",
        "load-0.load:7433",
        "--max-connections",
        "2000",
        "--max-duration",
        "30m",
    ];
    assert_eq!(
        role,
        Role::Agent {
            args: expected.map(str::to_owned).to_vec()
        }
    );
}

#[test]
fn a_missing_or_out_of_range_index_is_refused() {
    let missing = role(entrypoint_args(&[]), None).unwrap_err().to_string();
    assert!(missing.contains("JOB_COMPLETION_INDEX"), "{missing}");
    for bad in ["4", "-1", "x"] {
        let error = role(entrypoint_args(&[]), Some(bad))
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("'{bad}'")), "{error}");
    }
}

#[test]
fn a_coordinator_address_without_a_port_is_refused() {
    let mut args = entrypoint_args(&[]);
    args.coordinator = "load-0.load".to_owned();
    let error = role(args, Some("1")).unwrap_err().to_string();
    assert!(error.contains("HOST:PORT"), "{error}");
}
