//! Test-only crash points: with `PAYGATE_CRASH_AT=<name>` the process SIGKILLs itself when it
//! reaches that point, so the crash-recovery tests can stop the real binary exactly between
//! "journalled" and "called Vipps", or between "Vipps answered" and "committed".
//!
//! Names: `before_upstream`, `after_upstream`, `in_commit` (inside the write transaction,
//! before COMMIT). Unset in production; reading it costs one environment lookup at start.

use std::sync::OnceLock;

static TARGET: OnceLock<Option<String>> = OnceLock::new();

/// Dies here, without any cleanup, if this point was chosen.
pub fn hit(name: &str) {
    let target = TARGET.get_or_init(|| {
        std::env::var("PAYGATE_CRASH_AT")
            .ok()
            .filter(|v| !v.is_empty())
    });
    if target.as_deref() != Some(name) {
        return;
    }
    eprintln!("paygate: crash point {name} reached; killing the process");
    // SIGKILL from outside the process: no destructors, no flushes, like a power cut.
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort();
}
