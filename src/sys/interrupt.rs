//! Ctrl-C, SIGTERM and SIGHUP (a closed terminal or ssh session, `timeout`, a cancelled CI
//! job, `docker stop`) end a run alike: the first asks it to stop after the step in flight,
//! which then writes its logs and removes the throwaway server; a second exits at once,
//! killing any throwaway server, leaving what was already written intact. The exit code says
//! which signal came first: 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Once, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

const HANDLED: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// What must be done before a second signal exits at once.
static ON_EXIT: OnceLock<fn()> = OnceLock::new();

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Set by the second signal: from then on nothing more is written, since the step in flight
/// would carry failures caused by the exit itself.
static ABANDONED: AtomicBool = AtomicBool::new(false);
/// The number of the first signal that arrived, 0 before any: it chooses the exit code.
static FIRST: AtomicI32 = AtomicI32::new(0);
/// The writing end of a pipe to the thread that acts on signals: a signal handler may do
/// little more than write(2), so the work (printing, killing servers, exiting) happens there.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// Installs the handlers once per process; later calls are no-ops. `on_exit` runs before a
/// second signal exits at once: whatever must not outlive the process (a throwaway server).
pub fn install(on_exit: fn()) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ON_EXIT.set(on_exit);
        if let Err(err) = try_install() {
            say(&format!(
                "note: cannot handle Ctrl-C, SIGTERM, SIGHUP ({err}); the throwaway server's watchdog still removes it"
            ));
        }
    });
}

fn try_install() -> std::io::Result<()> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // A full pipe (signals faster than the thread reads) must not block the handler.
    fcntl(&write, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    std::thread::Builder::new()
        .name("pgstress-signals".into())
        .spawn(move || act_on_signals(File::from(read)))?;
    PIPE.store(write.into_raw_fd(), Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        // Restart interrupted system calls: the run's own waits carry on undisturbed.
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // A file grown past its size limit is a failed write to report, not a reason to die
    // with the measurements unprinted (the default action of SIGXFSZ).
    // SAFETY: SIG_IGN installs no code of ours.
    unsafe { nix::sys::signal::signal(Signal::SIGXFSZ, SigHandler::SigIgn) }?;
    for signal in HANDLED {
        // SAFETY: the handler only touches atomics and calls write(2), async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

extern "C" fn on_signal(signal: libc::c_int) {
    let errno = Errno::last_raw();
    let _ = FIRST.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let byte = signal as u8;
    // SAFETY: write(2) of one byte from a live local; a failure is ignored (nothing to do).
    unsafe { libc::write(PIPE.load(Ordering::SeqCst), (&raw const byte).cast(), 1) };
    Errno::set_raw(errno);
}

fn act_on_signals(mut pipe: File) {
    let mut byte = [0u8];
    while pipe.read_exact(&mut byte).is_ok() {
        let name = name(i32::from(byte[0]));
        if REQUESTED.swap(true, Ordering::SeqCst) {
            ABANDONED.store(true, Ordering::SeqCst);
            say(&format!(
                "\n{name} again: exiting now; logs of finished steps are on disk"
            ));
            if let Some(on_exit) = ON_EXIT.get() {
                on_exit();
            }
            std::process::exit(i32::from(exit_code()));
        }
        say(&format!(
            "\n{name}: finishing the step in flight, then removing any throwaway server ({name} again to exit at once)"
        ));
    }
}

fn name(signal: i32) -> &'static str {
    match Signal::try_from(signal) {
        Ok(Signal::SIGINT) => "Ctrl-C",
        Ok(Signal::SIGTERM) => "SIGTERM",
        Ok(Signal::SIGHUP) => "SIGHUP",
        _ => "a signal",
    }
}

/// stderr, ignoring failure: after a hangup the terminal is gone, and `eprintln!` would panic.
fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The exit code of a run ended by a signal: 128 + the first signal's number, as a shell
/// reports a process killed by it; 130 (Ctrl-C) when no signal was seen.
pub fn exit_code() -> u8 {
    match FIRST.load(Ordering::SeqCst) {
        signal @ 1..=127 => 128 + signal as u8,
        _ => 130,
    }
}

pub fn abandoned() -> bool {
    ABANDONED.load(Ordering::SeqCst)
}

pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Sleeps for `duration`, or less when a signal asks the run to stop meanwhile.
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
