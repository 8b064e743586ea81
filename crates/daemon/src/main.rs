//! `talkbell-daemon`: what `talkbell daemon` runs (see the library's doc).

use talkbell_core::config::Paths;

fn main() -> std::process::ExitCode {
    talkbell_daemon::logging::init();
    let result = talkbell_daemon::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(async { talkbell_daemon::run(Paths::from_env()?).await }));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("talkbell: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
