//! Ctrl-C: the first asks the run to stop after the step in flight; the second exits at once,
//! killing any throwaway server, leaving what was already written intact.

use std::sync::atomic::{AtomicBool, Ordering};

/// The shell's code for a process ended by SIGINT (128 + 2).
pub const EXIT_INTERRUPTED: i32 = 130;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Set by the second Ctrl-C: from then on nothing more is written, since the step in flight
/// would carry failures caused by the exit itself.
static ABANDONED: AtomicBool = AtomicBool::new(false);

/// Installs the handler once per process; later calls are no-ops. `on_exit` runs before a
/// second Ctrl-C exits at once: whatever must not outlive the process (a throwaway server).
pub fn install(on_exit: fn()) {
    // Err means a handler is already installed (a second run in the same process): keep it.
    let _ = ctrlc::set_handler(move || {
        if REQUESTED.swap(true, Ordering::SeqCst) {
            ABANDONED.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupted again: exiting now; logs of finished steps are on disk");
            on_exit();
            std::process::exit(EXIT_INTERRUPTED);
        }
        eprintln!("\ninterrupted: finishing the step in flight (Ctrl-C again to exit at once)");
    });
}

pub fn abandoned() -> bool {
    ABANDONED.load(Ordering::SeqCst)
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Sleeps for `duration`, or less when Ctrl-C is pressed meanwhile.
pub fn sleep(duration: std::time::Duration) {
    let end = std::time::Instant::now() + duration;
    while !requested() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
    }
}
