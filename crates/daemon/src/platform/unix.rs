//! Unix: SIGTERM (a service manager, `kill`) or SIGINT (Ctrl-C) ends the daemon.

/// Returns when SIGTERM or SIGINT arrives.
pub async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
