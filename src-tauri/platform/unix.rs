//! Unix: `talkbell daemon` becomes `talkbell-daemon` with exec(2).

use std::os::unix::process::CommandExt;

/// Becomes `talkbell-daemon` (beside this binary) in the same process: the headless
/// daemon then maps none of the GUI's libraries this binary is linked with, which cost
/// it about 40 MB. Returns only where that binary is missing or cannot be run; the daemon
/// then runs here, the same code with the larger footprint.
pub fn exec_daemon() {
    let Some(path) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(talkbell_daemon::BINARY)))
        .filter(|path| path.is_file())
    else {
        tracing::info!("{} not found beside this binary; the daemon runs in this process", talkbell_daemon::BINARY);
        return;
    };
    let error = std::process::Command::new(&path).exec();
    tracing::warn!(path = %path.display(), %error, "cannot run the headless daemon binary; the daemon runs in this process");
}
