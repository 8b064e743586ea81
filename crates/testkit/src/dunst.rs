//! Popups on the desktop session's notification daemon (dunst), through `dunstctl`.

use std::io;
use std::process::Command;
use std::time::Duration;

use crate::wait::Poll;

/// One popup in dunst's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Popup {
    /// dunst's notification id: it grows with every popup shown.
    pub id: u64,
    pub app: String,
    pub summary: String,
    pub body: String,
    /// What dunst renders (its format applied; markup in it is rendered).
    pub message: String,
    pub default_action: String,
    pub category: String,
}

/// Runs `dunstctl ARGS`; its standard output.
pub fn dunstctl(args: &[&str]) -> io::Result<String> {
    let out = Command::new("dunstctl").args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("dunstctl {args:?}: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every popup in dunst's history (closed or expired ones), newest first. Popups still on
/// screen are not in it yet: [`close_all`] moves them there.
pub fn history() -> io::Result<Vec<Popup>> {
    let v: serde_json::Value = serde_json::from_str(&dunstctl(&["history"])?)
        .map_err(|e| io::Error::other(format!("dunstctl history is not JSON: {e}")))?;
    let mut shown = Vec::new();
    for group in v["data"].as_array().into_iter().flatten() {
        for n in group.as_array().into_iter().flatten() {
            let field = |k: &str| n[k]["data"].as_str().unwrap_or_default().to_owned();
            shown.push(Popup {
                id: n["id"]["data"].as_u64().unwrap_or_default(),
                app: field("appname"),
                summary: field("summary"),
                body: field("body"),
                message: field("message"),
                default_action: field("default_action_name"),
                category: field("category"),
            });
        }
    }
    Ok(shown)
}

/// Opens dunst's context menu (`dunstctl context`) and picks the first entry holding
/// `entry` (an action reads `#<label> (<summary>) [<id>,<key>]`), through the menu program of the session
/// of scripts/desktop-session.sh (scripts/dunst-pick.sh reads the choice from a file).
pub fn pick(entry: &str) -> io::Result<()> {
    let dir = std::env::var_os("TALKBELL_DESKTOP_DIR")
        .ok_or_else(|| io::Error::other("TALKBELL_DESKTOP_DIR is not set: run inside scripts/desktop-session.sh"))?;
    std::fs::write(std::path::Path::new(&dir).join("dunst-pick"), entry)?;
    dunstctl(&["context"]).map(drop)
}

/// Every context menu dunst has offered so far, its entries one a line (scripts/dunst-pick.sh
/// keeps them, a line `--` after each menu).
pub fn menus() -> io::Result<String> {
    let dir = std::env::var_os("TALKBELL_DESKTOP_DIR")
        .ok_or_else(|| io::Error::other("TALKBELL_DESKTOP_DIR is not set: run inside scripts/desktop-session.sh"))?;
    match std::fs::read_to_string(std::path::Path::new(&dir).join("dunst-menus.log")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        read => read,
    }
}

/// `dunstctl close-all`: every popup on screen goes to the history.
pub fn close_all() -> io::Result<()> {
    dunstctl(&["close-all"]).map(drop)
}

/// How many popups are on screen.
pub fn displayed() -> io::Result<u64> {
    dunstctl(&["count", "displayed"])?.trim().parse().map_err(|e| io::Error::other(format!("dunstctl count: {e}")))
}

/// Every popup dunst has shown, oldest first, those on screen closed first so that none is
/// missed.
pub fn shown() -> io::Result<Vec<Popup>> {
    close_all()?;
    let mut all = history()?;
    all.sort_by_key(|p| p.id);
    Ok(all)
}

/// The newest popup's id so far (0 when none).
pub fn last_id() -> io::Result<u64> {
    Ok(shown()?.last().map_or(0, |p| p.id))
}

/// The popups shown after the one with id `after`, oldest first.
pub fn since(after: u64) -> io::Result<Vec<Popup>> {
    Ok(shown()?.into_iter().filter(|p| p.id > after).collect())
}

/// Waits until no new popup has come for `quiet` (at most `within`); the popups after `after`.
pub async fn settle(after: u64, quiet: Duration, within: Duration) -> io::Result<Vec<Popup>> {
    let count = || since(after).map_or(0, |p| p.len() as u64);
    Poll::up_to(within).every(Duration::from_millis(250)).settle(u64::MAX, quiet, count).await;
    since(after)
}
