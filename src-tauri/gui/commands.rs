//! What the window may ask for: each one a thin call into the engine. Errors come back
//! as their message, for the UI to show. The token goes in (sign-in) and never out.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use talkbell_core::history::{HistoryEntry, HistoryQuery};
use talkbell_core::protocol::{Token, UserId};
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use super::bridge::{EventLog, LogLine, PauseChange};
use super::status::Status;
use super::{bridge, Shell};

/// The most the window may ask for at once.
const PAGE_MAX: usize = 200;

#[tauri::command]
pub fn get_status(shell: State<'_, Shell>) -> Status {
    Status::of(&shell)
}

#[tauri::command]
pub fn list_history(
    shell: State<'_, Shell>,
    search: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
) -> Result<Vec<HistoryEntry>, String> {
    let query = HistoryQuery {
        search: search.filter(|s| !s.trim().is_empty()),
        before,
        limit: limit.unwrap_or(50).clamp(1, PAGE_MAX),
        only_unread: false,
    };
    shell.engine.history().list(&query).map_err(|e| e.to_string())
}

/// The connection log so far, oldest first; new lines follow as events.
#[tauri::command]
pub fn get_log(log: State<'_, EventLog>) -> Vec<LogLine> {
    log.lines()
}

/// The window marks what it has shown.
#[tauri::command]
pub fn mark_read(app: AppHandle, shell: State<'_, Shell>, ids: Vec<i64>) -> Result<usize, String> {
    let n = shell.engine.history().mark_read(&ids).map_err(|e| e.to_string())?;
    if n > 0 {
        bridge::refresh(&app);
    }
    Ok(n)
}

#[tauri::command]
pub async fn sign_in(
    shell: State<'_, Shell>,
    server: String,
    token: String,
    user_id: Option<String>,
) -> Result<String, String> {
    let token = Token::new(token).map_err(|_| "the token is empty".to_owned())?;
    let user_id = match user_id.filter(|s| !s.trim().is_empty()) {
        Some(id) => Some(id.parse::<UserId>().map_err(|e| e.to_string())?),
        None => None,
    };
    shell.engine.sign_in(server.trim(), token, user_id).await.map(|u| u.to_string()).map_err(|e| e.to_string())
}

#[tauri::command]
pub async fn sign_out(shell: State<'_, Shell>) -> Result<(), String> {
    shell.engine.sign_out().await.map_err(|e| e.to_string())
}

#[tauri::command]
pub fn reconnect_now(shell: State<'_, Shell>) {
    shell.engine.session().reconnect_now();
}

/// `minutes`: how long; none is until resumed.
#[tauri::command]
pub async fn pause_notifications(app: AppHandle, minutes: Option<u64>) -> Result<(), String> {
    let change = match minutes {
        Some(m) => PauseChange::For(Duration::from_secs(m.saturating_mul(60))),
        None => PauseChange::UntilResumed,
    };
    bridge::change_pause(&app, change).await;
    Ok(())
}

#[tauri::command]
pub async fn resume_notifications(app: AppHandle) -> Result<(), String> {
    bridge::change_pause(&app, PauseChange::Resume).await;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Settings {
    pub server: Option<String>,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_timeout_ms: u64,
    pub autostart: bool,
}

#[tauri::command]
pub fn get_settings(app: AppHandle, shell: State<'_, Shell>) -> Settings {
    let config = shell.engine.config();
    Settings {
        server: config.server,
        heartbeat_interval_ms: config.heartbeat.interval_ms,
        heartbeat_timeout_ms: config.heartbeat.timeout_ms,
        autostart: app.autolaunch().is_enabled().unwrap_or(false),
    }
}

#[tauri::command]
pub fn save_settings(app: AppHandle, shell: State<'_, Shell>, settings: Settings) -> Result<(), String> {
    shell
        .engine
        .save_heartbeat(settings.heartbeat_interval_ms, settings.heartbeat_timeout_ms)
        .map_err(|e| e.to_string())?;
    let autostart = app.autolaunch();
    let result = if settings.autostart { autostart.enable() } else { autostart.disable() };
    result.map_err(|e| format!("start at login: {e}"))
}
