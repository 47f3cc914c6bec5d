//! `pgstress k8s entrypoint`: the one command of every pod of the Job, which becomes the
//! coordinator or an agent by the pod's completion index. It is pgstress's own rather than a
//! `sh -c` with an `if`, so the image needs no shell and no option is ever shell-quoted.
//!
//! An agent replaces this process (exec). The coordinator runs as a child instead, since
//! after the run the pod must stay up a while (`--hold`) for its logs to be copied out, and
//! as the container's PID 1 this process must pass SIGTERM on: the kernel gives PID 1 no
//! default action for it, so `kubectl delete` would otherwise wait out the grace period.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, kill, sigaction};
use nix::unistd::Pid;

use crate::Status;
use crate::config::k8s::Role;

/// How often the child and the signals are looked at: a signal passed on within this.
const POLL: Duration = Duration::from_millis(100);
const FORWARDED: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP];

/// The last signal received and not yet passed on (0: none).
static PENDING: AtomicI32 = AtomicI32::new(0);
/// Whether any signal came: the pod is going away, so there is no hold after the run.
static ENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    PENDING.store(signal, Ordering::SeqCst);
    ENDING.store(1, Ordering::SeqCst);
}

/// Starts the pod's role; returns only for the coordinator, with the run's exit code.
pub fn start(role: Role) -> anyhow::Result<u8> {
    let me = std::env::current_exe().context("cannot find pgstress's own executable")?;
    match role {
        Role::Agent { args } => {
            say(&format!("agent: pgstress {}", args.join(" ")));
            let err = Command::new(&me).args(&args).exec();
            Err(err).with_context(|| format!("cannot start {}", me.display()))
        }
        Role::Coordinator { args, hold } => {
            install_handlers()?;
            let shown = crate::pg::target::redact::redact_secrets(&args.join(" "));
            say(&format!("coordinator: pgstress {shown}"));
            let child = Command::new(&me)
                .args(&args)
                .spawn()
                .with_context(|| format!("cannot start {}", me.display()))?;
            let code = wait_passing_signals(child)?;
            hold_for_logs(code, hold);
            Ok(code)
        }
    }
}

fn install_handlers() -> anyhow::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in FORWARDED {
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("cannot handle {signal}"))?;
    }
    Ok(())
}

/// The child's exit code, as a shell reports it (128 + the signal that killed it). No
/// deadline of its own: the run keeps its own, and past the Job's activeDeadlineSeconds
/// (`--deadline`) Kubernetes stops the pod.
fn wait_passing_signals(mut child: Child) -> anyhow::Result<u8> {
    let pid = Pid::from_raw(i32::try_from(child.id()).context("child pid out of range")?);
    loop {
        let signal = PENDING.swap(0, Ordering::SeqCst);
        if let Ok(signal) = Signal::try_from(signal) {
            let _ = kill(pid, signal);
        }
        if let Some(status) = child.try_wait().context("cannot wait for the run")? {
            let code = match (status.code(), status.signal()) {
                (Some(code), _) => u8::try_from(code).unwrap_or(Status::Failed.code()),
                (None, Some(signal)) => 128u8.saturating_add(signal as u8),
                (None, None) => Status::Failed.code(),
            };
            return Ok(code);
        }
        std::thread::sleep(POLL);
    }
}

/// Keeps the pod (and its logs volume) up for `hold`, unless the pod is already going away.
fn hold_for_logs(code: u8, hold: Duration) {
    if hold.is_zero() || ENDING.load(Ordering::SeqCst) != 0 {
        return;
    }
    let logs = std::env::current_dir()
        .map(|dir| dir.join("logs").display().to_string())
        .unwrap_or_else(|_| "logs".to_owned());
    say(&format!(
        "the run ended (exit {code}); its logs are in {logs}: copy them with kubectl cp within {}, \
         or delete the Job to end this pod now",
        humantime::format_duration(hold)
    ));
    let until = Instant::now() + hold;
    while Instant::now() < until && ENDING.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(POLL);
    }
}

/// stderr, which `kubectl logs` shows; a failed write has nowhere better to go.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "pgstress k8s entrypoint: {text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signal state is the process's: one test at a time touches it.
    static SIGNALS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_signal_received_is_passed_to_the_run_and_its_code_comes_back() {
        let _guard = SIGNALS.lock().unwrap_or_else(|e| e.into_inner());
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        PENDING.store(libc::SIGTERM, Ordering::SeqCst);
        let started = Instant::now();
        assert_eq!(wait_passing_signals(child).unwrap(), 128 + 15);
        assert!(started.elapsed() < Duration::from_secs(25));
        // The pod is going away: no hold, however long the hold asked for.
        ENDING.store(1, Ordering::SeqCst);
        let started = Instant::now();
        hold_for_logs(0, Duration::from_secs(600));
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn the_run_exit_code_is_passed_on() {
        let _guard = SIGNALS.lock().unwrap_or_else(|e| e.into_inner());
        PENDING.store(0, Ordering::SeqCst);
        let child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert_eq!(wait_passing_signals(child).unwrap(), 3);
    }
}
