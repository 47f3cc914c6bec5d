use super::*;

#[test]
fn key_value_dsn_is_printed_without_password() {
    let target = ConnectTarget::parse(
        "host=127.0.0.1 port=5999 user=u password=s3cret dbname=d",
        None,
    )
    .unwrap();
    assert_eq!(
        target.redacted(),
        "host=127.0.0.1 port=5999 user=u password=*** dbname=d"
    );
    assert!(!format!("{target:?}").contains("s3cret"));
}

#[test]
fn url_dsn_is_printed_without_password() {
    let target = ConnectTarget::parse("postgres://u:s3cret@localhost:5999/d", None).unwrap();
    assert!(!target.redacted().contains("s3cret"));
    assert!(target.redacted().contains("password=***"));
    assert!(target.is_loopback());
}

#[test]
fn bad_dsn_error_hides_a_quoted_password() {
    let err = ConnectTarget::parse("host=x password='s3cret with spaces' port=no", None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret") && !err.contains("spaces"), "{err}");
}

#[test]
fn bad_dsn_error_hides_password() {
    let err = ConnectTarget::parse("host=x password=s3cret bogus=1", None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret"), "{err}");
    assert!(err.contains("bogus"), "{err}");
    let err = ConnectTarget::parse("postgres://u:s3cret@h:notaport/d", None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn pgpassword_fills_a_missing_password() {
    let target = ConnectTarget::parse("host=127.0.0.1", Some("pw")).unwrap();
    assert!(target.redacted().contains("password=***"));
}

#[test]
fn remote_host_is_not_loopback() {
    assert!(
        !ConnectTarget::parse("host=db.example.com", None)
            .unwrap()
            .is_loopback()
    );
}

#[test]
fn connect_timeout_as_libpq_reads_it_with_a_deadline_always() {
    let timeout = |dsn: &str| ConnectTarget::parse(dsn, None).map(|t| t.setup_timeout());
    assert_eq!(timeout("host=h").unwrap(), DEFAULT_SETUP_TIMEOUT);
    assert_eq!(
        timeout("host=h connect_timeout=5").unwrap(),
        Duration::from_secs(5)
    );
    assert_eq!(
        timeout("host=h connect_timeout=1").unwrap(),
        Duration::from_secs(2)
    );
    assert_eq!(
        timeout("host=h connect_timeout=0").unwrap(),
        DEFAULT_SETUP_TIMEOUT
    );
    assert!(timeout("host=h connect_timeout=soon").is_err());
}

#[test]
fn the_users_application_name_wins_over_pgstresss() {
    let timeout = Duration::from_secs(1);
    let named = ConnectTarget::parse("host=h application_name=mine", None).unwrap();
    let config = named.request_config(timeout, "pgstress", false);
    assert_eq!(config.get_application_name(), Some("mine"));
    let plain = ConnectTarget::parse("host=h fallback_application_name=fb", None).unwrap();
    let config = plain.request_config(timeout, "pgstress", false);
    assert_eq!(config.get_application_name(), Some("fb"));
    let plain = ConnectTarget::parse("host=h", None).unwrap();
    let config = plain.request_config(timeout, "pgstress", false);
    assert_eq!(config.get_application_name(), Some("pgstress"));
}

#[test]
fn libpq_keywords_reach_the_wire_config() {
    let target = ConnectTarget::parse(
        "host=/var/run/postgresql,db port=5433 target_session_attrs=read-write options='-c x=1'",
        None,
    )
    .unwrap();
    assert_eq!(target.config.get_hosts().len(), 2);
    assert_eq!(target.config.get_options(), Some("-c x=1"));
    assert!(
        target
            .redacted()
            .starts_with("host=/var/run/postgresql,db port=5433"),
        "{}",
        target.redacted()
    );
    assert!(
        target
            .redacted()
            .contains(" target_session_attrs=read-write")
    );
    assert!(!target.has_password());
}

#[test]
fn every_host_and_address_is_shown_and_a_hostaddr_alone_is_dialed() {
    let both = ConnectTarget::parse(
        "host=db1,db2 hostaddr=127.0.0.5,127.0.0.6 port=5433,5434 password=hunter2",
        None,
    )
    .unwrap();
    let shown = both.redacted();
    assert!(
        shown.starts_with("host=db1,db2 hostaddr=127.0.0.5,127.0.0.6 port=5433,5434"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let hosts = both.hosts();
    assert_eq!(hosts.describe(), "db1:5433,db2:5434");
    assert!(hosts.all_local(), "the addresses dialed are loopback");
    let alone = ConnectTarget::parse("hostaddr=10.1.2.3 port=6000", None).unwrap();
    assert!(
        alone.redacted().starts_with("hostaddr=10.1.2.3 port=6000"),
        "{}",
        alone.redacted()
    );
    assert_eq!(alone.hosts().describe(), "10.1.2.3:6000");
    assert!(!alone.is_loopback());
}
