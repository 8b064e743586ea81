//! The window exists only while it is open: closing it destroys it and its web view, so
//! that nothing of WebKit stays alive while the app sits in the tray.

use tauri::{AppHandle, Emitter, Manager, WebviewUrl, WebviewWindowBuilder};

pub const LABEL: &str = "main";

/// Opens the window (or brings it to the front), optionally at a history row.
pub fn open(app: &AppHandle, focus_row: Option<i64>) {
    show(app, focus_row.map(|row| Focus { row, reply: false }));
}

/// Opens the window at a talk with its reply box open and focused (a popup's "Reply").
pub fn open_reply(app: &AppHandle, row: i64) {
    show(app, Some(Focus { row, reply: true }));
}

/// Where the window opens: a row, and whether to open its reply box.
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Focus {
    row: i64,
    reply: bool,
}

fn show(app: &AppHandle, focus: Option<Focus>) {
    if let Some(window) = app.get_webview_window(LABEL) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        if let Some(focus) = focus {
            let _ = window.emit("talkbell://focus", focus);
        }
        return;
    }
    // The page reads where to open from its fragment.
    let page = match focus {
        Some(Focus { row, reply: true }) => format!("index.html#reply={row}"),
        Some(Focus { row, reply: false }) => format!("index.html#row={row}"),
        None => "index.html".to_owned(),
    };
    let built = WebviewWindowBuilder::new(app, LABEL, WebviewUrl::App(page.into()))
        .title("Talkbell")
        .inner_size(440.0, 640.0)
        .min_inner_size(320.0, 360.0)
        .build();
    if let Err(e) = built {
        tracing::error!(error = %e, "cannot open the window");
    }
}

/// After the window is gone. WebKit ends the window's web process with its web view, but
/// Tauri keeps the web context (and with it WebKit's network process, ~60 MB resident)
/// alive for the app's lifetime on Linux (tauri-apps/tauri#14626). The network process
/// holds nothing the app needs between windows — the UI talks to the backend over IPC,
/// never the network — and WebKit starts a new one when the window opens again, so it is
/// ended here.
pub fn closed(app: &AppHandle, label: &str) {
    // Tauri may still list the window that is going.
    if app.webview_windows().keys().all(|l| l == label) {
        crate::platform::end_webkit_network_process();
    }
}
