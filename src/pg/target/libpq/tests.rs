use std::os::unix::fs::PermissionsExt;

use super::*;

fn inputs(dsn: Option<&str>, env: &[(&str, &str)], home: &Path) -> Inputs {
    Inputs {
        dsn: dsn.map(|d| (d.to_owned(), "--dsn".to_owned())),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        home: Some(home.to_owned()),
        os_user: "osuser".to_owned(),
        socket_dir: "/var/run/postgresql".to_owned(),
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn keyword_then_service_then_variable_then_default() {
    let home = tempfile::tempdir().unwrap();
    write(
        &home.path().join(".pg_service.conf"),
        "[lab]\nhost=svc-host\nport=6000\nuser=svc-user\n",
        0o600,
    );
    let env = [
        ("PGSERVICE", "lab"),
        ("PGPORT", "7000"),
        ("PGDATABASE", "envdb"),
    ];
    let resolved = resolve(&inputs(Some("user=given"), &env, home.path())).unwrap();
    assert_eq!(resolved.get("user"), Some("given"));
    assert_eq!(resolved.get("host"), Some("svc-host"));
    // libpq: a service file setting overrides the corresponding environment variable.
    assert_eq!(resolved.get("port"), Some("6000"));
    assert_eq!(resolved.get("dbname"), Some("envdb"));
    assert_eq!(
        resolved.origin,
        "from --dsn, PGSERVICE=lab in ~/.pg_service.conf, PGDATABASE"
    );
}

#[test]
fn variables_alone_name_a_target_with_libpq_defaults() {
    let home = tempfile::tempdir().unwrap();
    let inputs = inputs(None, &[("PGPORT", "5433")], home.path());
    assert!(inputs.names_a_target());
    let resolved = resolve(&inputs).unwrap();
    assert_eq!(resolved.get("host"), Some("/var/run/postgresql"));
    assert_eq!(resolved.get("user"), Some("osuser"));
    assert_eq!(resolved.get("dbname"), Some("osuser"));
    assert_eq!(
        resolved.origin,
        "from PGPORT; libpq's defaults for dbname, host, user"
    );
    let none = super::tests::inputs(None, &[("PGSERVICEFILE", "/x")], home.path());
    assert!(!none.names_a_target());
}

#[test]
fn password_from_pgpass_unless_given_and_only_when_private() {
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    write(&pgpass, "localhost:5433:*:bob:fromfile\n", 0o600);
    let dsn = "host=/var/run/postgresql port=5433 user=bob";
    let resolved = resolve(&inputs(Some(dsn), &[], home.path())).unwrap();
    assert_eq!(resolved.get("password"), Some("fromfile"));
    assert!(
        resolved.origin.contains("; password from ~/.pgpass"),
        "{}",
        resolved.origin
    );
    let env = [("PGPASSWORD", "fromenv")];
    let resolved = resolve(&inputs(Some(dsn), &env, home.path())).unwrap();
    assert_eq!(resolved.get("password"), Some("fromenv"));
    write(&pgpass, "*:*:*:*:fromfile\n", 0o640);
    let resolved = resolve(&inputs(Some(dsn), &[], home.path())).unwrap();
    assert_eq!(resolved.get("password"), None);
    assert!(resolved.warnings[0].contains("group or world access"));
}

#[test]
fn passfile_keyword_and_pgpassfile() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("other-pass");
    write(&file, "db:*:*:*:p1\n", 0o600);
    let dsn = format!("host=db passfile={}", file.display());
    let resolved = resolve(&inputs(Some(&dsn), &[], home.path())).unwrap();
    assert_eq!(resolved.get("password"), Some("p1"));
    let env = [("PGPASSFILE", file.to_str().unwrap())];
    let resolved = resolve(&inputs(Some("host=db"), &env, home.path())).unwrap();
    assert_eq!(resolved.get("password"), Some("p1"));
}

#[test]
fn client_and_root_certificates_default_to_dot_postgresql() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join(".postgresql");
    std::fs::create_dir(&dir).unwrap();
    write(&dir.join("root.crt"), "x", 0o644);
    write(&dir.join("postgresql.crt"), "x", 0o644);
    let resolved = resolve(&inputs(Some("host=h"), &[], home.path())).unwrap();
    assert_eq!(
        resolved.get("sslrootcert"),
        Some(dir.join("root.crt").to_str().unwrap())
    );
    assert!(resolved.get("sslcert").is_some());
    assert_eq!(resolved.get("sslkey"), None);
    let env = [("PGSSLCERT", "/given.crt")];
    let resolved = resolve(&inputs(Some("host=h"), &env, home.path())).unwrap();
    assert_eq!(resolved.get("sslcert"), Some("/given.crt"));
}

#[test]
fn a_missing_service_and_unsupported_variables_are_reported() {
    let home = tempfile::tempdir().unwrap();
    let env = [("PGSYSCONFDIR", "/nonexistent")];
    let err = resolve(&inputs(Some("service=gone"), &env, home.path())).unwrap_err();
    assert!(err.to_string().contains("\"gone\" not found"), "{err}");
    let env = [("PGSSLCRL", "/x")];
    let resolved = resolve(&inputs(Some("host=h"), &env, home.path())).unwrap();
    assert!(resolved.warnings[0].contains("PGSSLCRL is ignored"));
}

#[test]
fn ports_no_server_can_have_are_refused_naming_where_they_came_from() {
    let home = tempfile::tempdir().unwrap();
    let refused = |dsn: &str, env: &[(&str, &str)]| {
        resolve(&inputs(Some(dsn), env, home.path()))
            .map(|_| ())
            .expect_err(dsn)
            .to_string()
    };
    let error = refused("host=db port=0", &[]);
    assert!(error.contains("\"port\" in --dsn: port 0"), "{error}");
    let error = refused("host=db", &[("PGPORT", "0")]);
    assert!(error.contains("\"port\" in PGPORT: port 0"), "{error}");
    let error = refused("host=a,b port=1,2,3", &[]);
    assert!(error.contains("one port per host"), "{error}");
    let error = refused("postgres://u@db:0/x", &[]);
    assert!(error.contains("port 0"), "{error}");
    let error = refused("host=a,b hostaddr=127.0.0.1", &[]);
    assert!(
        error.contains("\"hostaddr\" in --dsn: a list of hostaddr"),
        "{error}"
    );
    // As libpq: a missing host counts as one, so two addresses need two hosts.
    let error = refused("hostaddr=127.0.0.1,127.0.0.2", &[]);
    assert!(error.contains("a list of hostaddr"), "{error}");
    // One port for every host, one per host, a URL's hosts with and without theirs.
    for dsn in [
        "host=a,b port=5433",
        "host=a,b port=1,2",
        "host=a,b hostaddr=127.0.0.1,127.0.0.2",
        "postgres://u@a,b:1,c/x",
        "host=db port=00005",
    ] {
        assert!(
            resolve(&inputs(Some(dsn), &[], home.path())).is_ok(),
            "{dsn}"
        );
    }
}
