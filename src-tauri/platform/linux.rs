//! Linux: GTK's GL, and WebKitGTK's network process read from /proc and ended with kill(2).

/// Before GTK starts, while this is the only thread: GTK would otherwise open a GL
/// display at start for its visuals, which loads the GPU driver (or Mesa's llvmpipe,
/// 30 MB) into the tray process for its whole life, window or none. The window's web view
/// then draws without GL, which this small page does not miss. Setting GDK_GL yourself
/// (e.g. GDK_GL=always) overrides this.
pub fn before_gui() {
    if std::env::var_os("GDK_GL").is_none() {
        std::env::set_var("GDK_GL", "disable");
    }
}

/// Ends this process's WebKit network processes (children named `WebKitNetwork…`).
pub fn end_webkit_network_process() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) && comm.starts_with("WebKitNetwork") {
            // SAFETY: kill(2) with a pid we just read as our own child; no memory involved.
            if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
                tracing::debug!(pid, "ended WebKit's network process with the window");
            }
        }
    }
}
