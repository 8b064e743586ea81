//! What the user and the events do to the app, for the tray's menu, the window's
//! commands, the popups' actions and the event bridge alike: pause and resume, sign out,
//! reconnect, and
//! showing the status again ([`refresh`]; the engine's unread count shows itself). The tray
//! and the window only draw what this hands them.

use std::time::Duration;

use talkbell_core::notify::{MuteLength, PopupAction};
use tauri::menu::MenuEvent;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::Notify;

use super::menu::MenuAction;
use super::state::Shell;
use super::status::Status;
use super::{tray, window};

/// What the user asks of notifications, from the tray or the window.
pub enum PauseChange {
    For(Duration),
    UntilResumed,
    Resume,
}

/// Applies `change`, and shows the new status once the notifier has taken it (it runs as
/// a task of its own, so reading its state at once would show the old one).
pub async fn change_pause(app: &AppHandle, change: PauseChange) {
    if let Some(n) = app.state::<Shell>().engine.notifications() {
        match change {
            PauseChange::For(d) => n.pause(Some(d)),
            PauseChange::UntilResumed => n.pause(None),
            PauseChange::Resume => n.resume(),
        }
        n.stats().await;
    }
    refresh(app);
}

/// Signs out (the token leaves the keyring) without waiting for it.
pub fn sign_out(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = app.state::<Shell>().engine.sign_out().await {
            tracing::warn!(error = %e, "sign out");
        }
    });
}

/// The tray menu's items, by id.
pub fn on_tray_menu(app: &AppHandle, event: MenuEvent) {
    let pause = |change: PauseChange| {
        let app = app.clone();
        tauri::async_runtime::spawn(async move { change_pause(&app, change).await });
    };
    let Some(action) = MenuAction::parse(event.id().as_ref()) else { return };
    match action {
        MenuAction::Status => {}
        MenuAction::Open => window::open(app, None),
        MenuAction::Reconnect => app.state::<Shell>().engine.session().reconnect_now(),
        MenuAction::PauseHour => pause(PauseChange::For(Duration::from_secs(3600))),
        MenuAction::PauseForever => pause(PauseChange::UntilResumed),
        MenuAction::Resume => pause(PauseChange::Resume),
        MenuAction::SignOut => sign_out(app),
        MenuAction::Quit => app.exit(0),
        MenuAction::OpenTalk { row } => window::open(app, Some(row)),
        MenuAction::MuteSender { length, row } => mute_from_recent(app, length, row),
    }
}

/// Recent's mute item: mutes the sender of the talk in `row` for `length`.
fn mute_from_recent(app: &AppHandle, length: MuteLength, row: i64) {
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let shell = app.state::<Shell>();
        let Some(talk) = shell.recent_talk(row) else { return };
        if let Err(e) = shell.engine.mute(talk.from, length.duration()) {
            tracing::warn!(error = %e, "cannot mute from the tray");
        }
    });
}

/// What a person picked on a popup (called on the notifier's thread): "Open" opens the
/// window at its talk, "Reply" there with its reply box open; the others are the
/// engine's (the unread count it keeps shows itself).
pub fn on_popup(app: &AppHandle, action: PopupAction) {
    let app = app.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let Some(shell) = app.try_state::<Shell>() else { return };
        match shell.engine.on_popup_action(action) {
            Ok(Some(PopupAction::Open(kind))) => window::open(&app, kind.first_row()),
            Ok(Some(PopupAction::Reply(kind))) => match kind.first_row() {
                Some(row) => window::open_reply(&app, row),
                None => window::open(&app, None),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the popup's action failed"),
        }
    });
}

/// Shows the status again on the tray and in the window.
pub fn refresh(app: &AppHandle) {
    if let Some(presenter) = app.try_state::<Presenter>() {
        presenter.wake.notify_one();
    }
}

/// The one task that draws the status: asks made while it draws are folded into one
/// more drawing, so a burst of talks costs a drawing or two, and the last status shown is
/// the latest.
struct Presenter {
    wake: Notify,
}

/// Starts the task that shows the status, and shows it a first time; it shows it again
/// at each change of the engine's unread count too.
pub fn spawn_presenter(app: &AppHandle) {
    app.manage(Presenter { wake: Notify::new() });
    let mut unread = app.state::<Shell>().engine.unread();
    let follower = app.clone();
    tauri::async_runtime::spawn(async move {
        while unread.changed().await.is_ok() {
            refresh(&follower);
        }
    });
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let presenter = app.state::<Presenter>();
        presenter.wake.notify_one();
        loop {
            presenter.wake.notified().await;
            let status = Status::of(&app.state::<Shell>());
            tray::update(&app, &status);
            let _ = app.emit("talkbell://status", &status);
        }
    });
}
