//! What the daemon asks of the operating system, one file per platform. Only Unix has
//! one: a Windows build stops here until someone writes how a Windows service is told to
//! stop (Ctrl-C alone is not it).

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::wait_for_signal;
