//! Stand-in D-Bus services written in Python (python3-gi), as child processes: each
//! script serves with `python/stand_in.py` of this crate, which prints `{"ready": name}`
//! once it owns its name; every line it prints is JSON.

use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running stand-in service; killed on drop.
pub struct StandIn {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl StandIn {
    /// Runs `script` on the session bus at `bus` (None: the session's own) and waits up
    /// to `patience` for its ready line. An error when it cannot start or is not ready.
    pub fn start(script: &Path, bus: Option<&str>, patience: Duration) -> io::Result<StandIn> {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script)
            .env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/python"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(address) = bus {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", address);
        }
        let mut child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("python3 {}: {e}", script.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no pipe for standard output"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or_default());
            }
        });
        let service = StandIn { child, lines };
        match service.next(patience) {
            Some(ready) if ready.get("ready").is_some() => Ok(service),
            other => Err(io::Error::other(format!("{} did not start: {other:?}", script.display()))),
        }
    }

    /// The next line it prints, waiting up to `patience`; None when none comes by then
    /// (or it has ended).
    pub fn next(&self, patience: Duration) -> Option<serde_json::Value> {
        self.lines.recv_timeout(patience).ok()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
