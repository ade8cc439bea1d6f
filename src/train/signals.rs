//! Stop requests from signals. Ctrl-C (SIGINT) and SIGTERM (what `docker stop`, Slurm and
//! Kubernetes send) both ask a training to validate, save and stop; the CLI then exits
//! 128 + the signal's number (130, 143), as a shell reports a process the signal ended.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked to stop (0 = none yet).
static REQUESTED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: the one kind of work a signal handler may do.
    REQUESTED.store(sig, Ordering::SeqCst);
}

/// Clears any earlier request and routes SIGINT and SIGTERM to `requested`. A second
/// signal while saving is ignored; the save is quick.
pub fn install() {
    REQUESTED.store(0, Ordering::SeqCst);
    // ctrlc handles SIGINT on its own thread (and can be set once per process; a second
    // call fails harmlessly, the first handler already stores here).
    let _ = ctrlc::set_handler(|| REQUESTED.store(libc::SIGINT, Ordering::SeqCst));
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
    }
}

/// The signal that asked to stop since `install`, if any.
pub fn requested() -> Option<i32> {
    match REQUESTED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// What the run report's `stopped_by` says for a stop by signal `sig`.
pub fn stopped_by(sig: i32) -> &'static str {
    if sig == libc::SIGTERM {
        "terminate"
    } else {
        "interrupt"
    }
}

/// The exit code of a run stopped as `stopped_by` says: 128 + the signal's number.
pub fn exit_code(stopped_by: &str) -> Option<i32> {
    match stopped_by {
        "interrupt" => Some(128 + libc::SIGINT),
        "terminate" => Some(128 + libc::SIGTERM),
        _ => None,
    }
}
