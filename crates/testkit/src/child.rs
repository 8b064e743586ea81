//! Child processes of tests and benchmarks: started with their standard error followed
//! line by line (kept in memory, copied to a log file if asked, echoed with
//! `TALKBELL_TEST_VERBOSE`), ended by their own ids with whatever they started.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::{logtime, procfs};

/// The lines a child wrote to standard error. Clones share the lines; one `Log` may follow
/// several processes in turn (a relay restarted).
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn all(&self) -> MutexGuard<'_, Vec<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows `stream` on a thread of its own, each line copied to `copy` if given.
    pub fn follow(&self, stream: impl std::io::Read + Send + 'static, name: &str, copy: Option<std::fs::File>) {
        let lines = self.0.clone();
        let echo = std::env::var_os("TALKBELL_TEST_VERBOSE").is_some().then(|| name.to_owned());
        std::thread::spawn(move || {
            let mut copy = copy.map(std::io::BufWriter::new);
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(name) = &echo {
                    eprintln!("[{name}] {line}");
                }
                if let Some(f) = copy.as_mut() {
                    let _ = writeln!(f, "{line}");
                    let _ = f.flush();
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.all().clone()
    }

    pub fn len(&self) -> usize {
        self.all().len()
    }

    pub fn is_empty(&self) -> bool {
        self.all().is_empty()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.all();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The first line from index `from` on that contains `needle`.
    pub fn find_from(&self, from: usize, needle: &str) -> Option<String> {
        self.all().iter().skip(from).find(|l| l.contains(needle)).cloned()
    }

    /// The time stamps ([`logtime::line_time`]) of the lines from index `from` on that
    /// contain `needle`.
    pub fn times_from(&self, from: usize, needle: &str) -> Vec<SystemTime> {
        self.all().iter().skip(from).filter(|l| l.contains(needle)).filter_map(|l| logtime::line_time(l)).collect()
    }
}

/// A running child. Dropping it kills it and whatever it started.
pub struct Spawned {
    child: Option<Child>,
    pub pid: u32,
    pub log: Log,
    /// Just before the spawn.
    pub spawned_at: SystemTime,
    pub name: String,
}

/// How a [`Spawned::terminate`] went.
#[derive(Debug)]
pub struct Ended {
    /// From the SIGTERM to the exit (or to the SIGKILL).
    pub took: Duration,
    /// The exit status; None if it had to be killed (or was not running).
    pub status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` (no standard input or output) with its standard error followed into a
    /// new [`Log`] and copied to `log_file`.
    pub fn spawn(cmd: &mut Command, name: &str, log_file: Option<&Path>) -> std::io::Result<Spawned> {
        Self::spawn_logged(cmd, name, Log::default(), log_file)
    }

    /// [`Spawned::spawn`] with `input` written to its standard input (from a thread of
    /// its own), which is then closed: a secret handed over without a file.
    pub fn spawn_fed(
        cmd: &mut Command,
        name: &str,
        input: Vec<u8>,
        log_file: Option<&Path>,
    ) -> std::io::Result<Spawned> {
        let mut spawned = Self::start(cmd.stdin(Stdio::piped()), name, Log::default(), log_file)?;
        let stdin = spawned.child.as_mut().and_then(|c| c.stdin.take());
        let mut stdin = stdin.ok_or_else(|| std::io::Error::other("no pipe for standard input"))?;
        std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        Ok(spawned)
    }

    /// [`Spawned::spawn`] with its standard error added to `log`.
    pub fn spawn_logged(cmd: &mut Command, name: &str, log: Log, log_file: Option<&Path>) -> std::io::Result<Spawned> {
        Self::start(cmd.stdin(Stdio::null()), name, log, log_file)
    }

    fn start(cmd: &mut Command, name: &str, log: Log, log_file: Option<&Path>) -> std::io::Result<Spawned> {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let copy = match log_file {
            Some(p) => Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        let spawned_at = SystemTime::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {name} ({:?}): {e}", cmd.get_program())))?;
        let stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no pipe for standard error"))?;
        log.follow(stderr, name, copy);
        Ok(Spawned { pid: child.id(), child: Some(child), log, spawned_at, name: name.to_owned() })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// This process and its descendants, now.
    pub fn tree(&self) -> Vec<u32> {
        if self.child.is_none() {
            return Vec::new();
        }
        procfs::tree(self.pid)
    }

    pub fn signal(&self, sig: libc::c_int) -> std::io::Result<()> {
        if self.child.is_none() {
            return Err(std::io::Error::other(format!("{} is not running", self.name)));
        }
        procfs::signal(self.pid, sig)
    }

    /// SIGTERM, then SIGKILL after `grace`; its descendants that outlive it are killed
    /// too.
    pub fn terminate(&mut self, grace: Duration) -> Ended {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else { return Ended { took: Duration::ZERO, status: None } };
        let family = procfs::tree(self.pid);
        let _ = procfs::signal(self.pid, libc::SIGTERM);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if started.elapsed() <= grace => std::thread::sleep(Duration::from_millis(10)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let took = started.elapsed();
        end_leftovers(&family, self.pid);
        Ended { took, status }
    }

    /// SIGKILL at once (and to its descendants).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let family = procfs::tree(self.pid);
            let _ = child.kill();
            let _ = child.wait();
            end_leftovers(&family, self.pid);
        }
    }
}

/// Kills the processes of `family` (a tree taken while `root` ran) still alive, by id.
fn end_leftovers(family: &[u32], root: u32) {
    for &p in family.iter().filter(|&&p| p != root) {
        if procfs::alive(p) {
            let _ = procfs::signal(p, libc::SIGKILL);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}
