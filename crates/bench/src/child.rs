//! Child processes of the benchmarks: started here, their standard error followed line by
//! line (kept in memory and copied to a log file), ended by their own ids.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::procfs;

/// The lines a child wrote to standard error, each with the time it was read.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn follow(&self, stream: impl std::io::Read + Send + 'static, copy: Option<std::fs::File>) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            let mut copy = copy.map(std::io::BufWriter::new);
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(f) = copy.as_mut() {
                    let _ = writeln!(f, "{line}");
                    let _ = f.flush();
                }
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|l| l.contains(needle)).count()
    }

    /// The time stamps of the lines from index `from` on that contain `needle`.
    pub fn times_from(&self, from: usize, needle: &str) -> Vec<SystemTime> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().skip(from).filter(|l| l.contains(needle)).filter_map(|l| line_time(l)).collect()
    }

    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until a line from index `from` on contains `needle`; its time stamp.
    pub async fn wait_for(&self, from: usize, needle: &str, within: Duration) -> Result<SystemTime> {
        let started = Instant::now();
        loop {
            if let Some(t) = self.times_from(from, needle).first() {
                return Ok(*t);
            }
            if started.elapsed() > within {
                bail!("no {needle:?} within {within:?}; the log ends:\n{}", self.tail(15));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The time stamp that starts a log line of the app or the relay (tracing's format, UTC):
/// "2026-11-25T09:30:08.166578Z  INFO …".
pub fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let h: u64 = t.next()?.parse().ok()?;
    let min: u64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let whole = u64::try_from(days).ok()? * 86_400 + h * 3_600 + min * 60;
    Some(UNIX_EPOCH + Duration::from_secs(whole) + Duration::from_secs_f64(sec))
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

impl Spawned {
    /// Starts `cmd` with standard error followed (and copied to `log_file`).
    pub fn spawn(cmd: &mut Command, name: &str, log_file: Option<&Path>) -> Result<Spawned> {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let copy = match log_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("opening {}", p.display()))?,
            ),
            None => None,
        };
        let spawned_at = SystemTime::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let log = Log::default();
        log.follow(child.stderr.take().context("no pipe for standard error")?, copy);
        Ok(Spawned { pid: child.id(), child: Some(child), log, spawned_at, name: name.to_owned() })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// This process and its descendants, now.
    pub fn tree(&self) -> Vec<u32> {
        if self.child.is_none() {
            return Vec::new();
        }
        procfs::tree(self.pid)
    }

    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        if self.child.is_none() {
            bail!("{} is not running", self.name);
        }
        procfs::signal(self.pid, sig).with_context(|| format!("signal {sig} to {}", self.name))
    }

    /// SIGTERM, then SIGKILL after `grace`; its descendants that outlive it are killed
    /// too. Returns how long it took to exit.
    pub async fn terminate(&mut self, grace: Duration) -> Duration {
        let started = Instant::now();
        let Some(mut child) = self.child.take() else { return Duration::ZERO };
        let family = procfs::tree(self.pid);
        let _ = procfs::signal(self.pid, libc::SIGTERM);
        loop {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                break;
            }
            if started.elapsed() > grace {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = started.elapsed();
        end_leftovers(&family, self.pid);
        took
    }

    /// SIGKILL at once (and its descendants).
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
