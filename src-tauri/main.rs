//! `talkbell`: the desktop app's binary (see [`talkbell_app::cli`]).

fn main() -> std::process::ExitCode {
    talkbell_app::cli::run()
}
