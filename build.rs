// Tauri's build step: reads tauri.conf.json and capabilities/, and declares the app's own
// commands so that a capability must grant each one (none is open to the UI by default).
fn main() {
    let commands = &[
        "get_texts",
        "get_status",
        "get_log",
        "list_history",
        "mark_read",
        "sign_in",
        "set_user_id",
        "sign_out",
        "reconnect_now",
        "pause_notifications",
        "resume_notifications",
        "get_settings",
        "save_settings",
        "reply",
        "mute_sender",
        "unmute_sender",
        "get_notifications",
        "save_notifications",
    ];
    let attributes = tauri_build::Attributes::new().app_manifest(tauri_build::AppManifest::new().commands(commands));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri build step failed: {e:#}");
    }
}
