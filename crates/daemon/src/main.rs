//! `talkbell-daemon`: what `talkbell daemon` runs (see the library's doc).

fn main() -> std::process::ExitCode {
    talkbell_daemon::cli::run()
}
