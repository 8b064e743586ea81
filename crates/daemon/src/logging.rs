//! Logs go to standard error, filtered by `RUST_LOG` (default: info for Talkbell's own
//! crates, warnings for the rest). The token never reaches a log: `Token` has no Display.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("warn,talkbell=info,talkbell_core=info,talkbell_app=info,talkbell_daemon=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: in a log file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
