//! Popups on the desktop session's notification daemon (dunst), through `dunstctl`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// One popup dunst has shown.
#[derive(Clone, Debug)]
pub struct Popup {
    /// dunst's id: it grows with every new notification.
    pub id: u64,
    pub summary: String,
    pub body: String,
}

/// Every popup dunst has shown, oldest first. Popups still on screen are moved to the
/// history first (`dunstctl close-all`), so that nothing is missed.
pub fn popups() -> Result<Vec<Popup>> {
    let status = Command::new("dunstctl").arg("close-all").status().context("running dunstctl")?;
    if !status.success() {
        bail!("dunstctl close-all failed");
    }
    let out = Command::new("dunstctl").arg("history").output().context("running dunstctl")?;
    if !out.status.success() {
        bail!("dunstctl history failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("dunstctl history is not JSON")?;
    let mut shown = Vec::new();
    for group in v["data"].as_array().into_iter().flatten() {
        for n in group.as_array().into_iter().flatten() {
            shown.push(Popup {
                id: n["id"]["data"].as_u64().unwrap_or_default(),
                summary: n["summary"]["data"].as_str().unwrap_or_default().to_owned(),
                body: n["body"]["data"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    shown.sort_by_key(|p| p.id);
    Ok(shown)
}

/// The newest popup's id so far (0 when none).
pub fn last_id() -> Result<u64> {
    Ok(popups()?.last().map_or(0, |p| p.id))
}

/// The popups shown after the one with id `after`.
pub fn since(after: u64) -> Result<Vec<Popup>> {
    Ok(popups()?.into_iter().filter(|p| p.id > after).collect())
}

/// Waits until no new popup has come for `quiet` (at most `within`); the popups after `after`.
pub async fn settle(after: u64, quiet: std::time::Duration, within: std::time::Duration) -> Result<Vec<Popup>> {
    let started = std::time::Instant::now();
    let mut last = since(after)?;
    let mut still_since = std::time::Instant::now();
    while started.elapsed() < within {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let now = since(after)?;
        if now.len() != last.len() {
            still_since = std::time::Instant::now();
            last = now;
        } else if still_since.elapsed() >= quiet {
            break;
        }
    }
    Ok(last)
}
