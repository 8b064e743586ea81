//! The tray icon: one picture per connection state, the state and unread count in the
//! tooltip (and, since Linux trays show no tooltips, in the menu's first line), and the
//! menu of DESIGN.md.

use std::sync::Mutex;

use talkbell_core::i18n::{t, Msg};
use talkbell_core::notify::MuteLength;
use talkbell_core::status::StateKind;
use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};

use super::menu::MenuAction;
use super::state::{RecentTalk, Shell};
use super::status::Status;

const TRAY_ID: &str = "talkbell";

/// The menu items whose text or availability follows the state, and the words of the
/// others (relabelled when the language changes).
pub struct TrayItems {
    status: MenuItem<Wry>,
    pause_hour: MenuItem<Wry>,
    pause_forever: MenuItem<Wry>,
    resume: MenuItem<Wry>,
    sign_out: MenuItem<Wry>,
    open: MenuItem<Wry>,
    reconnect: MenuItem<Wry>,
    quit: MenuItem<Wry>,
    menu: Menu<Wry>,
    /// A submenu's label does not change on Linux once shown (`set_text` leaves it as it
    /// was), so a new language gets a new submenu in its place.
    pause: Mutex<Submenu<Wry>>,
    /// The last talks for the user, each with its Open and Mute; made anew when they
    /// change, for the same reason.
    recent: Mutex<Submenu<Wry>>,
}

/// Where the Recent submenu sits (after the status, a separator and Open).
const RECENT_AT: usize = 3;

/// A menu label of at most `max` characters (cut with …), on one line.
fn short(text: &str, max: usize) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

fn recent_submenu(app: &AppHandle, talks: &[RecentTalk]) -> tauri::Result<Submenu<Wry>> {
    let menu = Submenu::new(app, t(Msg::TrayRecent), !talks.is_empty())?;
    for r in talks {
        let name = if r.from.name.is_empty() { r.from.id.to_string() } else { r.from.name.clone() };
        let label = format!("{}: {}", short(&name, 20), short(&r.talk, 40));
        let open_talk = MenuAction::OpenTalk { row: r.row }.id();
        let open = MenuItem::with_id(app, open_talk, t(Msg::PopupActionOpen), true, None::<&str>)?;
        let item = Submenu::with_items(app, label, true, &[&open])?;
        for length in MuteLength::ALL {
            let mute_label =
                talkbell_core::i18n::text(length.menu_label(), &[("name", short(&name, 20).as_str().into())]);
            let id = MenuAction::MuteSender { length, row: r.row }.id();
            item.append(&MenuItem::with_id(app, id, mute_label, true, None::<&str>)?)?;
        }
        menu.append(&item)?;
    }
    Ok(menu)
}

/// Lists `talks` (newest first) under Recent.
pub fn show_recent(app: &AppHandle, talks: &[RecentTalk]) {
    let Some(items) = app.try_state::<TrayItems>() else { return };
    let Ok(mut recent) = items.recent.lock() else { return };
    let fresh = recent_submenu(app, talks).and_then(|fresh| {
        items.menu.remove(&*recent)?;
        items.menu.insert(&fresh, RECENT_AT)?;
        Ok(fresh)
    });
    match fresh {
        Ok(fresh) => *recent = fresh,
        Err(e) => tracing::warn!(error = %e, "the Recent submenu keeps its old talks"),
    }
}

/// Where the pause submenu sits in the menu (after the status, a separator, Open,
/// Recent and Reconnect).
const PAUSE_AT: usize = 5;

impl TrayItems {
    /// Each item with its message (the status line has its own words).
    fn labelled(&self) -> [(&MenuItem<Wry>, Msg); 7] {
        [
            (&self.open, Msg::TrayOpen),
            (&self.reconnect, Msg::TrayReconnect),
            (&self.pause_hour, Msg::TrayPauseHour),
            (&self.pause_forever, Msg::TrayPauseForever),
            (&self.resume, Msg::TrayResume),
            (&self.sign_out, Msg::TraySignOut),
            (&self.quit, Msg::TrayQuit),
        ]
    }
}

/// The menu's words again, in the language chosen now (the status line follows with the
/// next status).
pub fn relabel(app: &AppHandle) {
    let Some(items) = app.try_state::<TrayItems>() else { return };
    for (item, msg) in items.labelled() {
        let _ = item.set_text(t(msg));
    }
    if let Err(e) = new_pause_submenu(app, &items) {
        tracing::warn!(error = %e, "the pause submenu keeps its old label");
    }
    if let Some(shell) = app.try_state::<Shell>() {
        show_recent(app, &shell.recent());
    }
}

fn new_pause_submenu(app: &AppHandle, items: &TrayItems) -> tauri::Result<()> {
    let Ok(mut pause) = items.pause.lock() else { return Ok(()) };
    pause.remove(&items.pause_hour)?;
    pause.remove(&items.pause_forever)?;
    let fresh = Submenu::with_items(app, t(Msg::TrayPause), true, &[&items.pause_hour, &items.pause_forever])?;
    items.menu.remove(&*pause)?;
    items.menu.insert(&fresh, PAUSE_AT)?;
    *pause = fresh;
    Ok(())
}

fn icon_for(state: StateKind) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match state {
        StateKind::Connected => include_bytes!("../../icons/tray-connected.png"),
        StateKind::Connecting | StateKind::Authenticating => include_bytes!("../../icons/tray-connecting.png"),
        StateKind::SignedOut => include_bytes!("../../icons/tray-signed-out.png"),
        StateKind::Offline | StateKind::Stopped | StateKind::NotRunning => {
            include_bytes!("../../icons/tray-offline.png")
        }
    };
    Image::from_bytes(bytes)
}

/// Puts the icon in the tray, with its menu; `on_menu` gets the menu's clicks (by the
/// items' ids, [`MenuAction::id`]).
pub fn create(app: &AppHandle, on_menu: impl Fn(&AppHandle, MenuEvent) + Send + Sync + 'static) -> tauri::Result<()> {
    let item =
        |action: MenuAction, label: String, enabled| MenuItem::with_id(app, action.id(), label, enabled, None::<&str>);
    let status = item(MenuAction::Status, "Talkbell".to_owned(), false)?;
    let open = item(MenuAction::Open, t(Msg::TrayOpen), true)?;
    let reconnect = item(MenuAction::Reconnect, t(Msg::TrayReconnect), true)?;
    let pause_hour = item(MenuAction::PauseHour, t(Msg::TrayPauseHour), true)?;
    let pause_forever = item(MenuAction::PauseForever, t(Msg::TrayPauseForever), true)?;
    let pause = Submenu::with_items(app, t(Msg::TrayPause), true, &[&pause_hour, &pause_forever])?;
    let resume = item(MenuAction::Resume, t(Msg::TrayResume), false)?;
    let sign_out = item(MenuAction::SignOut, t(Msg::TraySignOut), true)?;
    let quit = item(MenuAction::Quit, t(Msg::TrayQuit), true)?;
    let recent = recent_submenu(app, &[])?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &PredefinedMenuItem::separator(app)?,
            &open,
            &recent,
            &reconnect,
            &pause,
            &resume,
            &PredefinedMenuItem::separator(app)?,
            &sign_out,
            &quit,
        ],
    )?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon_for(StateKind::Connecting)?)
        .tooltip("Talkbell")
        .menu(&menu)
        .on_menu_event(on_menu)
        .build(app)?;
    let (pause, recent) = (Mutex::new(pause), Mutex::new(recent));
    let items =
        TrayItems { status, pause_hour, pause_forever, resume, sign_out, open, reconnect, quit, menu, pause, recent };
    app.manage(items);
    Ok(())
}

/// Shows `status` on the tray.
pub fn update(app: &AppHandle, status: &Status) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else { return };
    if let Ok(icon) = icon_for(status.state) {
        let _ = tray.set_icon(Some(icon));
    }
    let line = &status.words.tray;
    let _ = tray.set_tooltip(Some(line));
    if let Some(items) = app.try_state::<TrayItems>() {
        let _ = items.status.set_text(line);
        let _ = items.pause_hour.set_enabled(!status.paused);
        let _ = items.pause_forever.set_enabled(!status.paused);
        let _ = items.resume.set_enabled(status.paused);
        let _ = items.sign_out.set_enabled(status.state != StateKind::SignedOut);
    }
}
