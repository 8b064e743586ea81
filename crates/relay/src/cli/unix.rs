//! Unix: SIGINT and SIGTERM stop `serve`, SIGHUP reloads it; the soft open-file limit is
//! raised to the hard one at start.

use anyhow::Context;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::signal::unix::{signal, SignalKind};

/// What a signal asks of a running `serve`.
pub enum Signal {
    Stop,
    Reload,
}

pub struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Takes over SIGTERM and SIGHUP (whose default would end the process).
    pub fn new() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.term.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// The soft open-file limit before and after [`raise_nofile`] (`None`: unlimited).
struct OpenFiles {
    before: Option<u64>,
    now: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit.
fn raise_nofile() -> Result<OpenFiles, std::io::Error> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current == limit.maximum {
        return Ok(OpenFiles { before, now: before });
    }
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })?;
    Ok(OpenFiles { before, now: getrlimit(Resource::Nofile).current })
}

/// Raises the soft open-file limit to the hard one (every connection is a file
/// descriptor, and a soft limit of 1024, a common default, would lock out clients long
/// before `max_connections`), and says so; warns when it is still below that.
pub fn raise_open_files(max_connections: usize) {
    let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    match raise_nofile() {
        Ok(l) => {
            if l.before != l.now {
                tracing::info!(from = %show(l.before), to = %show(l.now), "raised the soft open-file limit to the hard limit");
            } else {
                tracing::info!(limit = %show(l.now), "open-file limit");
            }
            let max = u64::try_from(max_connections).unwrap_or(u64::MAX);
            if l.now.is_some_and(|n| n < max.saturating_add(64)) {
                tracing::warn!(limit = %show(l.now), max_connections, "the open-file limit is below --max-connections; raise the hard limit (LimitNOFILE=)");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the soft open-file limit"),
    }
}
