//! Open and Reply from the daemon's popups: the tray app at that talk, in the daemon's
//! place. The two cannot run on one profile at once (one Talkbell per profile), so the
//! daemon starts `talkbell --open-talk ROW [--reply]` and then stops, releasing the
//! profile; the app waits for it ([`InstanceLock::HANDOVER`]) and opens its window at the
//! talk. Where no tray app is installed beside the daemon, its popups offer neither.
//!
//! Under systemd (the daemon's user unit) the app is started through `systemd-run --user`,
//! as a unit of its own: a child of the daemon would inherit the unit's sandbox (which
//! WebKit cannot run in) and be stopped with it.
//!
//! [`InstanceLock::HANDOVER`]: talkbell_core::instance::InstanceLock::HANDOVER

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use talkbell_core::notify::NotificationKind;

/// The tray app's binary, which the package installs beside the daemon's.
pub const APP_BINARY: &str = "talkbell";

/// What the desktop needs to reach the app started through systemd-run, handed on from
/// the daemon's environment where it has them.
const DESKTOP_ENV: &[&str] = &[
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_CURRENT_DESKTOP",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "TALKBELL_CONFIG_DIR",
    "TALKBELL_DATA_DIR",
    "LC_ALL",
    "LC_MESSAGES",
    "LANG",
];

/// Where the app opens: a talk (a summary's first; none: the newest), and whether with
/// its reply box open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    pub row: Option<i64>,
    pub reply: bool,
}

impl Opening {
    pub fn new(kind: &NotificationKind, reply: bool) -> Opening {
        Opening { row: kind.first_row(), reply }
    }

    /// The app's arguments: `--open-talk ROW`, with `--reply` for a reply.
    pub fn args(self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(row) = self.row {
            args.extend(["--open-talk".to_owned(), row.to_string()]);
            if self.reply {
                args.push("--reply".to_owned());
            }
        }
        args
    }
}

/// The tray app beside this binary, if it is installed.
pub fn app_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let app = exe.parent()?.join(APP_BINARY);
    app.is_file().then_some(app)
}

/// Starts the app at `opening`; does not wait for it.
pub fn launch(app: &Path, opening: Opening) -> std::io::Result<()> {
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    let mut cmd = match on_path("systemd-run").filter(|_| under_systemd) {
        Some(systemd_run) => {
            let mut cmd = Command::new(systemd_run);
            cmd.args(systemd_run_args(app, opening, |name| std::env::var_os(name)));
            cmd
        }
        None => {
            let mut cmd = Command::new(app);
            cmd.args(opening.args());
            cmd
        }
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // Its own process group: a Ctrl-C meant for the daemon's terminal does not end it.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    // Reaped while the daemon still runs; once it has exited, init does.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// `systemd-run --user …` starting `app` at `opening` as a transient unit, with the
/// desktop's variables of the daemon's environment (`var`).
pub fn systemd_run_args(app: &Path, opening: Opening, var: impl Fn(&str) -> Option<OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--user", "--collect", "--quiet"].map(OsString::from).to_vec();
    for name in DESKTOP_ENV {
        if let Some(value) = var(name) {
            let mut setting = OsString::from(format!("--setenv={name}="));
            setting.push(value);
            args.push(setting);
        }
    }
    args.extend(["--".into(), app.as_os_str().to_owned()]);
    args.extend(opening.args().into_iter().map(OsString::from));
    args
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_app_opens_at_the_talk_and_through_systemd_run_with_the_desktops_variables() {
        let talk = Opening::new(&NotificationKind::Talk { row: 7 }, false);
        assert_eq!(talk.args(), ["--open-talk", "7"]);
        let reply = Opening::new(&NotificationKind::Summary { rows: vec![3, 4] }, true);
        assert_eq!(reply.args(), ["--open-talk", "3", "--reply"]);
        assert!(Opening::new(&NotificationKind::Summary { rows: vec![] }, true).args().is_empty());

        let env = |name: &str| match name {
            "DISPLAY" => Some(OsString::from(":0")),
            "LANG" => Some(OsString::from("zh_CN.UTF-8")),
            _ => None,
        };
        let args = systemd_run_args(Path::new("/usr/bin/talkbell"), reply, env);
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--user",
                "--collect",
                "--quiet",
                "--setenv=DISPLAY=:0",
                "--setenv=LANG=zh_CN.UTF-8",
                "--",
                "/usr/bin/talkbell",
                "--open-talk",
                "3",
                "--reply"
            ]
        );
    }
}
