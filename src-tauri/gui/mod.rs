//! The desktop shell: the Tauri app (here), the window's commands (`commands`, their
//! errors in `error`), what the user and the events do (`actions`), the engine's events
//! turned into the window's (`bridge`), the status with its words (`status`), and the
//! tray and the window, which only draw (`tray`, `window`). It holds no protocol or
//! connection logic: everything it shows comes from the core's `Engine` (in `state`),
//! and everything the user does is a thin call into it.

mod actions;
mod bridge;
mod chat;
mod commands;
mod error;
mod menu;
mod state;
mod status;
mod tray;
mod window;

use std::sync::Arc;

use anyhow::{Context, Result};
use talkbell_core::config::Paths;
use talkbell_core::engine::Engine;
use talkbell_core::i18n::{t, Msg};
use talkbell_core::instance::{InstanceError, InstanceLock, ProcessKind};
use talkbell_core::notify::{DesktopNotifier, Notification, NotificationKind, Notifier};
use tauri::{Manager, RunEvent, WindowEvent};

use self::state::Shell;

/// The profile's lock, held in Tauri's state for the app's life.
struct ProfileLock(InstanceLock);

/// How the tray app starts: in the tray only, or with its window (at a talk, its reply
/// box open). The command line's part for the tray app (`talkbell [--hidden]
/// [--open-talk ID [--reply]]`); its words are the catalogue's (`cli::described`).
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Start {
    #[arg(long, global = true)]
    pub hidden: bool,
    #[arg(long, value_name = "ID")]
    pub open_talk: Option<i64>,
    #[arg(long, requires = "open_talk")]
    pub reply: bool,
}

impl Start {
    /// What a second `talkbell` asks of the running one, from the arguments the
    /// single-instance plugin hands over (its program name first). Arguments it cannot
    /// read ask for the window, as a plain `talkbell` does.
    fn from_argv(argv: &[String]) -> Start {
        use clap::{Args, FromArgMatches};
        let cmd = Start::augment_args(clap::Command::new("talkbell").ignore_errors(true));
        let matches = cmd.try_get_matches_from(argv).ok();
        matches.and_then(|m| Start::from_arg_matches(&m).ok()).unwrap_or_default()
    }
}

/// Runs the tray app until Quit. Must be called on the main thread, with Tauri's async
/// runtime already set to the process's tokio runtime. Started at a talk (by the headless
/// daemon, which is stopping), it waits for the profile up to [`InstanceLock::HANDOVER`].
pub fn run(paths: Paths, start: Start) -> Result<()> {
    let lock_paths = paths.clone();
    let app = builder()
        .setup(move |app| setup(app, &paths, start))
        .build(tauri::generate_context!())
        .with_context(|| t(Msg::CliCannotStartApp))?;
    // Built: the single-instance plugin has run, so a second tray app has handed over to
    // the first and exited. The setup hook, which starts the engine (and with it opens
    // the config and the history), runs only in `app.run`.
    let lock = match start.open_talk {
        Some(_) => InstanceLock::acquire_within(&lock_paths, ProcessKind::TrayApp, InstanceLock::HANDOVER),
        None => InstanceLock::acquire(&lock_paths, ProcessKind::TrayApp),
    }
    .inspect_err(tell_the_desktop)?;
    app.manage(ProfileLock(lock));
    app.run(|app, event| match event {
        // The last window closed: the app lives on in the tray. Quit passes a code.
        RunEvent::ExitRequested { api, code: None, .. } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(shell) = app.try_state::<Shell>() {
                tauri::async_runtime::block_on(shell.engine.shutdown());
            }
        }
        _ => {}
    });
    Ok(())
}

/// The app's plugins, commands and window events.
fn builder() -> tauri::Builder<tauri::Wry> {
    tauri::Builder::default()
        // First, so that a second `talkbell` only hands its arguments to this one (and then
        // exits): `--open-talk` opens the window at that talk, `--hidden` changes nothing.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            show_as(app, Start::from_argv(&argv));
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--hidden"]),
        ))
        .invoke_handler(tauri::generate_handler![
            commands::get_texts,
            commands::get_status,
            commands::get_log,
            commands::list_history,
            commands::mark_read,
            commands::sign_in,
            commands::set_user_id,
            commands::sign_out,
            commands::reconnect_now,
            commands::pause_notifications,
            commands::resume_notifications,
            commands::get_settings,
            commands::save_settings,
            chat::reply,
            chat::mute_sender,
            chat::unmute_sender,
            chat::get_notifications,
            chat::save_notifications,
        ])
        .on_window_event(|window, event| {
            if let WindowEvent::Destroyed = event {
                window::closed(window.app_handle(), window.label());
            }
        })
}

/// Starts the engine, the tray, the status and the event bridge, and opens the window
/// unless hidden (at the talk asked for).
fn setup(app: &mut tauri::App, paths: &Paths, start: Start) -> Result<(), Box<dyn std::error::Error>> {
    let handle = app.handle().clone();
    // A click on a popup opens the window at that talk; its other actions need none.
    let replies = app.handle().clone();
    let notifier = DesktopNotifier::new()
        .on_action(move |action| actions::on_popup(&handle, action))
        .offer_reply(move || replies.try_state::<Shell>().is_some_and(|s| s.engine.session().watch().borrow().replies));
    // Never waits for the keyring (the token is read by a task of the engine), so the
    // tray is up at once, signed out with the reason while the keyring is locked.
    let engine =
        Engine::start(paths.clone(), Some(Arc::new(notifier))).with_context(|| t(Msg::CliCannotStartEngine))?;
    if let Some(lock) = app.try_state::<ProfileLock>() {
        engine.publish_status(lock.0.holder());
    }
    engine.watch_system();
    app.manage(Shell::new(engine));
    tray::create(app.handle(), actions::on_tray_menu)?;
    actions::spawn_presenter(app.handle());
    bridge::spawn(app.handle().clone());
    show_as(app.handle(), start);
    Ok(())
}

/// Opens the window as `start` asks: at a talk (its reply box open), plain, or not at all
/// for a start in the tray.
fn show_as(app: &tauri::AppHandle, start: Start) {
    match start.open_talk {
        Some(row) if start.reply => window::open_reply(app, row),
        Some(row) => window::open(app, Some(row)),
        None if !start.hidden => window::open(app, None),
        None => {}
    }
}

/// Started from the app menu, the tray app has no terminal to say on standard error that
/// another Talkbell holds the profile: a popup says it too.
fn tell_the_desktop(error: &InstanceError) {
    if !matches!(error, InstanceError::AlreadyRunning { .. }) {
        return;
    }
    let popup = Notification {
        title: t(Msg::PopupAlreadyRunningTitle),
        body: error.to_string(),
        kind: NotificationKind::Summary { rows: Vec::new() },
        sound: false,
        sender: None,
    };
    if let Err(e) = DesktopNotifier::new().show(&popup) {
        tracing::warn!(error = %e, "cannot show that Talkbell is already running");
    }
}
