//! Crash points for recovery tests: `EDDY_CRASH_AT=<name>` makes the process abort — no
//! destructor, no flush, as `kill -9` would — when it reaches the point of that name.
//!
//! Hand-rolled rather than the `fail` crate: that crate's actions (panic, return, sleep) stay
//! inside the process, and a panic in a background task is caught by tokio, while these
//! tests need the process gone at an exact step. The check is one environment lookup per
//! step of tiering or per persistent-query commit, which is rare.

/// Aborts the process if `EDDY_CRASH_AT` names this point.
pub fn crash_point(name: &str) {
    if std::env::var("EDDY_CRASH_AT").is_ok_and(|v| v == name) {
        eprintln!("eddy: EDDY_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}
