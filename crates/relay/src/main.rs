//! `talkbell-relay`: serve, manage the users file, or send a talk (the library's
//! [`talkbell_relay::cli`]).

fn main() -> std::process::ExitCode {
    talkbell_relay::cli::run()
}
