//! The Markdown report: the issue's targets first, the machine and the setup, then one
//! section per benchmark.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::procfs::{self, Machine};
use crate::stats;
use crate::{Env, BENCHMARKS};

/// One of the issue's targets and what was measured.
pub struct Target {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measured (the benchmark failed or was skipped).
    pub met: Option<bool>,
}

pub struct Report {
    machine: Machine,
    rustc: String,
    date: String,
    load_at_start: String,
    nofile: u64,
    quick: bool,
    relay_db: String,
    work: String,
    sizes: String,
    sections: BTreeMap<usize, String>,
    targets: BTreeMap<usize, Vec<Target>>,
    took: BTreeMap<usize, Duration>,
}

fn order(name: &str) -> usize {
    BENCHMARKS.iter().position(|b| *b == name).unwrap_or(usize::MAX)
}

/// A Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| {} |", headers.join(" | "));
    let _ = writeln!(s, "|{}|", headers.iter().map(|_| " --- ").collect::<Vec<_>>().join("|"));
    for r in rows {
        let _ = writeln!(s, "| {} |", r.join(" | "));
    }
    s
}

impl Report {
    pub fn new(env: &Env, nofile: u64) -> Report {
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let s = &env.sizes;
        Report {
            machine: procfs::machine(),
            rustc: env!("TALKBELL_BENCH_RUSTC").to_owned(),
            date,
            load_at_start: procfs::loadavg(),
            nofile,
            quick: env.quick,
            relay_db: format!("{} ({})", env.relay_db_dir.display(), procfs::fs_type(&env.relay_db_dir)),
            work: format!("{} ({})", env.work.display(), procfs::fs_type(&env.work)),
            sizes: format!(
                "idle {} s; latency {} talks at {}/s; burst {} talks; recovery {} rounds + {} half-open; relay {} idle clients, {} talks to {} clients; start {} runs",
                s.idle_secs,
                stats::int(s.latency_talks),
                s.latency_rate,
                stats::int(s.burst_talks),
                s.recovery_rounds,
                s.halfopen_rounds,
                stats::int(s.relay_idle_clients as u64),
                stats::int(s.route_talks),
                stats::int(s.route_clients as u64),
                s.start_runs
            ),
            sections: BTreeMap::new(),
            targets: BTreeMap::new(),
            took: BTreeMap::new(),
        }
    }

    /// The body of a benchmark's section (Markdown, after its heading).
    pub fn section(&mut self, name: &str, body: String) {
        self.sections.insert(order(name), body);
    }

    pub fn target(&mut self, name: &str, what: &str, target: &str, measured: String, met: Option<bool>) {
        self.targets.entry(order(name)).or_default().push(Target {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            met,
        });
    }

    pub fn took(&mut self, name: &str, took: Duration) {
        self.took.insert(order(name), took);
    }

    pub fn failed(&mut self, name: &str, error: &anyhow::Error) {
        let body = self.sections.remove(&order(name)).unwrap_or_default();
        self.sections.insert(order(name), format!("{body}\n**This benchmark failed:**\n\n```text\n{error:#}\n```\n"));
    }

    pub fn write(&self, path: &Path, total: Duration) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.render(total)).with_context(|| format!("writing {}", path.display()))
    }

    fn render(&self, total: Duration) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Benchmarks\n");
        let _ = writeln!(
            s,
            "What Talkbell costs while it waits and how fast it delivers, side by side with the original \
             browser client (issue 5). Written by `talkbell-bench` (crates/bench); `bash scripts/bench.sh` \
             installs what it needs, builds in release mode, runs every benchmark in a private desktop \
             session and rewrites this file. `talkbell-bench --help` lists flags for shorter runs.\n"
        );
        if self.quick {
            let _ = writeln!(
                s,
                "> **A `--quick` smoke run**: sizes are far below the issue's; these figures are not the benchmark.\n"
            );
        }

        let _ = writeln!(s, "## The issue's targets\n");
        let mut rows = Vec::new();
        for (i, targets) in &self.targets {
            for t in targets {
                let verdict = match t.met {
                    Some(true) => "met".to_owned(),
                    Some(false) => "**missed**".to_owned(),
                    None => "not measured".to_owned(),
                };
                rows.push(vec![format!("{}. {}", i + 1, t.what), t.target.clone(), t.measured.clone(), verdict]);
            }
        }
        if rows.is_empty() {
            let _ = writeln!(s, "(no target measured in this run)\n");
        } else {
            s.push_str(&table(&["what", "target", "measured", ""], &rows));
            let missed = self.targets.values().flatten().filter(|t| t.met == Some(false)).count();
            if missed > 0 {
                let _ = writeln!(s, "\n{missed} target(s) missed; each benchmark's section says why.");
            }
            s.push('\n');
        }

        let _ = writeln!(s, "## Machine and setup\n");
        let m = &self.machine;
        let mut rows = vec![
            vec!["CPU".into(), format!("{} ({} cores)", m.cpu, m.cores)],
            vec!["memory".into(), format!("{:.1} GiB", m.mem_total_kib as f64 / 1048576.0)],
            vec!["kernel".into(), m.kernel.clone()],
        ];
        if !m.os.is_empty() {
            rows.push(vec!["OS".into(), m.os.clone()]);
        }
        rows.extend([
            vec!["rustc".into(), self.rustc.clone()],
            vec!["date".into(), self.date.clone()],
            vec!["load average at start / end".into(), format!("{} / {}", self.load_at_start, procfs::loadavg())],
            vec!["sizes".into(), self.sizes.clone()],
            vec!["relay queue database".into(), self.relay_db.clone()],
            vec!["app data (history) and logs".into(), self.work.clone()],
            vec!["open files limit".into(), self.nofile.to_string()],
        ]);
        let took: Vec<String> = self
            .took
            .iter()
            .map(|(i, d)| format!("{} {}", BENCHMARKS.get(*i).unwrap_or(&"?"), stats::secs(*d)))
            .collect();
        rows.push(vec!["run time".into(), format!("{} ({})", stats::secs(total), took.join(", "))]);
        s.push_str(&table(&["", ""], &rows));
        let _ = writeln!(
            s,
            "\n- Everything runs on this one machine: the relay, the app, Chromium, the senders and \
             the clients share its cores, and other work on the machine shows as noise.\n\
             - Release builds (`cargo build --release`: thin LTO, 4 codegen units).\n\
             - A private desktop session (scripts/desktop-session.sh): Xvfb, a D-Bus session bus, \
             gnome-keyring as the Secret Service (the app's token), dunst as the notification daemon. \
             The tray app runs with `trayer` as its tray host when it is installed.\n\
             - The relay is the release `talkbell-relay serve`, a process of its own, logging at \
             `warn` (its start line excepted); at its default `info` it writes a line per talk. Its \
             queue database is on tmpfs unless `--relay-db-dir` says otherwise: with \
             `synchronous = FULL` every talk is one fsync, and on a disk that caps the relay at the \
             disk's fsync rate (section 5 measures it here), which would hide the app's figures.\n\
             - The app's history (SQLite, WAL, `synchronous = NORMAL`) is on the disk, where users have it.\n\
             - Memory: PSS from `/proc/PID/smaps_rollup`, summed over the process and all its \
             descendants (shared pages divided among the processes that map them); USS = private \
             pages only; RSS counts shared pages in full. PSS depends on what else maps the same \
             files at the time (another Chromium or WebKit process on the machine lowers it). \
             MB = 10⁶ bytes.\n\
             - CPU = utime + stime from `/proc/PID/stat`; wake-ups = voluntary + involuntary context \
             switches summed over `/proc/PID/task/*/status`.\n"
        );

        for (i, name) in BENCHMARKS.iter().enumerate() {
            let Some(body) = self.sections.get(&i) else { continue };
            let title = match *name {
                "idle" => "1. Idle footprint",
                "latency" => "2. Delivery latency",
                "burst" => "3. Burst",
                "recovery" => "4. Recovery",
                "relay" => "5. Relay",
                "start" => "6. Start",
                _ => name,
            };
            let _ = writeln!(s, "## {title}\n");
            s.push_str(body.trim_end());
            s.push_str("\n\n");
        }
        s
    }
}
