//! Systems other than Unix: Ctrl-C stops `serve`; there is no reload signal, and the
//! open-file limit is the system's.

/// What a signal asks of a running `serve`.
pub enum Signal {
    Stop,
    // Only Unix has a reload signal.
    #[allow(dead_code)]
    Reload,
}

pub struct Signals;

impl Signals {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Signals)
    }

    pub async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

pub fn raise_open_files(_max_connections: usize) {}
