//! What the kernel says about processes (Linux /proc): memory (PSS, USS, RSS, VmHWM), CPU
//! time, context switches (wake-ups), process trees and groups, executables and
//! environments, signals, and the machine itself.

use std::collections::{HashMap, HashSet};
use std::fs;

/// One line of /proc/PID/stat, the fields the benchmarks use.
#[derive(Clone, Debug)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    /// The process group.
    pub pgid: u32,
    /// User + system CPU time of the whole thread group, in clock ticks.
    pub cpu_ticks: u64,
}

pub fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let pgid = fields.get(2)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat { pid, comm, state, ppid, pgid, cpu_ticks: utime + stime })
}

/// Every live process (not zombies).
pub fn all_processes() -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.state != 'Z' && s.state != 'X')
        .collect()
}

/// `root` and all its live descendants, sorted.
pub fn tree(root: u32) -> Vec<u32> {
    family(root, false)
}

/// `root`, its live descendants and, with `group`, every process of its process group too
/// (a helper that was reparented), sorted; empty when `root` is gone.
pub fn family(root: u32, group: bool) -> Vec<u32> {
    let procs = all_processes();
    if !procs.iter().any(|p| p.pid == root) {
        return Vec::new();
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found = HashSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if found.insert(p) {
            stack.extend(children.get(&p).into_iter().flatten());
        }
    }
    if group {
        found.extend(procs.iter().filter(|p| p.pgid == root).map(|p| p.pid));
    }
    let mut out: Vec<u32> = found.into_iter().collect();
    out.sort_unstable();
    out
}

/// The live processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    all_processes().into_iter().filter(|p| p.pgid == pgid).map(|p| p.pid).collect()
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<Stat> {
    all_processes().into_iter().filter(|p| p.ppid == pid).collect()
}

/// The executable a process runs (`/proc/PID/exe`).
pub fn exe(pid: u32) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The processes whose environment holds `var` exactly (`NAME=value`).
pub fn with_env(var: &str) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|b| *b == 0).any(|kv| kv == var.as_bytes())
        })
        .collect()
}

pub fn comm(pid: u32) -> Option<String> {
    stat(pid).map(|s| s.comm)
}

/// Memory of one process from /proc/PID/smaps_rollup, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Mem {
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Private_Clean + Private_Dirty: what goes away with the process (USS).
    pub uss_kib: u64,
}

impl std::ops::Add for Mem {
    type Output = Mem;
    fn add(self, o: Mem) -> Mem {
        Mem { rss_kib: self.rss_kib + o.rss_kib, pss_kib: self.pss_kib + o.pss_kib, uss_kib: self.uss_kib + o.uss_kib }
    }
}

pub fn mem(pid: u32) -> Option<Mem> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let mut m = Mem::default();
    let mut seen = false;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else { continue };
        let Ok(kib) = value.parse::<u64>() else { continue };
        match key {
            "Rss:" => {
                m.rss_kib = kib;
                seen = true;
            }
            "Pss:" => m.pss_kib = kib,
            "Private_Clean:" | "Private_Dirty:" => m.uss_kib += kib,
            _ => {}
        }
    }
    seen.then_some(m)
}

/// The sum over `pids` (processes that are gone count as nothing).
pub fn mem_total(pids: &[u32]) -> Mem {
    pids.iter().filter_map(|&p| mem(p)).fold(Mem::default(), |a, b| a + b)
}

/// PSS by what is mapped (a file's name, or "[heap]", "[anon]", "[stack]" …), summed over
/// `pids`, largest first, in KiB.
pub fn pss_by_mapping(pids: &[u32]) -> Vec<(String, u64)> {
    let mut by: HashMap<String, u64> = HashMap::new();
    for &pid in pids {
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/smaps")) else { continue };
        let mut name = String::new();
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let Some(first) = parts.next() else { continue };
            if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                // "start-end perms offset dev inode [name]"
                let rest: Vec<&str> = parts.skip(4).collect();
                name = if rest.is_empty() {
                    "[anon]".into()
                } else {
                    let full = rest.join(" ");
                    full.rsplit('/').next().unwrap_or(&full).to_owned()
                };
            } else if first == "Pss:" {
                if let Some(kib) = parts.next().and_then(|v| v.parse::<u64>().ok()) {
                    *by.entry(name.clone()).or_default() += kib;
                }
            }
        }
    }
    let mut out: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A field of /proc/PID/status in KiB (e.g. "VmHWM", "VmRSS").
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Voluntary + involuntary context switches of one thread.
fn task_switches(pid: u32, tid: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let mut total = 0;
    for l in text.lines() {
        if let Some(v) =
            l.strip_prefix("voluntary_ctxt_switches:").or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            total += v.trim().parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// CPU time and context switches of a set of processes at one moment: per process, and
/// per thread, so that a later snapshot can count what appeared meanwhile.
#[derive(Clone, Debug, Default)]
pub struct Activity {
    cpu_ticks: HashMap<u32, u64>,
    switches: HashMap<(u32, u32), u64>,
}

pub fn activity(pids: &[u32]) -> Activity {
    let mut a = Activity::default();
    for &pid in pids {
        let Some(s) = stat(pid) else { continue };
        a.cpu_ticks.insert(pid, s.cpu_ticks);
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for t in tasks.flatten() {
            let name = t.file_name();
            let Some(tid) = name.to_str() else { continue };
            if let (Ok(n), Some(sw)) = (tid.parse::<u32>(), task_switches(pid, tid)) {
                a.switches.insert((pid, n), sw);
            }
        }
    }
    a
}

/// What happened between two snapshots: CPU seconds and context switches. A process or
/// thread that is new in `after` counts from zero; one that is gone counts nothing (its
/// last interval is lost, a small undercount).
pub fn activity_delta(before: &Activity, after: &Activity) -> (f64, u64) {
    let ticks: u64 =
        after.cpu_ticks.iter().map(|(pid, t)| t.saturating_sub(before.cpu_ticks.get(pid).copied().unwrap_or(0))).sum();
    let switches: u64 =
        after.switches.iter().map(|(k, s)| s.saturating_sub(before.switches.get(k).copied().unwrap_or(0))).sum();
    (ticks as f64 / clock_ticks_per_second(), switches)
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The thread count of a process.
pub fn threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0)
}

/// Raises the soft limit on open files to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// Sends a signal to one process (by its id).
pub fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    kill(pid_t(pid)?, sig)
}

/// Sends a signal to every process of process group `pgid`.
pub fn signal_group(pgid: u32, sig: libc::c_int) -> std::io::Result<()> {
    kill(-pid_t(pgid)?, sig)
}

/// A pid beyond pid_t would wrap to a negative one: a process group, or every process.
fn pid_t(pid: u32) -> std::io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("no such pid: {pid}")))
}

fn kill(pid: libc::pid_t, sig: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid (or group) of a process this program started.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The machine, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_total_kib: u64,
    pub kernel: String,
    pub os: String,
}

pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".into());
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1);
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_total_kib =
        meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")?.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    let os = fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_default();
    Machine { cpu, cores, mem_total_kib, kernel, os }
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().take(3).map(str::to_owned).reduce(|a, b| format!("{a} {b}")))
        .unwrap_or_default()
}

/// The filesystem type a path lives on (from /proc/self/mounts, longest mount prefix).
pub fn fs_type(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount).then(|| (mount.len(), kind.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(mem(me).unwrap().pss_kib > 0);
        assert!(status_kib(me, "VmHWM").unwrap() > 0);
        assert!(tree(me).contains(&me));
        assert!(family(me, true).contains(&me));
        assert_eq!(exe(me), std::env::current_exe().ok());
        let a = activity(&[me]);
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = activity(&[me]);
        let (_cpu, switches) = activity_delta(&a, &b);
        assert!(switches >= 1);
        assert!(machine().cores >= 1);
    }
}
