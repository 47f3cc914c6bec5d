//! Reading the process tree from /proc (Linux).

/// The live children of a single-threaded process (the postmaster is one).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_children_of_a_shell_are_listed() {
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = Vec::new();
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = children(shell.id());
        }
        for pid in &found {
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
        }
        shell.kill().unwrap();
        shell.wait().unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(children(u32::MAX).is_empty());
    }
}
