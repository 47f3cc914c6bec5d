//! Passwords never appear in the terminal, the logs, the summary or error messages.

mod common;

use std::path::Path;

use common::*;

fn all_text_under(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
    }
    text
}

fn password_of(dsn: &str) -> String {
    dsn.split_whitespace()
        .find_map(|kv| kv.strip_prefix("password="))
        .unwrap()
        .to_owned()
}

#[test]
fn no_output_of_a_run_contains_the_password() {
    let dsn = shared_dsn();
    let password = password_of(&dsn);
    assert!(password.len() >= 16);
    let port = dsn
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .unwrap();
    let url = format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres");
    let logs = tempfile::tempdir().unwrap();
    let mut seen = String::new();
    for args in [
        vec!["--dsn", dsn.as_str(), "--steps", "2", "--step", "3"],
        vec![
            "--dsn",
            url.as_str(),
            "--steps",
            "1",
            "--step",
            "2",
            "--fail-if",
            "capacity<100",
        ],
        vec![
            "--dsn",
            url.as_str(),
            "--query",
            "SELECT * FROM no_such_table WHERE x = $1",
        ],
        vec!["--dsn", &format!("{dsn} dbname=no_such_db")],
    ] {
        let output = pgstress_run(logs.path()).args(&args).output().unwrap();
        seen.push_str(&String::from_utf8_lossy(&output.stdout));
        seen.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    seen.push_str(&all_text_under(logs.path()));
    assert!(
        seen.contains("password=***"),
        "the target is shown, redacted"
    );
    assert!(
        seen.contains("no_such_table") && seen.contains("no_such_db"),
        "the failing runs ran: {seen}"
    );
    assert!(!seen.contains(&password), "the password leaked:\n{seen}");
}
