//! What every Talkbell process sets up the same way before it does anything: the log
//! ([`logging`]), the tokio runtime ([`runtime`]) and the exit code ([`exit_code`]). The
//! tray app (`talkbell`) and the headless daemon (`talkbell-daemon`) both call these.
//!
//! They live here rather than in a crate of their own: both binaries already link
//! talkbell-core (with `desktop`), which links no GUI library, so the daemon stays free of
//! the GUI's; and the log's cap ([`logging::CAPPED`]) names the libraries that carry the
//! token and the talks — tungstenite, hyper, zbus, keyring, secret-service — which are
//! this crate's dependencies, so the crate that brings them in is the one that holds them
//! back. A crate for some 80 lines would add a manifest and a build unit for nothing.

pub mod logging;

use std::process::ExitCode;

use crate::instance::InstanceError;

/// The exit code of a tray app or daemon that found its profile held by another one
/// (sysexits' EX_TEMPFAIL): a service manager can tell it from a crash and not restart.
pub const EXIT_ALREADY_RUNNING: u8 = 75;

/// A tokio runtime sized for one socket: two workers, fewer threads, fewer wake-ups.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// The exit code for an error that ended `talkbell` or `talkbell-daemon`:
/// [`EXIT_ALREADY_RUNNING`] when an [`InstanceError::AlreadyRunning`] is anywhere in its
/// chain of causes, a failure otherwise. An `anyhow::Error` is passed as `&*error`.
pub fn exit_code(error: &(dyn std::error::Error + 'static)) -> ExitCode {
    let already_running = std::iter::successors(Some(error), |e| e.source())
        .any(|e| matches!(e.downcast_ref::<InstanceError>(), Some(InstanceError::AlreadyRunning { .. })));
    if already_running {
        ExitCode::from(EXIT_ALREADY_RUNNING)
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct Wrapper(#[source] InstanceError);

    #[test]
    fn a_profile_held_by_another_process_exits_75_however_deep_the_cause() {
        let held = || InstanceError::AlreadyRunning { holder: None, data_dir: "/tmp/x".into() };
        assert_eq!(exit_code(&held()), ExitCode::from(EXIT_ALREADY_RUNNING));
        assert_eq!(exit_code(&Wrapper(held())), ExitCode::from(EXIT_ALREADY_RUNNING));
        let other = std::io::Error::other("disk full");
        assert_eq!(exit_code(&other), ExitCode::FAILURE);
    }
}
