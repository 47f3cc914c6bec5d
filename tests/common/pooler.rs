//! A throwaway PgBouncer's test helpers: its settings, a certificate slow to hand shake, and
//! whether any process still runs from its folder.

use std::path::{Path, PathBuf};

/// `(name, value)` pairs as the pooler's settings.
pub fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A key and certificate for PgBouncer (RSA 4096: some 6 ms of its one thread per handshake),
/// owned by the user it runs as.
pub fn slow_handshake_certificate(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("pooler.crt"), dir.join("pooler.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs the openssl command (apt-get install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [dir, &cert, &key] {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    (cert.display().to_string(), key.display().to_string())
}

/// No process's command line names this folder (a pooler started from it is gone).
pub fn no_process_mentions(folder: &Path) -> bool {
    let folder = folder.display().to_string();
    std::fs::read_dir("/proc").unwrap().flatten().all(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|cmdline| !String::from_utf8_lossy(&cmdline).contains(&folder))
            .unwrap_or(true)
    })
}

/// The throwaway pooler's folders, one a process, from the note pgstress prints when it starts
/// them (`started a throwaway pooler: ... in FOLDER, FOLDER; ...`).
pub fn pooler_folders(stdout: &str) -> Vec<PathBuf> {
    let folders = stdout
        .split("started a throwaway pooler: ")
        .nth(1)
        .and_then(|rest| rest.split(" in ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("the pooler's folders are named: {stdout}"));
    folders.split(", ").map(PathBuf::from).collect()
}

/// The pooler of this folder is gone: its folder removed, and no process left running from it.
pub fn assert_pooler_gone(folder: &Path) {
    assert!(!folder.exists(), "{} is still there", folder.display());
    assert!(
        no_process_mentions(folder),
        "a pgbouncer of {} still runs",
        folder.display()
    );
}
