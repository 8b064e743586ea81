//! Logs go to standard error, filtered by `RUST_LOG` (default: info for Talkbell's own
//! crates, warnings for the rest).
//!
//! No secret reaches a log at any level, whatever `RUST_LOG` says: `Token` has no
//! `Display`, and the libraries that log what they carry are held to a level at which
//! they do not ([`CAPPED`]): a line must pass both `RUST_LOG` and that cap. The cap is a
//! filter of its own rather than directives added to `RUST_LOG`'s, because an added
//! `tungstenite=debug` loses to a more specific `tungstenite::protocol=trace` the user
//! may set.

use std::io::IsTerminal;

use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The default filter when `RUST_LOG` is unset or invalid.
const DEFAULT: &str = "warn,talkbell=info,talkbell_core=info,talkbell_app=info,talkbell_daemon=info";

/// Targets that log what they carry, and the most they may log:
/// - tungstenite and tokio-tungstenite write every frame at trace, the hello (and its
///   token) included;
/// - hyper and hyper-util (the proxy's CONNECT) write headers, `Proxy-Authorization`
///   included, at trace;
/// - zbus writes every D-Bus message at trace (the Secret Service's carry the token;
///   notify-rust's the talks), zvariant and secret-service their contents; keyring names
///   its entries at debug.
pub const CAPPED: &[(&str, LevelFilter)] = &[
    ("tungstenite", LevelFilter::DEBUG),
    ("tokio_tungstenite", LevelFilter::DEBUG),
    ("hyper", LevelFilter::DEBUG),
    ("hyper_util", LevelFilter::DEBUG),
    ("zbus", LevelFilter::INFO),
    ("zvariant", LevelFilter::INFO),
    ("secret_service", LevelFilter::INFO),
    ("keyring", LevelFilter::INFO),
];

/// The cap: everything else passes at any level (`RUST_LOG` decides).
pub fn cap() -> Targets {
    CAPPED
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, (target, level)| t.with_target(*target, *level))
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: in a log file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter.and(cap()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn frame_and_message_loggers_are_held_below_trace() {
        let cap = cap();
        assert!(!cap.would_enable("tungstenite::protocol", &Level::TRACE));
        assert!(cap.would_enable("tungstenite::protocol", &Level::DEBUG));
        assert!(!cap.would_enable("tokio_tungstenite", &Level::TRACE));
        assert!(!cap.would_enable("zbus::connection::socket_reader", &Level::DEBUG));
        assert!(!cap.would_enable("hyper_util::client::proxy", &Level::TRACE));
        assert!(cap.would_enable("talkbell_core::session", &Level::TRACE));
    }
}
