//! One Talkbell per profile. A profile is the pair of config and data dirs ([`Paths`]);
//! the tray app and the headless daemon each hold an advisory exclusive lock on
//! `talkbell.lock` in the data dir for as long as they run, so that two of them never
//! connect the same device twice, show every popup twice or write one config at once.
//!
//! - The lock is `flock` on Unix (`LockFileEx` on Windows), through the `fs4` crate. The
//!   OS releases it when the process ends, however it ends, so a crash leaves no stale
//!   lock behind. The file is opened close-on-exec, so child processes (WebKit's) never
//!   inherit it.
//! - The holder writes its kind and pid into the file (`{"kind":"daemon","pid":1234}`),
//!   which is how a second process can say who runs and how to stop it. On Windows the
//!   locked file cannot be read by others, and the message names no process.
//! - The file is never removed: removing it would let a process lock a new file while the
//!   holder still locks the old one.
//! - [`occupant`] tells whether someone holds the lock without keeping it (for `talkbell
//!   status`): it takes a shared lock for an instant. A process that is starting and meets
//!   that instant tries again for up to a second before it believes someone is running.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::{FileExt, TryLockError};
use serde::{Deserialize, Serialize};

use crate::config::Paths;
use crate::i18n::{text, Msg};

/// The lock file's name in the data dir.
pub const LOCK_FILE: &str = "talkbell.lock";

/// How long a starting process keeps trying a lock held by someone else.
const PATIENCE: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Which of Talkbell's long-running programs holds a profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessKind {
    /// `talkbell` with no subcommand: the tray app and its window.
    TrayApp,
    /// `talkbell-daemon`, or `talkbell daemon` (which becomes it).
    Daemon,
}

impl ProcessKind {
    /// What a person calls it.
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::TrayApp => "the Talkbell tray app",
            ProcessKind::Daemon => "talkbell-daemon",
        }
    }
}

/// The process holding a profile's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    pub kind: ProcessKind,
    pub pid: u32,
}

impl Holder {
    /// This process, as a `kind`.
    pub fn this_process(kind: ProcessKind) -> Holder {
        Holder { kind, pid: std::process::id() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("cannot create {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the profile's lock file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    /// Someone else holds the profile: who (when the lock file says) and how to stop it.
    #[error("{}", already_running(.holder.as_ref(), .data_dir))]
    AlreadyRunning { holder: Option<Holder>, data_dir: PathBuf },
}

/// The message of [`InstanceError::AlreadyRunning`].
fn already_running(holder: Option<&Holder>, data_dir: &Path) -> String {
    let profile = data_dir.display().to_string();
    let (msg, pid) = match holder {
        Some(Holder { kind: ProcessKind::Daemon, pid }) => (Msg::InstanceDaemonRunning, Some(pid.to_string())),
        Some(Holder { kind: ProcessKind::TrayApp, pid }) => (Msg::InstanceTrayAppRunning, Some(pid.to_string())),
        None => (Msg::InstanceOtherRunning, None),
    };
    let mut args = vec![("profile", profile.as_str().into())];
    if let Some(pid) = &pid {
        // Text, not a number: a pid is no count.
        args.push(("pid", pid.as_str().into()));
    }
    text(msg, &args)
}

/// Who holds a profile, as [`occupant`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occupant {
    Nobody,
    Process(Holder),
    /// The lock is held, but its file does not say by whom.
    Unknown,
}

/// A profile's lock, held until this is dropped (or the process ends).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    holder: Holder,
}

impl InstanceLock {
    /// Takes the profile's lock for this process, or says who holds it
    /// ([`InstanceError::AlreadyRunning`]).
    pub fn acquire(paths: &Paths, kind: ProcessKind) -> Result<InstanceLock, InstanceError> {
        InstanceLock::acquire_within(paths, kind, PATIENCE)
    }

    /// How long the tray app waits for the headless daemon that started it to hand the
    /// profile over (it stops first: closes its link and its history).
    pub const HANDOVER: Duration = Duration::from_secs(30);

    /// [`acquire`](Self::acquire), waiting up to `patience` for the holder to let go.
    pub fn acquire_within(paths: &Paths, kind: ProcessKind, patience: Duration) -> Result<InstanceLock, InstanceError> {
        // Private to the user (0700) like every dir of core's: the history lives beside it.
        crate::config::private_dir(&paths.data_dir)
            .map_err(|source| InstanceError::Dir { path: paths.data_dir.clone(), source })?;
        let path = lock_path(paths);
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        owner_only(&mut options);
        let file = options.open(&path).map_err(|source| InstanceError::Open { path: path.clone(), source })?;
        let deadline = Instant::now() + patience;
        loop {
            // Called through the trait: std's `File::try_lock` is newer than our MSRV.
            match FileExt::try_lock(&file) {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(RETRY_EVERY),
                Err(TryLockError::WouldBlock) => {
                    return Err(InstanceError::AlreadyRunning {
                        holder: read_holder(&file),
                        data_dir: paths.data_dir.clone(),
                    })
                }
                Err(TryLockError::Error(source)) => return Err(InstanceError::Lock { path, source }),
            }
        }
        let holder = Holder::this_process(kind);
        write_holder(&file, &holder).map_err(|source| InstanceError::Write { path, source })?;
        Ok(InstanceLock { _file: file, holder })
    }

    pub fn holder(&self) -> Holder {
        self.holder
    }
}

/// Who holds the profile now, without holding it: nobody, or the process its lock file
/// names. Creates nothing.
pub fn occupant(paths: &Paths) -> Result<Occupant, InstanceError> {
    let path = lock_path(paths);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Occupant::Nobody),
        Err(source) => return Err(InstanceError::Open { path, source }),
    };
    match FileExt::try_lock_shared(&file) {
        // Free: closing the file below releases the shared lock at once.
        Ok(()) => Ok(Occupant::Nobody),
        Err(TryLockError::WouldBlock) => {
            // A holder that has just locked may not have written its name yet.
            let deadline = Instant::now() + PATIENCE;
            loop {
                match read_holder(&file) {
                    Some(holder) => return Ok(Occupant::Process(holder)),
                    None if Instant::now() < deadline => std::thread::sleep(RETRY_EVERY),
                    None => return Ok(Occupant::Unknown),
                }
            }
        }
        Err(TryLockError::Error(source)) => Err(InstanceError::Lock { path, source }),
    }
}

fn lock_path(paths: &Paths) -> PathBuf {
    paths.data_dir.join(LOCK_FILE)
}

fn read_holder(mut file: &File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(4096).read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn write_holder(mut file: &File, holder: &Holder) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(holder).map_err(std::io::Error::other)?;
    line.push(b'\n');
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    // One write, so that a reader sees the old content, none, or all of it.
    file.write_all(&line)?;
    file.flush()
}

pub(crate) use platform::owner_only;

#[cfg(unix)]
mod platform {
    use std::os::unix::fs::OpenOptionsExt;

    /// A new file is readable and writable by the user alone (0600).
    pub fn owner_only(options: &mut std::fs::OpenOptions) {
        options.mode(0o600);
    }
}

#[cfg(not(unix))]
mod platform {
    /// The user's profile dirs are private to the user already (their ACL).
    pub fn owner_only(_options: &mut std::fs::OpenOptions) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(dir.path());
        (dir, paths)
    }

    #[test]
    fn a_second_lock_on_a_profile_names_the_first_holder_until_it_is_dropped() {
        let (_dir, paths) = profile();
        assert_eq!(occupant(&paths).unwrap(), Occupant::Nobody, "no lock file yet");
        assert!(!paths.data_dir.join(LOCK_FILE).exists(), "occupant created the lock file");
        let first = InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap();
        let me = Holder { kind: ProcessKind::Daemon, pid: std::process::id() };
        assert_eq!(first.holder(), me);
        assert_eq!(occupant(&paths).unwrap(), Occupant::Process(me));

        // flock locks belong to the open file, so a second open in this process conflicts.
        let err = InstanceLock::acquire_within(&paths, ProcessKind::TrayApp, Duration::ZERO).unwrap_err();
        match &err {
            InstanceError::AlreadyRunning { holder, data_dir } => {
                assert_eq!(*holder, Some(me));
                assert_eq!(data_dir, &paths.data_dir);
            }
            other => panic!("not AlreadyRunning: {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("talkbell-daemon is already running"), "{message}");
        assert!(message.contains(&format!("pid {}", me.pid)), "{message}");
        assert!(message.contains("systemctl --user stop talkbell-daemon"), "{message}");

        drop(first);
        assert_eq!(occupant(&paths).unwrap(), Occupant::Nobody);
        let again = InstanceLock::acquire(&paths, ProcessKind::TrayApp).unwrap();
        assert_eq!(occupant(&paths).unwrap(), Occupant::Process(Holder { kind: ProcessKind::TrayApp, ..me }));
        drop(again);
    }

    #[test]
    fn a_probe_in_progress_does_not_make_a_starting_process_give_up() {
        let (_dir, paths) = profile();
        drop(InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap());
        // What `occupant` holds for an instant, held here for a while.
        let probe = File::open(paths.data_dir.join(LOCK_FILE)).unwrap();
        FileExt::try_lock_shared(&probe).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(probe);
        });
        let lock = InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap();
        release.join().unwrap();
        assert_eq!(lock.holder().pid, std::process::id());
    }

    #[test]
    fn the_messages_say_who_runs_and_how_to_stop_it() {
        let dir = Path::new("/home/u/.local/share/talkbell");
        let cases = [
            (
                Some(Holder { kind: ProcessKind::Daemon, pid: 41 }),
                "talkbell-daemon is already running for this profile (pid 41, data in /home/u/.local/share/talkbell), \
                 and only one Talkbell may run per profile. Stop it with `systemctl --user stop talkbell-daemon` (or \
                 `kill 41`), then start this again.",
            ),
            (
                Some(Holder { kind: ProcessKind::TrayApp, pid: 42 }),
                "the Talkbell tray app is already running for this profile (pid 42, data in \
                 /home/u/.local/share/talkbell), and only one Talkbell may run per profile. Quit it from its tray menu \
                 (Quit), then start this again.",
            ),
            (
                None,
                "another Talkbell process is already running for this profile (data in /home/u/.local/share/talkbell), \
                 and only one Talkbell may run per profile.",
            ),
        ];
        for (holder, message) in cases {
            assert_eq!(already_running(holder.as_ref(), dir), message);
        }
    }

    #[test]
    fn the_lock_file_names_the_holder_in_json_and_is_private() {
        let (_dir, paths) = profile();
        let lock = InstanceLock::acquire(&paths, ProcessKind::TrayApp).unwrap();
        let text = std::fs::read_to_string(paths.data_dir.join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{{\"kind\":\"tray-app\",\"pid\":{}}}\n", std::process::id()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(paths.data_dir.join(LOCK_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(lock);
    }

    #[cfg(unix)]
    #[test]
    fn the_data_dir_the_lock_makes_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The data dir and its missing parent, made by the lock (the tray app's first start).
        let paths = Paths::in_dir(&dir.path().join("profile"));
        assert!(!paths.data_dir.exists());
        let lock = InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap();
        let mode = std::fs::metadata(&paths.data_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
        drop(lock);
        // One left open to others by something else is narrowed when the lock is taken.
        std::fs::set_permissions(&paths.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        drop(InstanceLock::acquire(&paths, ProcessKind::Daemon).unwrap());
        let mode = std::fs::metadata(&paths.data_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
}
