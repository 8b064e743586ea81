//! What the desktop app asks of the operating system, one file per platform, chosen here.
//! Each function has an implementation for every platform: where a platform needs nothing
//! (no GL to turn off, no WebKit network process to end, no `exec`), it is written out as
//! doing nothing, with the reason.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(unix)]
mod unix;

#[cfg(target_os = "linux")]
pub use linux::{before_gui, end_webkit_network_process};
#[cfg(unix)]
pub use unix::exec_daemon;

/// Before GTK starts: nothing to prepare where the GUI is not GTK.
#[cfg(not(target_os = "linux"))]
pub fn before_gui() {}

/// Only WebKitGTK keeps a network process after its last window (the window module
/// says why it is ended); elsewhere there is nothing to end.
#[cfg(not(target_os = "linux"))]
pub fn end_webkit_network_process() {}

/// Without `exec` the headless daemon runs in this process: the same code, with the
/// larger footprint of the GUI's libraries.
#[cfg(not(unix))]
pub fn exec_daemon() {
    tracing::info!("the daemon runs in this process");
}
