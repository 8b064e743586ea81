//! Helpers for tests that need a D-Bus of their own: a bare or mute dbus-daemon, and a
//! child process run to its end within a bound. Shared by the keyring and dunst tests.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// Runs `cmd` to its end or for at most `limit` (then kills it): (success, stdout, stderr),
/// success being None when it had to be killed.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<bool>, String, String) {
    use std::io::Read;
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("child starts");
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let poll = talkbell_testkit::wait::Poll::up_to(limit).every(Duration::from_millis(50));
    let status = poll.check(|| child.try_wait().expect("try_wait").map(|s| s.success()));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (status, readers.0.join().unwrap_or_default(), readers.1.join().unwrap_or_default())
}

/// A dbus-daemon with no service files, stopped on drop. Not `answering`: its policy lets
/// no message reach a client, so a client waits forever for the reply to its Hello.
pub struct BareBus {
    child: std::process::Child,
    pub address: String,
}

impl BareBus {
    pub fn start(dir: &std::path::Path, answering: bool) -> BareBus {
        use std::io::BufRead;
        let conf = dir.join(if answering { "bare-bus.conf" } else { "mute-bus.conf" });
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    {}
    <allow own="*"/>
  </policy>
</busconfig>"#,
                dir.display(),
                if answering { r#"<allow eavesdrop="true"/>"# } else { "" }
            ),
        )
        .expect("write bus config");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let mut address = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        BareBus { child, address: address.trim().to_owned() }
    }
}

impl Drop for BareBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
