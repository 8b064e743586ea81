//! What the window may ask for: each one a thin call into the engine. The token goes in
//! (sign-in) and never out.
//!
//! Every argument is checked here, whatever the page sent ([`CommandError`] says what is
//! wrong, as `{kind, message}`). Commands that touch the disk, the keyring or the network
//! are `async`, so Tauri runs them on the async runtime instead of the main thread (which
//! draws the window and the tray); their blocking calls (the history, the config, the
//! autostart entry) run on tokio's blocking threads.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use talkbell_core::engine::IfUserUnknown;
use talkbell_core::history::{HistoryEntry, HistoryQuery};
use talkbell_core::i18n::{self, Lang, LanguageSetting, Msg};
use talkbell_core::protocol::{Token, UserId};
use tauri::{AppHandle, Manager, State};
use tauri_plugin_autostart::ManagerExt;

use super::actions::{self, PauseChange};
use super::bridge::{EventLog, LogLine};
use super::error::{at_most, in_range, seconds_in_range, CommandError};
use super::state::Shell;
use super::status::Status;

/// The most the window may ask for at once.
pub const PAGE_MAX: u64 = 200;
/// The longest search.
pub const SEARCH_MAX: usize = 1_000;
/// The most talks marked read at once.
pub const MARK_MAX: usize = 1_000;
/// The longest pause with an end: a week.
pub const PAUSE_MAX_MINUTES: u64 = 7 * 24 * 60;
/// The longest token and user id taken (a token travels in the hello, within 64 KiB).
pub const TOKEN_MAX: usize = 4_096;
pub const USER_ID_MAX: usize = 256;
/// The largest history row.
const ROW_MAX: u64 = i64::MAX.unsigned_abs();
/// Heartbeat timings the settings take, in ms (PROTOCOL.md §4's range of hints); the
/// window shows and takes them in seconds.
pub const HEARTBEAT_MS: (u64, u64) = (1_000, 300_000);

/// Runs blocking work (the history, the config file) on tokio's blocking threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    tauri::async_runtime::spawn_blocking(f).await?
}

/// The status now, with its words (the window asks again each second of a countdown).
/// Reads no file: the unread count is the engine's.
#[tauri::command]
pub async fn get_status(shell: State<'_, Shell>) -> Result<Status, CommandError> {
    Ok(Status::of(&shell))
}

/// The window's words in the chosen language: the page fills its elements from them.
#[derive(Debug, Serialize)]
pub struct WindowTexts {
    /// `en` or `zh-CN`: the page's `lang`, and the locale its dates are written in.
    pub lang: &'static str,
    /// Every `ui-…` message, by its id.
    pub texts: BTreeMap<&'static str, String>,
}

impl WindowTexts {
    pub fn of(lang: Lang) -> WindowTexts {
        WindowTexts { lang: lang.tag(), texts: i18n::window_texts(lang) }
    }
}

/// The window's words, in the language the backend chose (the config's, else the system's).
#[tauri::command]
pub fn get_texts() -> WindowTexts {
    WindowTexts::of(i18n::current())
}

/// The query of a `list_history` call, checked.
pub fn history_query(
    search: Option<String>,
    before: Option<i64>,
    limit: Option<u64>,
) -> Result<HistoryQuery, CommandError> {
    if let Some(s) = &search {
        at_most(Msg::WhatSearch, s, SEARCH_MAX)?;
    }
    if let Some(b) = before {
        in_range(Msg::WhatRowBefore, u64::try_from(b).unwrap_or(0), 1, ROW_MAX)?;
    }
    let limit = in_range(Msg::WhatPageSize, limit.unwrap_or(50), 1, PAGE_MAX)?;
    Ok(HistoryQuery {
        search: search.filter(|s| !s.trim().is_empty()),
        before,
        limit: usize::try_from(limit).unwrap_or(50),
        ..HistoryQuery::default()
    })
}

#[tauri::command]
pub async fn list_history(
    app: AppHandle,
    search: Option<String>,
    before: Option<i64>,
    limit: Option<u64>,
    for_me: Option<bool>,
) -> Result<Vec<HistoryEntry>, CommandError> {
    let mut query = history_query(search, before, limit)?;
    blocking(move || {
        let engine = &app.state::<Shell>().engine;
        // "For me": talks to or from the signed-in user (the session knows who that is).
        if for_me == Some(true) {
            query.involving = engine.session().user_id();
        }
        Ok(engine.history().list(&query)?)
    })
    .await
}

/// The connection log so far, oldest first; new lines follow as events.
#[tauri::command]
pub fn get_log(log: State<'_, EventLog>) -> Vec<LogLine> {
    log.lines()
}

/// The rows of a `mark_read` call, checked.
pub fn rows_to_mark(ids: &[i64]) -> Result<(), CommandError> {
    if ids.len() > MARK_MAX {
        return Err(CommandError::TooLong { what: Msg::WhatMarkList, len: ids.len(), max: MARK_MAX });
    }
    for id in ids {
        in_range(Msg::WhatRow, u64::try_from(*id).unwrap_or(0), 1, ROW_MAX)?;
    }
    Ok(())
}

/// The window marks what it has shown (the unread count follows, from the engine).
#[tauri::command]
pub async fn mark_read(app: AppHandle, ids: Vec<i64>) -> Result<usize, CommandError> {
    rows_to_mark(&ids)?;
    blocking(move || Ok(app.state::<Shell>().engine.mark_read(&ids)?)).await
}

/// The arguments of a `sign_in` call, checked.
pub fn sign_in_args(server: &str, token: String, user_id: Option<String>) -> Result<SignIn, CommandError> {
    let server = server.trim();
    at_most(Msg::WhatServerUrl, server, 2_048)?;
    talkbell_core::config::validate_server_url(server)
        .map_err(|reason| CommandError::BadServer { url: server.to_owned(), reason })?;
    at_most(Msg::WhatToken, &token, TOKEN_MAX)?;
    let token = Token::new(token).map_err(|_| CommandError::Empty { what: Msg::WhatToken })?;
    let user_id = user_id.filter(|s| !s.trim().is_empty()).map(|id| user_id_arg(&id)).transpose()?;
    Ok(SignIn { server: server.to_owned(), token, user_id })
}

/// A user id the window sent, checked: not empty, bounded, a usable id.
pub fn user_id_arg(id: &str) -> Result<UserId, CommandError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(CommandError::Empty { what: Msg::WhatUserId });
    }
    at_most(Msg::WhatUserId, id, USER_ID_MAX)?;
    id.parse::<UserId>().map_err(CommandError::BadUserId)
}

/// A checked sign-in.
pub struct SignIn {
    pub server: String,
    pub token: Token,
    pub user_id: Option<UserId>,
}

#[tauri::command]
pub async fn sign_in(
    shell: State<'_, Shell>,
    server: String,
    token: String,
    user_id: Option<String>,
) -> Result<String, CommandError> {
    let SignIn { server, token, user_id } = sign_in_args(&server, token, user_id)?;
    // A server that does not say who the user is still signs in: the window then asks.
    let who = shell.engine.sign_in(&server, token, user_id, IfUserUnknown::SignIn).await?;
    // What the window shows: "Signed in as user 1."
    Ok(match who.id() {
        Some(user) => i18n::text(Msg::SignInDone, &[("user", user.to_string().as_str().into())]),
        None => i18n::t(Msg::SignInDoneUserUnknown),
    })
}

/// The user's id on a server that does not say who they are (the status's
/// `asks_user_id`): kept in the config, and talks to it are the user's from now on.
#[tauri::command]
pub async fn set_user_id(app: AppHandle, user_id: String) -> Result<String, CommandError> {
    let id = user_id_arg(&user_id)?;
    let shown = id.to_string();
    blocking(move || Ok(app.state::<Shell>().engine.set_user_id(id)?)).await?;
    Ok(i18n::text(Msg::UserIdSaved, &[("user", shown.as_str().into())]))
}

#[tauri::command]
pub async fn sign_out(shell: State<'_, Shell>) -> Result<(), CommandError> {
    Ok(shell.engine.sign_out().await?)
}

#[tauri::command]
pub fn reconnect_now(shell: State<'_, Shell>) {
    shell.engine.session().reconnect_now();
}

/// A pause of `minutes` (none: until resumed), checked: 1 minute to a week.
pub fn pause_change(minutes: Option<u64>) -> Result<PauseChange, CommandError> {
    Ok(match minutes {
        Some(m) => {
            let m = in_range(Msg::WhatPauseMinutes, m, 1, PAUSE_MAX_MINUTES)?;
            PauseChange::For(Duration::from_secs(m * 60))
        }
        None => PauseChange::UntilResumed,
    })
}

/// `minutes`: how long; none is until resumed.
#[tauri::command]
pub async fn pause_notifications(app: AppHandle, minutes: Option<u64>) -> Result<(), CommandError> {
    actions::change_pause(&app, pause_change(minutes)?).await;
    Ok(())
}

#[tauri::command]
pub async fn resume_notifications(app: AppHandle) -> Result<(), CommandError> {
    actions::change_pause(&app, PauseChange::Resume).await;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Settings {
    pub server: Option<String>,
    /// In seconds, decimals allowed (the config keeps whole ms); none: an empty field, or
    /// a text that is no number (the page sends it as null).
    pub heartbeat_interval_s: Option<f64>,
    pub heartbeat_timeout_s: Option<f64>,
    pub autostart: bool,
    /// `system`, `en` or `zh-CN`; a page that does not send it keeps the one set.
    #[serde(default)]
    pub language: Option<LanguageSetting>,
}

/// The heartbeat timings of a `save_settings` call, checked, in ms.
pub fn heartbeat_of(settings: &Settings) -> Result<(u64, u64), CommandError> {
    let (min, max) = HEARTBEAT_MS;
    Ok((
        seconds_in_range(Msg::WhatHeartbeatInterval, settings.heartbeat_interval_s, min, max)?,
        seconds_in_range(Msg::WhatHeartbeatTimeout, settings.heartbeat_timeout_s, min, max)?,
    ))
}

/// Milliseconds as the seconds the window shows.
#[allow(clippy::cast_precision_loss)]
fn seconds(ms: u64) -> f64 {
    // Timings are far below 2^53 ms, where f64 is exact.
    ms as f64 / 1000.0
}

#[tauri::command]
pub async fn get_settings(app: AppHandle) -> Result<Settings, CommandError> {
    blocking(move || {
        let config = app.state::<Shell>().engine.config();
        Ok(Settings {
            server: config.server,
            heartbeat_interval_s: Some(seconds(config.heartbeat.interval_ms)),
            heartbeat_timeout_s: Some(seconds(config.heartbeat.timeout_ms)),
            autostart: app.autolaunch().is_enabled().unwrap_or(false),
            language: Some(config.language),
        })
    })
    .await
}

#[tauri::command]
pub async fn save_settings(app: AppHandle, settings: Settings) -> Result<(), CommandError> {
    let (interval, timeout) = heartbeat_of(&settings)?;
    blocking(move || {
        let shell = app.state::<Shell>();
        let engine = &shell.engine;
        let language = settings.language.filter(|l| *l != engine.config().language);
        if engine.save_settings(interval, timeout, language)?.is_some() {
            // The tray and the status line speak the new language at once.
            super::tray::relabel(&app);
            super::actions::refresh(&app);
        }
        let autostart = app.autolaunch();
        let result = if settings.autostart { autostart.enable() } else { autostart.disable() };
        result.map_err(CommandError::Autostart)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind<T>(r: Result<T, CommandError>) -> &'static str {
        r.err().map_or("ok", |e| e.kind())
    }

    #[test]
    fn a_pause_is_a_minute_to_a_week() {
        assert!(matches!(pause_change(Some(60)), Ok(PauseChange::For(d)) if d == Duration::from_secs(3600)));
        assert!(matches!(pause_change(None), Ok(PauseChange::UntilResumed)));
        assert!(matches!(pause_change(Some(PAUSE_MAX_MINUTES)), Ok(PauseChange::For(_))));
        for absurd in [0, PAUSE_MAX_MINUTES + 1, u64::MAX / 60 + 1, u64::MAX] {
            assert_eq!(kind(pause_change(Some(absurd))), "out-of-range", "{absurd}");
        }
    }

    #[test]
    fn history_queries_are_bounded() {
        let q = history_query(Some("  ".into()), Some(10), None).unwrap();
        assert_eq!((q.search, q.before, q.limit), (None, Some(10), 50));
        assert_eq!(kind(history_query(None, None, Some(0))), "out-of-range");
        assert_eq!(kind(history_query(None, None, Some(PAGE_MAX + 1))), "out-of-range");
        assert_eq!(kind(history_query(None, None, Some(u64::MAX))), "out-of-range");
        assert_eq!(kind(history_query(None, Some(-5), None)), "out-of-range");
        assert_eq!(kind(history_query(Some("x".repeat(SEARCH_MAX + 1)), None, None)), "too-long");
        assert_eq!(kind(rows_to_mark(&vec![1; MARK_MAX + 1])), "too-long");
        assert_eq!(kind(rows_to_mark(&[3, 0])), "out-of-range");
        assert_eq!(kind(rows_to_mark(&[1, 2, 3])), "ok");
    }

    #[test]
    fn sign_in_takes_only_a_ws_url_and_bounded_texts() {
        let ok = sign_in_args(" ws://127.0.0.1:1/ ", "t".into(), Some("7".into())).unwrap();
        assert_eq!((ok.server.as_str(), ok.user_id), ("ws://127.0.0.1:1/", Some(UserId::from(7))));
        assert_eq!(kind(sign_in_args("http://x/", "t".into(), None)), "bad-server");
        assert_eq!(kind(sign_in_args("file:///etc/passwd", "t".into(), None)), "bad-server");
        assert_eq!(kind(sign_in_args("ws://x/", "".into(), None)), "empty");
        assert_eq!(kind(sign_in_args("ws://x/", "t".repeat(TOKEN_MAX + 1), None)), "too-long");
        assert_eq!(kind(sign_in_args("ws://x/", "t".into(), Some("1".repeat(USER_ID_MAX + 1)))), "too-long");
        assert_eq!(kind(sign_in_args(&format!("ws://{}/", "h".repeat(3000)), "t".into(), None)), "too-long");
    }

    #[test]
    fn heartbeat_settings_are_bounded() {
        let s = |i, t| Settings {
            server: None,
            heartbeat_interval_s: i,
            heartbeat_timeout_s: t,
            autostart: false,
            language: None,
        };
        assert_eq!(heartbeat_of(&s(Some(5.0), Some(5.0))).unwrap(), (5_000, 5_000));
        assert_eq!(heartbeat_of(&s(Some(2.5), Some(1.0005))).unwrap(), (2_500, 1_001));
        assert_eq!(heartbeat_of(&s(Some(1.0), Some(300.0))).unwrap(), (1_000, 300_000));
        for bad in [0.0, 0.9, -5.0, 300.1, 1e300] {
            assert_eq!(kind(heartbeat_of(&s(Some(bad), Some(5.0)))), "out-of-range", "{bad}");
        }
        for none in [None, Some(f64::NAN), Some(f64::INFINITY)] {
            assert_eq!(kind(heartbeat_of(&s(Some(5.0), none))), "not-seconds", "{none:?}");
        }
        let e = heartbeat_of(&s(Some(0.5), Some(5.0))).unwrap_err();
        assert_eq!(e.to_string(), "the heartbeat interval must be from 1 to 300 seconds, not 0.5");
        let e = heartbeat_of(&s(Some(5.0), None)).unwrap_err();
        assert_eq!(e.to_string(), "the time to wait for an answer must be a number of seconds, for example 5 or 2.5");
    }

    #[test]
    fn a_user_id_is_a_bounded_id_that_is_not_empty() {
        assert_eq!(user_id_arg(" 7 ").unwrap(), UserId::from(7));
        assert_eq!(kind(user_id_arg("  ")), "empty");
        assert_eq!(kind(user_id_arg(&"1".repeat(USER_ID_MAX + 1))), "too-long");
    }
}
