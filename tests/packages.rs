//! The packages as a user and an operator meet them: what the .deb and .rpm hold, what
//! Debian's checkers say of them, and then the real thing: `apt-get install` of the app's
//! and the relay's .deb on this machine, the installed relay serving TLS with a CA made
//! here, the installed `talkbell` and `talkbell-daemon` signing in over wss:// and popping
//! up a talk, a certificate from another CA refused with its own message, and
//! `apt-get purge` leaving nothing of theirs behind.
//!
//! The packages come from `scripts/package.sh` (the test command builds them with
//! `--debug`) in target/packages. The install test needs root and the desktop session of
//! scripts/desktop-session.sh. No systemd runs here as PID 1: the units are checked with
//! `systemd-analyze verify`, and each unit's ExecStart is run by hand as its user.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use talkbell_testkit::tls::Ca;

const NEEDS_PACKAGES: &str = "needs target/packages from scripts/package.sh";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const APP_FILES: &[&str] = &[
    "/usr/bin/talkbell",
    "/usr/bin/talkbell-daemon",
    "/usr/share/applications/Talkbell.desktop",
    "/usr/share/metainfo/dev.talkbell.Talkbell.metainfo.xml",
    "/usr/lib/systemd/user/talkbell-daemon.service",
    "/usr/share/icons/hicolor/32x32/apps/talkbell.png",
    "/usr/share/icons/hicolor/48x48/apps/talkbell.png",
    "/usr/share/icons/hicolor/64x64/apps/talkbell.png",
    "/usr/share/icons/hicolor/128x128/apps/talkbell.png",
    "/usr/share/icons/hicolor/256x256/apps/talkbell.png",
];
const RELAY_FILES: &[&str] =
    &["/usr/bin/talkbell-relay", "/usr/lib/systemd/system/talkbell-relay.service", "/etc/talkbell-relay/relay.toml"];

fn packages_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary> → target/packages
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("packages");
    assert!(dir.is_dir(), "{} is missing: run scripts/package.sh --debug first", dir.display());
    dir
}

fn package(name: &str) -> PathBuf {
    let path = packages_dir().join(name);
    assert!(path.is_file(), "{} is missing: run scripts/package.sh --debug", path.display());
    path
}

fn app_deb() -> PathBuf {
    package(&format!("talkbell_{VERSION}_amd64.deb"))
}

fn app_rpm() -> PathBuf {
    package(&format!("talkbell-{VERSION}-1.x86_64.rpm"))
}

fn relay_deb() -> PathBuf {
    package(&format!("talkbell-relay_{VERSION}-1_amd64.deb"))
}

/// Runs a command to its end within the tests' patience; panics with its output unless it
/// succeeded. Returns standard output.
fn run_ok(cmd: &mut Command) -> String {
    let out = output_within_patience(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The files (not directories) a .deb holds, as absolute paths.
fn deb_files(deb: &Path) -> BTreeSet<String> {
    run_ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| format!("/{}", p.trim_start_matches("./")))
        .collect()
}

fn deb_field(deb: &Path, field: &str) -> String {
    run_ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(field)).trim().to_owned()
}

/// The package names of a Depends field, without versions.
fn names(depends: &str) -> BTreeSet<String> {
    depends.split(',').filter_map(|d| d.split_whitespace().next()).map(str::to_owned).collect()
}

#[test]
#[ignore = "needs target/packages from scripts/package.sh"]
fn the_app_deb_holds_both_binaries_the_menu_entry_icons_metainfo_and_the_user_unit() {
    let _ = NEEDS_PACKAGES;
    let deb = app_deb();
    let files = deb_files(&deb);
    for f in
        APP_FILES.iter().chain(["/usr/share/doc/talkbell/copyright", "/usr/share/doc/talkbell/changelog.gz"].iter())
    {
        assert!(files.contains(*f), "{f} is not in the package: {files:?}");
    }
    assert_eq!(deb_field(&deb, "Package"), "talkbell");
    assert_eq!(deb_field(&deb, "Version"), VERSION);
    let depends = deb_field(&deb, "Depends");
    let depends = names(&depends);
    for needed in ["libwebkit2gtk-4.1-0", "libgtk-3-0", "libayatana-appindicator3-1", "libc6"] {
        assert!(depends.contains(needed), "Depends lacks {needed}: {depends:?}");
    }
    // Nothing the binaries do not use: every name is a library they link (or the tray's
    // dlopened appindicator), none of the build's -dev packages or tools.
    for d in &depends {
        assert!(d.starts_with("lib") && !d.ends_with("-dev"), "Depends names {d}, which the binaries do not use");
    }
}

#[test]
#[ignore = "needs target/packages from scripts/package.sh"]
fn the_app_rpm_holds_the_same_files_and_needs_webkitgtk_and_the_appindicator() {
    let rpm = app_rpm();
    let listed: BTreeSet<String> =
        run_ok(Command::new("rpm").arg("-qpl").arg(&rpm)).lines().map(str::to_owned).collect();
    for f in APP_FILES {
        assert!(listed.contains(*f), "{f} is not in the rpm: {listed:?}");
    }
    let requires = run_ok(Command::new("rpm").args(["-qp", "--requires"]).arg(&rpm));
    for needed in ["libwebkit2gtk-4.1.so.0", "libayatana-appindicator3.so.1"] {
        assert!(requires.contains(needed), "the rpm does not require {needed}: {requires}");
    }
    let version = run_ok(Command::new("rpm").args(["-qp", "--qf", "%{NAME} %{VERSION}"]).arg(&rpm));
    assert_eq!(version, format!("talkbell {VERSION}"));
}

#[test]
#[ignore = "needs target/packages from scripts/package.sh"]
fn the_relay_deb_holds_the_server_its_system_unit_and_a_default_config() {
    let deb = relay_deb();
    let files = deb_files(&deb);
    for f in RELAY_FILES {
        assert!(files.contains(*f), "{f} is not in the relay package: {files:?}");
    }
    assert_eq!(deb_field(&deb, "Package"), "talkbell-relay");
    assert!(names(&deb_field(&deb, "Depends")).contains("adduser"), "the postinst makes a user with adduser");
    let conffiles = run_ok(
        Command::new("sh").arg("-c").arg(format!("dpkg-deb --ctrl-tarfile {} | tar -xO ./conffiles", deb.display())),
    );
    assert!(
        conffiles.lines().any(|l| l == "/etc/talkbell-relay/relay.toml"),
        "relay.toml is not a conffile: {conffiles}"
    );
}

#[test]
#[ignore = "needs target/packages from scripts/package.sh"]
fn lintian_finds_no_error_in_either_deb() {
    // lintian unpacks and reads every file of the 20 MB package: minutes on a busy machine.
    let bound = std::time::Duration::from_secs(600);
    for deb in [app_deb(), relay_deb()] {
        let out = output_within(Command::new("lintian").arg(&deb), bound);
        let report = String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(errors.is_empty(), "lintian on {}:\n{report}", deb.display());
        assert!(
            out.status.success() || !report.contains("E:"),
            "lintian failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The packages installed with apt-get, as a person does; purged when dropped, whatever
/// happened in between, so a failing test leaves the machine as it found it.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install() -> Installed {
        let installed = Installed { purged: false };
        run_ok(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .arg(app_deb())
                .arg(relay_deb())
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
        installed
    }

    /// Every file the two packages put on the machine (`dpkg -L`), directories left out.
    fn files() -> Vec<PathBuf> {
        let listed = run_ok(Command::new("dpkg").args(["-L", "talkbell", "talkbell-relay"]));
        listed.lines().map(PathBuf::from).filter(|p| !p.is_dir()).collect()
    }

    fn purge(&mut self) {
        self.purged = true;
        run_ok(
            Command::new("apt-get")
                .args(["purge", "-y", "-q", "talkbell", "talkbell-relay"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        );
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let _ = Command::new("apt-get").args(["purge", "-y", "-q", "talkbell", "talkbell-relay"]).status();
        }
    }
}

/// What the installed files say of themselves: versions, and the checkers that need the
/// files where they belong (desktop-file-validate, appstreamcli, systemd-analyze).
fn check_installed_files() {
    assert_eq!(run_ok(Command::new("/usr/bin/talkbell").arg("--version")).trim(), format!("talkbell {VERSION}"));
    assert_eq!(
        run_ok(Command::new("/usr/bin/talkbell-daemon").arg("--version")).trim(),
        format!("talkbell-daemon {VERSION}")
    );
    run_ok(Command::new("desktop-file-validate").arg("/usr/share/applications/Talkbell.desktop"));
    let desktop = std::fs::read_to_string("/usr/share/applications/Talkbell.desktop").unwrap();
    for line in ["Exec=talkbell", "Icon=talkbell", "Comment=Rings when someone talks to you"] {
        assert!(desktop.lines().any(|l| l == line), "the desktop entry lacks {line}:\n{desktop}");
    }
    assert!(desktop.lines().any(|l| l.starts_with("Comment[zh_CN]=")), "no Chinese comment:\n{desktop}");
    run_ok(Command::new("appstreamcli").args([
        "validate",
        "--no-net",
        "/usr/share/metainfo/dev.talkbell.Talkbell.metainfo.xml",
    ]));
    let metainfo = std::fs::read_to_string("/usr/share/metainfo/dev.talkbell.Talkbell.metainfo.xml").unwrap();
    assert!(metainfo.contains(&format!("<release version=\"{VERSION}\"")), "the metainfo's release is not {VERSION}");
    run_ok(Command::new("systemd-analyze").args(["verify", "/usr/lib/systemd/system/talkbell-relay.service"]));
    let runtime = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("systemd-analyze")
            .args(["--user", "verify", "/usr/lib/systemd/user/talkbell-daemon.service"])
            .env("XDG_RUNTIME_DIR", runtime.path()),
    );
}

/// A unit file's `Key=` values, in order.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit).unwrap_or_else(|e| panic!("{unit}: {e}"));
    let prefix = format!("{key}=");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_owned).collect()
}

/// A unit's ExecStart as a command, run as the unit's User= (`setpriv`, which execs, so the
/// process is the server itself); the rest of the unit's sandbox needs systemd.
fn exec_start_of(unit: &str) -> Command {
    let exec = unit_values(unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{unit} has one ExecStart: {exec:?}");
    let argv: Vec<&str> = exec[0].split_whitespace().collect();
    let users = unit_values(unit, "User");
    let mut cmd = match users.first() {
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={user}")).arg(format!("--regid={user}")).arg("--init-groups").arg("--");
            c.args(&argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    cmd.env("RUST_LOG", "info");
    cmd
}

fn gid_of(group: &str) -> u32 {
    let line = run_ok(Command::new("getent").args(["group", group]));
    line.split(':').nth(2).and_then(|g| g.trim().parse().ok()).unwrap_or_else(|| panic!("no group {group}: {line}"))
}

const RELAY_UNIT: &str = "/usr/lib/systemd/system/talkbell-relay.service";
const DAEMON_UNIT: &str = "/usr/lib/systemd/user/talkbell-daemon.service";
const USERS: &str = "/etc/talkbell-relay/users.toml";
const TLS_DIR: &str = "/etc/talkbell-relay/tls";

/// The installed relay, configured as an operator does (users added with its CLI, TLS
/// files the service user can read, relay.toml edited) and run as its unit runs it.
struct InstalledRelay {
    port: u16,
    /// (id, token) of wang1 and wang2.
    tokens: Vec<(u64, String)>,
    process: Daemon,
}

impl InstalledRelay {
    fn start(leaf: &talkbell_testkit::tls::Leaf) -> InstalledRelay {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let group = gid_of("talkbell-relay");
        let meta = std::fs::metadata(USERS).expect("the postinst made the users file");
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o777), (0, group, 0o640), "users file owner and mode");
        let tokens: Vec<(u64, String)> = [(1, "wang1"), (2, "wang2")]
            .iter()
            .map(|(id, name)| {
                let out = run_ok(Command::new("/usr/bin/talkbell-relay").args([
                    "add-user",
                    "--users",
                    USERS,
                    "--id",
                    &id.to_string(),
                    "--name",
                    name,
                ]));
                (*id, out.trim().to_owned())
            })
            .collect();
        let meta = std::fs::metadata(USERS).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (0, group, 0o640),
            "add-user kept the owner and mode"
        );

        std::fs::create_dir_all(TLS_DIR).unwrap();
        let (cert, key) = leaf.write_to(Path::new(TLS_DIR));
        for f in [&cert, &key] {
            std::os::unix::fs::chown(f, Some(0), Some(group)).unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let port = free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nusers = \"{USERS}\"\ndb = \"/var/lib/talkbell-relay/relay.db\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        );
        std::fs::write("/etc/talkbell-relay/relay.toml", config).unwrap();
        let process = Daemon::spawn(exec_start_of(RELAY_UNIT));
        let log = process.log.clone();
        eventually("the installed relay listening", || log.text().contains("listening on wss://").then_some(()));
        InstalledRelay { port, tokens, process }
    }

    fn url(&self) -> String {
        format!("wss://127.0.0.1:{}/", self.port)
    }

    fn token(&self, id: u64) -> &str {
        &self.tokens.iter().find(|(i, _)| *i == id).expect("a user").1
    }

    /// `talkbell-relay send` from wang2 to wang1 over https, trusting `ca_file` as the
    /// system store.
    fn send(&self, ca_file: &Path, text: &str) {
        run_ok(
            Command::new("/usr/bin/talkbell-relay")
                .args(["send", "--server", &format!("https://127.0.0.1:{}", self.port), "--to", "1", text])
                .env("TALKBELL_TOKEN", self.token(2))
                .env("SSL_CERT_FILE", ca_file),
        );
    }
}

/// The installed `talkbell` and `talkbell-daemon`, with this test's directories and
/// `ca_file` as the system's certificate store.
fn installed(app: &App, bin: &str, ca_file: &Path) -> Command {
    let mut cmd = app.command_of(Path::new(bin));
    cmd.env("SSL_CERT_FILE", ca_file).env("RUST_LOG", "info,talkbell_core=debug");
    cmd
}

fn login(app: &App, relay: &InstalledRelay, ca_file: &Path) -> std::process::Output {
    use std::io::Write;
    let mut child = installed(app, "/usr/bin/talkbell", ca_file)
        .args(["login", "--server", &relay.url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(relay.token(1).as_bytes()).unwrap();
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// The X11 class of the window titled Talkbell, as the desktop matches StartupWMClass.
fn window_class() -> String {
    let id = eventually("the Talkbell window", || {
        let out = Command::new("xdotool").args(["search", "--onlyvisible", "--name", "^Talkbell$"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_owned)
    });
    let prop = run_ok(Command::new("xprop").args(["-id", &id, "WM_CLASS"]));
    // WM_CLASS(STRING) = "talkbell", "Talkbell": instance, then class.
    prop.rsplit('"').nth(1).expect("a WM_CLASS").to_owned()
}

fn require_root() {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    assert_eq!(uid, 0, "installing packages needs root (CI runs as root)");
}

#[test]
#[ignore = "needs root, target/packages and scripts/desktop-session.sh"]
fn installed_packages_serve_tls_pop_up_refuse_another_ca_and_purge_cleanly() {
    require_desktop_session();
    require_root();
    let mut packages = Installed::install();
    check_installed_files();
    let work = tempfile::tempdir().unwrap();
    let company = Ca::new("Talkbell test company CA");
    let ca_file = company.write(&work.path().join("company-ca.pem"));
    let other_file = Ca::new("Some other CA").write(&work.path().join("other-ca.pem"));
    let mut relay = InstalledRelay::start(&company.localhost());
    let app = App::new();

    let out = login(&app, &relay, &ca_file);
    assert!(out.status.success(), "login over wss failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(secret_tool_lookup(&relay.url()).as_deref(), Some(relay.token(1)));

    tray_app_pops_up_a_talk(&app, &relay, &ca_file);
    daemon_pops_up_a_talk(&app, &relay, &ca_file);
    another_ca_is_refused_with_its_reason(&app, &relay, &ca_file, &other_file);

    relay.process.stop();
    std::fs::remove_dir_all(TLS_DIR).unwrap();
    purge_leaves_nothing_but_the_users_own(&mut packages, &app, &relay.url());
}

fn tray_app_pops_up_a_talk(app: &App, relay: &InstalledRelay, ca_file: &Path) {
    let mut tray = Daemon::spawn({
        let mut c = installed(app, "/usr/bin/talkbell", ca_file);
        c.arg("--hidden");
        c
    });
    tray.wait_connected(1);
    let marker = format!("to the installed tray app {}", std::process::id());
    relay.send(ca_file, &marker);
    eventually("the tray app's popup", || (closed_popups_with(&marker) == 1).then_some(()));
    // Started again from the app menu, it opens the running one's window, whose class is
    // the desktop entry's StartupWMClass.
    run_ok(&mut installed(app, "/usr/bin/talkbell", ca_file));
    let wm_class = unit_values("/usr/share/applications/Talkbell.desktop", "StartupWMClass");
    assert_eq!(vec![window_class()], wm_class, "StartupWMClass matches the window");
    tray.stop();
}

fn daemon_pops_up_a_talk(app: &App, relay: &InstalledRelay, ca_file: &Path) {
    let exec = unit_values(DAEMON_UNIT, "ExecStart");
    assert_eq!(exec, ["/usr/bin/talkbell-daemon"], "the user unit runs the headless daemon");
    let mut daemon = Daemon::spawn(installed(app, &exec[0], ca_file));
    daemon.wait_connected(1);
    let marker = format!("to the installed daemon {}", std::process::id());
    relay.send(ca_file, &marker);
    eventually("the daemon's popup", || (closed_popups_with(&marker) == 1).then_some(()));
    daemon.stop();
}

/// The relay's certificate from a CA the client does not trust: its own reason in the log
/// and in `talkbell status`, retries with back-off, no popup and no crash; the talk waits
/// in the relay and pops up once the right CA is there.
fn another_ca_is_refused_with_its_reason(app: &App, relay: &InstalledRelay, ca_file: &Path, other: &Path) {
    let mut daemon = Daemon::spawn(installed(app, "/usr/bin/talkbell-daemon", other));
    let log = daemon.log.clone();
    let reason = "the server's certificate is not trusted";
    eventually("the untrusted-certificate reason", || (log.count(reason) >= 1).then_some(()));
    let marker = format!("while the CA was wrong {}", std::process::id());
    relay.send(ca_file, &marker);
    eventually("a third attempt", || log.text().contains("attempt=3").then_some(()));
    let status = run_ok(installed(app, "/usr/bin/talkbell", other).args(["status", "--json"]));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["state"], "offline", "{status}");
    assert!(status["reason"].as_str().unwrap_or_default().contains(reason), "{status}");
    assert!(daemon.is_running(), "the daemon keeps running: {}", log.text());
    assert_eq!(log.count("state=\"connected\""), 0, "connected with an untrusted certificate");
    assert_eq!(closed_popups_with(&marker), 0, "a popup through an untrusted link");
    daemon.stop();

    let mut daemon = Daemon::spawn(installed(app, "/usr/bin/talkbell-daemon", ca_file));
    eventually("the waiting talk's popup", || (closed_popups_with(&marker) == 1).then_some(()));
    daemon.stop();
}

fn purge_leaves_nothing_but_the_users_own(packages: &mut Installed, app: &App, server: &str) {
    let files = Installed::files();
    assert!(files.iter().any(|f| f.ends_with("usr/bin/talkbell-relay")), "dpkg -L lists the packages' files");
    let history = app.data_dir().join("history.sqlite3");
    assert!(history.is_file(), "the history is at {}", history.display());
    packages.purge();
    let left: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
    assert!(left.is_empty(), "purge left {left:?}");
    for gone in [
        "/etc/talkbell-relay",
        "/var/lib/talkbell-relay",
        "/etc/systemd/system/multi-user.target.wants/talkbell-relay.service",
    ] {
        assert!(!Path::new(gone).exists(), "purge left {gone}");
    }
    let user = Command::new("getent").args(["passwd", "talkbell-relay"]).output().unwrap();
    assert!(!user.status.success(), "purge left the talkbell-relay user");
    assert!(history.is_file(), "purge removed the user's history");
    assert!(secret_tool_lookup(server).is_some(), "purge removed the user's keyring entry");
}
