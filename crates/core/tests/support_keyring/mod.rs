//! The login keyring of scripts/desktop-session.sh locked and unlocked from a test: locked
//! over D-Bus, unlocked through gnome-keyring's control socket as PAM does at login. Shared
//! by talkbell-core's tests/secrets_keyring.rs and the workspace's tests/locked_keyring.rs
//! (included there by path). A test that locks the keyring must keep the others of its
//! binary off it meanwhile (a lock of its own), and unlock it again even if it fails
//! ([`UnlockOnDrop`]).
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

/// The login collection (the default one) of the session's gnome-keyring.
pub const LOGIN: &str = "/org/freedesktop/secrets/collection/login";

/// `dbus-send --print-reply` to the Secret Service; its output.
pub fn dbus_send(args: &[&str]) -> String {
    let out = Command::new("dbus-send")
        .args(["--session", "--print-reply", "--dest=org.freedesktop.secrets"])
        .args(args)
        .output()
        .expect("dbus-send runs");
    assert!(out.status.success(), "dbus-send {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn login_is_locked() -> bool {
    dbus_send(&[
        LOGIN,
        "org.freedesktop.DBus.Properties.Get",
        "string:org.freedesktop.Secret.Collection",
        "string:Locked",
    ])
    .contains("boolean true")
}

pub fn lock_login() {
    dbus_send(&["/org/freedesktop/secrets", "org.freedesktop.Secret.Service.Lock", &format!("array:objpath:{LOGIN}")]);
}

/// The session's keyring password (scripts/desktop-session.sh sets it).
pub fn keyring_password() -> String {
    std::env::var("TALKBELL_KEYRING_PASSWORD").expect("TALKBELL_KEYRING_PASSWORD is set by the session")
}

/// Unlocks the login keyring the way pam_gnome_keyring does: the password over the
/// daemon's control socket (GKD_CONTROL_OP_UNLOCK). `gnome-keyring-daemon --unlock` would
/// start a second daemon instead. gnome-keyring sends no D-Bus signal for this unlock.
/// Returns the daemon's result code (0 = unlocked).
pub fn unlock_login(password: &str) -> std::io::Result<u32> {
    use std::io::{Read, Write};
    let dir = std::env::var("GNOME_KEYRING_CONTROL")
        .unwrap_or_else(|_| format!("{}/keyring", std::env::var("XDG_RUNTIME_DIR").unwrap_or_default()));
    let mut sock = UnixStream::connect(format!("{dir}/control"))?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    // One credentials byte (the daemon checks the peer's uid), then big-endian
    // [packet length][op = 1, unlock][password length][password].
    let pw = password.as_bytes();
    let mut msg = vec![0u8];
    msg.extend_from_slice(&(12 + pw.len() as u32).to_be_bytes());
    msg.extend_from_slice(&1u32.to_be_bytes());
    msg.extend_from_slice(&(pw.len() as u32).to_be_bytes());
    msg.extend_from_slice(pw);
    sock.write_all(&msg)?;
    let mut reply = [0u8; 8];
    sock.read_exact(&mut reply)?;
    Ok(u32::from_be_bytes([reply[4], reply[5], reply[6], reply[7]]))
}

/// Unlocks the keyring again even if the test fails half-way, so the others can run.
pub struct UnlockOnDrop;

impl Drop for UnlockOnDrop {
    fn drop(&mut self) {
        let _ = unlock_login(&std::env::var("TALKBELL_KEYRING_PASSWORD").unwrap_or_default());
    }
}
