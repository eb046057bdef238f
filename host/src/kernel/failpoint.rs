//! Named crash points for crash-consistency tests.
//!
//! When the environment variable `CAIRN_FAILPOINT` names a point, the daemon
//! kills itself with SIGKILL on reaching it — exactly what a power cut does to
//! the process. Unset (always, in production) each check is one comparison.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Points fire only once boot is done: boot runs the same swap path, and a
/// test wants the restarted daemon to come up.
static BOOTED: AtomicBool = AtomicBool::new(false);

/// Called when boot has finished.
pub fn arm() {
    BOOTED.store(true, Ordering::Release);
}

/// Every point, in the order an install reaches them.
pub const POINTS: &[&str] = &[
    "install:after-blob",
    "install:after-compile",
    "swap:after-start",
    "swap:after-handover",
    "swap:after-switch",
    "swap:after-journal",
];

pub fn hit(point: &str) {
    if !BOOTED.load(Ordering::Acquire) {
        return;
    }
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("CAIRN_FAILPOINT").ok());
    if armed.as_deref() == Some(point) {
        tracing::error!("failpoint {point}: killing the daemon");
        // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
