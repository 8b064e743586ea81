//! The command line of the `talkbell` binary.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "talkbell", version, about = "Rings when someone talks to you.")]
pub struct Cli {
    /// Start in the tray only, with no window (as at login).
    #[arg(long, global = true)]
    pub hidden: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in: reads the token from standard input, checks it against the server, and
    /// keeps it in the OS keyring.
    Login {
        /// The talk server, ws:// or wss://.
        #[arg(long)]
        server: String,
        /// Your user id, for servers that do not send a welcome.
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Sign out: removes the token from the keyring.
    Logout,
    /// Runs headless: the connection, the history and notifications, no window.
    Daemon,
    /// Prints the state of this profile's tray app or daemon (why offline or signed
    /// out), the server, the user and the unread count.
    Status {
        /// One JSON object instead of lines of text (keys: running, process, state,
        /// reason, retry_at_ms, server, user, user_name, unread).
        #[arg(long)]
        json: bool,
    },
    /// Prints the history, newest first.
    History {
        /// One JSON array instead of lines of text.
        #[arg(long)]
        json: bool,
        /// Only talks matching these words.
        #[arg(long)]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}
