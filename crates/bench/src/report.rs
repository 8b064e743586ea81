//! The one renderer: every benchmark's figures ([`Results`], also written as JSON) as the
//! Markdown report — the issue's targets first, the machine and the setup, then one section
//! per benchmark. Only measured facts are rendered here; what explains them is hand-written
//! in docs/benchmarks-notes.md, whose `## ` sections are woven in under the generated
//! sections of the same title (its text before the first heading under the introduction).
//! The benchmarks a run leaves out keep their sections and targets from the JSON of the
//! report it rewrites ([`previous`]).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use talkbell_testkit::procfs::{self, Machine, Mem};

use crate::stats::{int, mb, mb_f, ms, rate, ratio, saturating_u64, secs_f, summarize, Summary};
use crate::suite::{burst, cluster, idle, latency, recovery, relay_load, start, Figures, Tried};
use crate::{Env, Sizes, BENCHMARKS};

/// One benchmark's run: its figures, and its section and targets as rendered then (so that
/// a later run of other benchmarks keeps them).
#[derive(Serialize, Deserialize)]
pub struct Ran {
    pub name: String,
    pub took_s: f64,
    #[serde(default)]
    pub date: String,
    pub figures: Option<serde_json::Value>,
    pub error: Option<String>,
    #[serde(default)]
    pub section: String,
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Everything a run measured, and where.
#[derive(Serialize)]
pub struct Results {
    pub machine: Machine,
    pub rustc: String,
    pub date: String,
    pub load_at_start: String,
    pub load_at_end: String,
    pub nofile: u64,
    pub quick: bool,
    pub sizes: Sizes,
    pub relay_db: String,
    pub work: String,
    pub total_s: f64,
    pub benchmarks: Vec<Ran>,
}

/// One of the issue's targets and what was measured (`met: None`: not measured).
#[derive(Serialize, Deserialize)]
pub struct Target {
    pub benchmark: String,
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl Results {
    /// This run's, starting with the benchmarks of an earlier report (`kept`).
    pub fn new(env: &Env, kept: Vec<Ran>) -> Results {
        let place = |p: &Path| format!("{} ({})", p.display(), procfs::fs_type(p));
        Results {
            machine: procfs::machine(),
            rustc: env!("TALKBELL_BENCH_RUSTC").to_owned(),
            date: now_utc(),
            load_at_start: procfs::loadavg(),
            load_at_end: procfs::loadavg(),
            nofile: env.nofile,
            quick: env.quick,
            sizes: env.sizes.clone(),
            relay_db: place(&env.relay_db_dir),
            work: place(&env.work),
            total_s: 0.0,
            benchmarks: kept,
        }
    }

    pub fn add(&mut self, name: &str, took: Duration, result: Result<Figures>, total: Duration) {
        let (figures, error) = match result {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let mut targets = Vec::new();
        let mut section = figures.as_ref().map_or(String::new(), |f| body(f, &mut targets));
        if let Some(e) = &error {
            section += &format!("\n**This benchmark failed:**\n\n```text\n{e}\n```\n");
        }
        targets.iter_mut().for_each(|t: &mut Target| t.benchmark = name.to_owned());
        let figures = figures.and_then(|f| serde_json::to_value(f).ok());
        let (name, took_s, date) = (name.to_owned(), took.as_secs_f64(), now_utc());
        self.benchmarks.retain(|b| b.name != name);
        self.benchmarks.push(Ran { name, took_s, date, figures, error, section, targets });
        self.benchmarks.sort_by_key(|b| BENCHMARKS.iter().position(|n| *n == b.name).unwrap_or(usize::MAX));
        self.total_s = total.as_secs_f64();
        self.load_at_end = procfs::loadavg();
    }
}

/// The benchmarks of the report's earlier JSON, each with its section and targets as
/// rendered when it ran.
pub fn previous(json: &Path) -> Vec<Ran> {
    #[derive(Deserialize)]
    struct Json {
        benchmarks: Vec<Ran>,
    }
    let text = std::fs::read_to_string(json).unwrap_or_default();
    let mut kept = serde_json::from_str::<Json>(&text).map_or_else(|_| Vec::new(), |j| j.benchmarks);
    kept.retain(|b| !b.section.is_empty() && BENCHMARKS.contains(&b.name.as_str()));
    kept
}

fn now_utc() -> String {
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

/// Writes the Markdown report to `out` and the figures (with the targets) to `json`.
pub fn write(results: &Results, notes: &str, out: &Path, json: &Path) -> Result<()> {
    #[derive(Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        results: &'a Results,
        targets: Vec<&'a Target>,
    }
    for dir in [out, json].iter().filter_map(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let targets = results.benchmarks.iter().flat_map(|b| &b.targets).collect();
    let text = serde_json::to_string_pretty(&Json { results, targets })?;
    std::fs::write(json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(out, render(results, notes)).with_context(|| format!("writing {}", out.display()))
}

/// A Markdown table; a row shorter than the headers ends in empty cells.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| format!("| {} |\n", cells.collect::<Vec<_>>().join(" | "));
    let mut s = line(&mut headers.iter().copied()) + &line(&mut headers.iter().map(|_| "---"));
    for r in rows {
        s += &line(&mut r.iter().map(String::as_str).chain(std::iter::repeat("")).take(headers.len()));
    }
    s
}

/// A column of a [`grid`]: its header and its cell of an item.
type Col<'a, T> = (&'a str, &'a dyn Fn(&T) -> String);

/// A Markdown table of one row per item.
fn grid<T>(cols: &[Col<T>], items: impl IntoIterator<Item = T>) -> String {
    let rows: Vec<Vec<String>> = items.into_iter().map(|i| cols.iter().map(|(_, cell)| cell(&i)).collect()).collect();
    table(&cols.iter().map(|(h, _)| *h).collect::<Vec<_>>(), &rows)
}

fn bold(s: String) -> String {
    format!("**{s}**")
}

fn dash() -> String {
    "—".to_owned()
}

/// The notes' sections by heading ("" for the text before the first).
fn notes_by_heading(notes: &str) -> HashMap<String, String> {
    let mut by: HashMap<String, String> = HashMap::new();
    let (mut heading, mut comment) = (String::new(), false);
    for line in notes.lines() {
        // HTML comments are notes about the notes: not in the report.
        comment |= line.trim_start().starts_with("<!--");
        if comment {
            comment = !line.contains("-->");
            continue;
        }
        match line.strip_prefix("## ") {
            Some(h) => heading = h.trim().to_owned(),
            None => by.entry(heading.clone()).or_default().push_str(&format!("{line}\n")),
        }
    }
    by
}

fn title(name: &str) -> String {
    let t = ["Idle footprint", "Delivery latency", "Burst", "Recovery", "Relay", "Start", "Cluster"];
    BENCHMARKS.iter().position(|b| *b == name).map_or(name.to_owned(), |i| format!("{}. {}", i + 1, t[i]))
}

fn render(r: &Results, notes: &str) -> String {
    let notes = notes_by_heading(notes);
    let note = |h: &str| notes.get(h).map_or("", |n| n.trim());
    let mut s = String::from(
        "# Benchmarks\n\n<!-- Written by talkbell-bench (crates/bench) from its figures (benchmarks.json beside \
         this file) and the hand-written docs/benchmarks-notes.md: edit the notes, not this file. -->\n\n",
    );
    if r.quick {
        s += "> **A `--quick` smoke run**: sizes are far below the issue's; these figures are not the benchmark.\n\n";
    }
    s += &format!("{}\n\n## The issue's targets\n\n{}", note(""), targets(r));
    s += &format!("## Machine and setup\n\n{}\n{}\n\n", setup(r), note("Machine and setup"));
    for b in &r.benchmarks {
        let title = title(&b.name);
        s += &format!("## {title}\n\n{}\n", b.section.trim_end());
        for t in b.targets.iter().filter(|t| t.met == Some(false)) {
            s += &format!("\n**Missed: {}: {} against {}.**\n", t.what, t.measured, t.target);
        }
        if !note(&title).is_empty() {
            s += &format!("\n{}\n", note(&title));
        }
        s += "\n";
    }
    s
}

fn targets(r: &Results) -> String {
    let all: Vec<&Target> = r.benchmarks.iter().flat_map(|b| &b.targets).collect();
    if all.is_empty() {
        return "(no target measured in this run)\n\n".to_owned();
    }
    let number = |t: &Target| BENCHMARKS.iter().position(|b| *b == t.benchmark).map_or(0, |n| n + 1);
    let verdict = |t: &Target| ["not measured", "met", "**missed**"][t.met.map_or(0, |m| if m { 1 } else { 2 })];
    let cols: &[Col<&Target>] = &[
        ("what", &|t| format!("{}. {}", number(t), t.what)),
        ("target", &|t| t.target.clone()),
        ("measured", &|t| t.measured.clone()),
        ("", &|t| verdict(t).to_owned()),
    ];
    let mut s = grid(cols, all.iter().copied());
    let missed = all.iter().filter(|t| t.met == Some(false)).count();
    if missed > 0 {
        s += &format!("\n{missed} target(s) missed; each benchmark's notes say why.\n");
    }
    s + "\n"
}

fn setup(r: &Results) -> String {
    let (m, z) = (&r.machine, &r.sizes);
    let took: Vec<String> =
        r.benchmarks.iter().map(|b| format!("{} {} ({})", b.name, secs_f(b.took_s), b.date)).collect();
    let sizes = format!(
        "idle {} s; latency {} talks at {}/s; burst {} talks; recovery {} rounds + {} half-open; relay {} idle \
         clients, {} talks to {} clients; start {} runs; cluster a burst of {} and {} at 1,000/s, {} node kills",
        z.idle_secs,
        int(z.latency_talks),
        z.latency_rate,
        int(z.burst_talks),
        z.recovery_rounds,
        z.halfopen_rounds,
        int(z.relay_idle_clients as u64),
        int(z.route_talks),
        int(z.route_clients as u64),
        z.start_runs,
        int(z.cluster_burst),
        int(z.cluster_paced),
        z.cluster_kills
    );
    let rows = [
        ("CPU", format!("{} ({} cores)", m.cpu, m.cores)),
        ("memory", format!("{:.1} GiB", m.mem_total_kib as f64 / 1048576.0)),
        ("kernel", m.kernel.clone()),
        ("OS", m.os.clone()),
        ("rustc", r.rustc.clone()),
        ("date", r.date.clone()),
        ("load average at start / end", format!("{} / {}", r.load_at_start, r.load_at_end)),
        ("sizes", sizes),
        ("relay queue database", r.relay_db.clone()),
        ("app data (history) and logs", r.work.clone()),
        ("open files limit", r.nofile.to_string()),
        ("run time (date of each)", format!("{} ({})", secs_f(r.total_s), took.join(", "))),
    ];
    let rows: Vec<Vec<String>> =
        rows.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| vec![k.to_owned(), v]).collect();
    table(&["", ""], &rows)
}

/// The body of a benchmark's section; its targets go to `t`.
fn body(figures: &Figures, t: &mut Vec<Target>) -> String {
    match figures {
        Figures::Idle(f) => idle_section(f, t),
        Figures::Latency(f) => latency_section(f, t),
        Figures::Burst(f) => burst_section(f, t),
        Figures::Recovery(f) => recovery_section(f, t),
        Figures::Relay(f) => relay_section(f, t),
        Figures::Start(f) => start_section(f),
        Figures::Cluster(f) => cluster_section(f, t),
    }
}

/// Adds a target (its benchmark is filled in by [`Results::add`]).
fn target(t: &mut Vec<Target>, what: impl Into<String>, target: &str, measured: String, met: Option<bool>) {
    let (benchmark, what, target) = (String::new(), what.into(), target.to_owned());
    t.push(Target { benchmark, what, target, measured, met });
}

/// "- name: failed: …" for the parts that failed.
fn failures<'a, T: 'a>(parts: impl IntoIterator<Item = (&'a str, &'a Tried<T>)>) -> String {
    parts.into_iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("- {n}: failed: {e}\n"))).collect()
}

/// The parts that were measured.
fn measured<'a, T>(parts: &'a [(&'a str, &'a Tried<T>)]) -> impl Iterator<Item = (&'a str, &'a T)> {
    parts.iter().filter_map(|(n, r)| Some((*n, r.as_ref().ok()?)))
}

/// "- name: N POSTs failed (first: …)." when some did.
fn posts_failed(name: &str, sent: &crate::sender::Sent) -> String {
    match sent.failed {
        0 => String::new(),
        n => format!("\n- {name}: {n} POSTs failed (first: {}).", sent.first_error.clone().unwrap_or_default()),
    }
}

fn idle_section(f: &idle::Idle, t: &mut Vec<Target>) -> String {
    let secs = f.secs;
    let baseline = f.get("browser").map(|b| b.mem.pss_kib as f64);
    let parts: Vec<(&str, &Tried<idle::Footprint>)> = f.cases.iter().map(|(k, r)| (k.as_str(), r)).collect();
    let cpu = format!("CPU in {secs} s");
    let vs = |k: &str, c: &idle::Footprint| match baseline {
        Some(b) if k != "browser" => format!("{} less", ratio(b, c.mem.pss_kib as f64)),
        _ => dash(),
    };
    let cols: &[Col<(&str, &idle::Footprint)>] = &[
        ("case", &|(_, c)| c.label.clone()),
        ("processes", &|(_, c)| c.processes.clone()),
        ("PSS", &|(_, c)| bold(mb(c.mem.pss_kib))),
        ("peak PSS", &|(_, c)| mb(c.peak_pss_kib)),
        ("USS", &|(_, c)| mb(c.mem.uss_kib)),
        ("RSS", &|(_, c)| mb(c.mem.rss_kib)),
        ("threads", &|(_, c)| c.threads.to_string()),
        (&cpu, &|(_, c)| format!("{:.2} s ({:.2} %)", c.cpu_s, 100.0 * c.cpu_s / secs as f64)),
        ("wake-ups/s", &|(_, c)| format!("{:.1}", c.wakeups_per_s)),
        ("PSS vs baseline", &|(k, c)| vs(k, c)),
    ];
    let mut s = format!("Each case connected, then idle for {secs} s.\n\n{}", grid(cols, measured(&parts)));
    s += &failures(parts.iter().copied());
    for (key, c) in measured(&parts).filter(|(_, c)| c.state_changes > 0) {
        s += &format!("\n- {key}: {} state change(s) while idle", c.state_changes);
    }
    s += "\n- Where the PSS goes (`/proc/PID/smaps`, by mapping):";
    for (key, c) in measured(&parts).filter(|(k, _)| *k != "browser") {
        s += &format!("\n  - {key}: {}.", breakdown_text(c));
    }
    if let Some(c) = f.get("tray") {
        let webkit = match c.webkit.is_empty() {
            true => "no WebKit process alive (its descendants checked every second)".to_owned(),
            false => bold(format!("WebKit processes alive: {}", c.webkit.join(", "))),
        };
        s += &format!("\n- Tray, window closed: {webkit}.");
    }
    if let Some(b) = f.get("browser") {
        let pss = mb(b.mem.pss_kib);
        s += &format!("\n- Baseline: {pss} for one page; ratios are the baseline's PSS over each case's.");
    }
    for (key, what, limit) in [("tray", "tray, window closed", 30.0), ("daemon", "daemon", 10.0)] {
        let pss = f.get(key).map(|c| c.mem.pss_kib);
        let bound = format!("≤ {limit:.0} MB");
        target(t, format!("{what}: PSS"), &bound, pss.map_or("failed".into(), mb), pss.map(|k| mb_f(k) <= limit));
        if let Some(c) = f.get(key).filter(|_| key == "tray") {
            let alive = if c.webkit.is_empty() { "none".into() } else { c.webkit.join(", ") };
            target(t, "tray, window closed: no web view process", "none alive", alive, Some(c.webkit.is_empty()));
        }
        if let Some(x) = f.get(key).and_then(|c| baseline.map(|b| b / c.mem.pss_kib as f64)) {
            let what = format!("{key} vs browser baseline (PSS)");
            target(t, what, "≥ 5× below", format!("{x:.1}× below"), Some(x >= 5.0));
        }
    }
    s + "\n"
}

/// "the Talkbell binary … + heap and anonymous memory … + … of other mapped files (largest: …)".
fn breakdown_text(f: &idle::Footprint) -> String {
    let short = |n: &str| n.find(".so").map_or(n.to_owned(), |i| n[..i + 3].to_owned());
    // `talkbell daemon` runs as talkbell-daemon.
    let own = |n: &str| n == "talkbell" || n == "talkbell-daemon";
    let sum = |pred: &dyn Fn(&str) -> bool| f.breakdown.iter().filter(|(n, _)| pred(n)).map(|(_, k)| k).sum::<u64>();
    let other = |n: &str| !own(n) && !n.starts_with('[');
    let top: Vec<String> =
        f.breakdown.iter().filter(|(n, _)| other(n)).take(6).map(|(n, k)| format!("{} {}", short(n), mb(*k))).collect();
    let (own, heap, other) = (mb(sum(&own)), mb(sum(&|n| n.starts_with('['))), mb(sum(&other)));
    format!(
        "the Talkbell binary {own} + heap and anonymous memory {heap} + {other} of other mapped files (largest: {})",
        top.join(", ")
    )
}

fn latency_section(f: &latency::Latency, t: &mut Vec<Target>) -> String {
    let skipped = Err("skipped (--no-browser)".to_owned());
    let baseline = f.baseline.as_ref().unwrap_or(&skipped);
    let diag = format!("*diagnostic:* Talkbell with its history on {}", f.tmpfs_kind);
    let names = [("app", "Talkbell (`talkbell daemon`)"), ("baseline", "browser baseline (headless Chromium)")];
    let names: HashMap<&str, &str> = names.into_iter().chain([("diagnostic", diag.as_str())]).collect();
    let parts = [("app", &f.app), ("baseline", baseline), ("diagnostic", &f.app_on_tmpfs)];
    let cols: &[Col<(&str, &latency::Measured)>] = &[
        ("client", &|(n, _)| names[n].to_owned()),
        ("sent (achieved rate)", &|(_, m)| format!("{} ({})", int(m.sent.accepted), rate(m.sent.rate()))),
        ("received", &|(_, m)| int(m.received)),
        ("p50", &|(_, m)| m.summary.map_or_else(dash, |x| ms(x.p50))),
        ("p99", &|(_, m)| m.summary.map_or_else(dash, |x| bold(ms(x.p99)))),
        ("max", &|(_, m)| m.summary.map_or_else(dash, |x| ms(x.max))),
        ("mean", &|(_, m)| m.summary.map_or_else(dash, |x| ms(x.mean))),
    ];
    let mut s = format!(
        "{} talks at {}/s over {} keep-alive connections; latency = the client's record − the send time.\n\n{}",
        int(f.talks),
        int(saturating_u64(f.rate)),
        f.connections,
        grid(cols, measured(&parts))
    );
    s += &failures(parts);
    let (a, b) = (f.app.as_ref().ok().and_then(|m| m.summary), baseline.as_ref().ok().and_then(|m| m.summary));
    if let (Some(a), Some(b)) = (a, b) {
        let cmp = |app: f64, base: f64| match app <= base {
            true => format!("{} lower", ratio(base, app)),
            false => format!("{} higher", ratio(app, base)),
        };
        let (p50, p99, max) = (cmp(a.p50, b.p50), cmp(a.p99, b.p99), cmp(a.max, b.max));
        s += &format!("\nThe app against the baseline: p50 {p50}, p99 {p99}, max {max}.\n");
    }
    for (name, m) in measured(&parts) {
        let every = m.slow_run_every.map_or(String::new(), |g| format!(", one every {g:.0} talks (median)"));
        let (slow, over, runs) = (int(m.slow as u64), f.slow_ms, m.slow_runs);
        s += &format!("\n- {name}: {slow} talks over {over} ms, in {runs} runs of consecutive talks{every}.");
        s += &posts_failed(name, &m.sent);
        if m.received < m.sent.accepted {
            let (lost, of) = (m.sent.accepted - m.received, m.sent.accepted);
            s += &format!("\n- {name}: **{lost} of {of} talks never recorded**.");
        }
        s += &format!("\n- {name}: the sender's largest lag behind its schedule: {}.", ms(m.sent.max_lag_ms));
    }
    if let Some(r) = f.app.as_ref().ok().and_then(|m| m.relay_part) {
        let (p50, p99) = (ms(r.p50), ms(r.p99));
        s += &format!(
            "\n- Of the app's latency, send → the relay's stamp (`ts`, whole ms, so ±1 ms): p50 {p50}, p99 {p99}."
        );
    }
    target(t, "delivery p99 (app)", "≤ 5 ms", a.map_or("failed".into(), |a| ms(a.p99)), a.map(|a| a.p99 <= 5.0));
    if let (Some(a), Some(b)) = (a, b) {
        let vs = format!("{} vs {}", ms(a.p99), ms(b.p99));
        target(t, "delivery p99, app vs baseline", "below the baseline's", vs, Some(a.p99 < b.p99));
    }
    s + "\n"
}

fn burst_section(f: &burst::Bursts, t: &mut Vec<Target>) -> String {
    let parts = [("live", &f.live), ("replay", &f.replay)];
    let stored = |b: &burst::Burst| {
        let connected = b.to_connect_s.map_or(String::new(), |c| format!("; connected after {}", secs_f(c)));
        format!("{} ({}{connected})", secs_f(b.all_in_s), int(b.stored))
    };
    let cols: &[Col<(&str, &burst::Burst)>] = &[
        ("run", &|(n, _)| (*n).to_owned()),
        ("relay took (POSTs)", &|(_, b)| {
            format!("{} in {} ({})", int(b.sent.accepted), secs_f(b.sent.elapsed_s), rate(b.sent.rate()))
        }),
        ("all in the history after (stored)", &|(_, b)| stored(b)),
        ("talks/s into the history", &|(_, b)| bold(rate(b.rate))),
        ("CPU: app / relay", &|(_, b)| format!("{:.1} s / {:.1} s", b.app_cpu_s, b.relay_cpu_s)),
        ("peak RSS (VmHWM)", &|(_, b)| mb(b.vm_hwm_kib)),
        ("peak PSS", &|(_, b)| mb(b.peak_pss_kib)),
        ("popups", &|(_, b)| bold(b.popups.len().to_string())),
    ];
    let mut s = format!(
        "{} talks over {} keep-alive connections, relay started with `{}`; {} cores.\n\n{}",
        int(f.talks),
        f.connections,
        f.relay_flags.join(" "),
        f.cores,
        grid(cols, measured(&parts))
    );
    s += &failures(parts);
    for (name, b) in measured(&parts) {
        let shown: Vec<String> = b.popups.iter().take(6).map(|p| format!("“{p}”")).collect();
        let shown = if shown.is_empty() { "none".into() } else { shown.join(", ") };
        let more = match b.popups.len().saturating_sub(6) {
            0 => String::new(),
            more => format!(" and {more} more"),
        };
        s += &format!("\n- {name} popups: {shown}{more}.{}", posts_failed(name, &b.sent));
        if b.to_connect_s.is_none() {
            let after = secs_f((b.all_in_s - b.sent.elapsed_s).max(0.0));
            s += &format!("\n- {name}: the last talk was stored {after} after the last POST was answered.");
        }
    }
    for (name, r) in parts {
        let b = r.as_ref().ok();
        let what = format!("talks/s into the history ({name})");
        target(t, what, "≥ 20,000/s", b.map_or("failed".into(), |b| rate(b.rate)), b.map(|b| b.rate >= 20_000.0));
        if let Some(b) = b {
            let what = if name == "live" { "popups for the burst (live)" } else { "popups for the replay" };
            target(t, what, "≤ 3", b.popups.len().to_string(), Some(b.popups.len() <= 3));
        }
    }
    s + "\n"
}

fn recovery_section(f: &recovery::Recovery, t: &mut Vec<Target>) -> String {
    let (b, o) = (summarize(&f.back_s).unwrap_or_default(), summarize(&f.outage_s).unwrap_or_default());
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    let row = |name: &str, x: Summary, p50: String| {
        vec![name.to_owned(), x.n.to_string(), p50, secs_f(x.max), secs_f(x.min), secs_f(x.mean)]
    };
    let rows = [
        row("relay back → daemon connected", b, bold(secs_f(b.p50))),
        row("relay killed → daemon connected (whole outage)", o, secs_f(o.p50)),
    ];
    let (interval, timeout) = (f.heartbeat_interval_ms, f.heartbeat_timeout_ms);
    let mut s = format!(
        "`talkbell daemon`, heartbeat {interval} ms + {timeout} ms, `healthy_after` {} ms; the relay SIGKILLed and \
         started again {} s later.\n\n{}\nPer round (relay back → connected, s): {}.\n",
        f.healthy_after_ms,
        f.down_s,
        table(&["", "rounds", "p50", "max", "min", "mean"], &rows),
        list(&f.back_s)
    );
    if let Some(d) = summarize(&f.dead_s) {
        let bound = (interval + timeout) as f64 / 1000.0;
        let thaw = secs_f(summarize(&f.after_thaw_s).map_or(0.0, |x| x.max));
        let (p50, max, each, from) = (secs_f(d.p50), secs_f(d.max), list(&f.dead_s), secs_f(timeout as f64 / 1000.0));
        s += &format!(
            "\n**Half-open link** (relay SIGSTOPped), {} round(s): declared dead (`link dead`) after p50 {p50}, max \
             {max} from the SIGSTOP, against a bound of interval + timeout = {bound_s} after the last frame received \
             ({from} to {bound_s} after the freeze). Per round: {each} s. Connected again {thaw} (max) after SIGCONT.\n",
            d.n,
            bound_s = secs_f(bound)
        );
        if d.max > bound + 0.5 {
            s += &format!("\n**The half-open detection exceeded the {bound:.0} s bound.**\n");
        }
    }
    target(t, "reconnect after the relay is back (p50)", "≤ 1.5 s", secs_f(b.p50), Some(b.p50 <= 1.5));
    s
}

fn relay_section(f: &relay_load::RelayLoad, t: &mut Vec<Target>) -> String {
    let mut s = relay_idle(&f.idle, t) + &relay_routing(f);
    match &f.on_disk {
        Ok(d) => {
            s += &format!(
                "**Queue on the disk**: {} talks to one user as fast as the relay takes them, its database on this \
                 machine's disk ({}): **{}**; the same on tmpfs: {}.\n",
                int(d.disk.accepted),
                d.fs,
                rate(d.disk.rate()),
                rate(d.tmpfs.rate())
            );
        }
        Err(e) => s += &format!("Queue on the disk: failed: {e}\n"),
    }
    s
}

fn relay_idle(idle: &Tried<relay_load::Idle>, t: &mut Vec<Target>) -> String {
    match idle {
        Ok(i) => {
            let n = int(i.clients as u64);
            let per = i.after.pss_kib.saturating_sub(i.before.pss_kib) as f64 * 1.024 / i.clients as f64;
            let headers = ["relay", "PSS", "RSS", "peak RSS (VmHWM)", "threads", "CPU while idle", "wake-ups/s"];
            let rows = [
                vec!["started, no client".into(), mb(i.before.pss_kib), mb(i.before.rss_kib)],
                vec![
                    format!("{n} clients connected, idle"),
                    bold(mb(i.after.pss_kib)),
                    mb(i.after.rss_kib),
                    mb(i.hwm_kib),
                    i.threads.to_string(),
                    format!("{:.1} % of a core", 100.0 * i.cpu_s / i.idle_secs as f64),
                    format!("{:.0}", i.wakeups_per_s),
                ],
            ];
            let s = format!(
                "**{n} idle clients** (all connected in {}, then {} s idle):\n\n{}\nAbout {per:.1} KB of PSS per \
                 connection. The clients sent {:.0} heartbeats/s meanwhile, all answered. With {n} users in its \
                 file the relay took {} from its start to listening.\n\n",
                secs_f(i.connect_s),
                i.idle_secs,
                table(&headers, &rows),
                i.heartbeats_per_s,
                secs_f(i.start_took_s)
            );
            let what = format!("relay PSS with {n} idle connections");
            target(t, what, "≤ 200 MB", mb(i.after.pss_kib), Some(mb_f(i.after.pss_kib) <= 200.0));
            s
        }
        Err(e) => {
            target(t, "relay PSS with idle connections", "≤ 200 MB", "failed".into(), None);
            format!("Idle clients: failed: {e}\n\n")
        }
    }
}

fn relay_routing(f: &relay_load::RelayLoad) -> String {
    match &f.routing {
        Ok(r) => {
            let n = int(r.clients as u64);
            let cols: &[Col<&relay_load::Routing>] = &[
                ("talks accepted", &|r| int(r.posted.accepted)),
                ("received by the clients", &|r| int(r.received)),
                ("first POST → last received", &|r| secs_f(r.elapsed_s)),
                ("routed per second", &|r| bold(rate(r.received as f64 / r.elapsed_s))),
                ("relay CPU", &|r| format!("{:.2} cores", r.cpu_s / r.elapsed_s)),
            ];
            let mut s = format!(
                "**Routing to {n} clients**: {} talks from one sender to the {n} users in turn over {} keep-alive \
                 connections.\n\n{}",
                int(r.talks),
                f.connections,
                grid(cols, [r])
            );
            if r.received < r.posted.accepted {
                let lost = int(r.posted.accepted - r.received);
                s += &format!("\n**{lost} accepted talks never reached their client.**\n");
            }
            if r.posted.failed > 0 {
                let first = r.posted.first_error.clone().unwrap_or_default();
                s += &format!("\n{} POSTs failed (first: {first}).\n", r.posted.failed);
            }
            s + "\n"
        }
        Err(e) => format!("Routing: failed: {e}\n\n"),
    }
}

fn start_section(f: &start::Start) -> String {
    let summaries: Vec<(&start::Starts, Summary)> =
        f.modes.iter().filter_map(|m| Some((m, summarize(&m.start_ms)?))).collect();
    let cols: &[Col<&(&start::Starts, Summary)>] = &[
        ("mode", &|(m, _)| m.mode.label().to_owned()),
        ("runs", &|(_, x)| x.n.to_string()),
        ("p50", &|(_, x)| bold(ms(x.p50))),
        ("max", &|(_, x)| ms(x.max)),
        ("min", &|(_, x)| ms(x.min)),
        ("each run (ms)", &|(m, _)| m.start_ms.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ")),
    ];
    let stops: String = (summaries.iter())
        .filter_map(|(m, _)| {
            Some(format!("\n- {}: SIGTERM → exited, p50 {}.", m.mode.label(), ms(summarize(&m.stop_ms)?.p50)))
        })
        .collect();
    let table = grid(cols, &summaries);
    format!("Spawn → the first `state=\"connected\"` line, {} runs each.\n\n{table}{stops}\n", f.runs)
}

/// KB per connection of a memory growth in KiB.
fn kb_per(before_kib: u64, after_kib: u64, n: u64) -> String {
    format!("{:.1} KB", after_kib.saturating_sub(before_kib) as f64 * 1.024 / n.max(1) as f64)
}

fn cluster_section(f: &cluster::Cluster, t: &mut Vec<Target>) -> String {
    let setup = |b| match b {
        cluster::Broker::Redis => format!("3 nodes on Redis {} (`appendfsync always`)", f.redis),
        cluster::Broker::Sqlite => "1 node on SQLite".to_owned(),
    };
    let traffic: Vec<(&str, &Tried<cluster::Traffic>)> = f.traffic.iter().map(|x| ("traffic", x)).collect();
    let cols: &[Col<(&str, &cluster::Traffic)>] = &[
        ("setup", &|(_, x)| setup(x.broker)),
        ("data on", &|(_, x)| x.data.clone()),
        ("burst POSTs taken", &|(_, x)| format!("{} ({})", int(x.burst.accepted), rate(x.burst.rate()))),
        ("end to end (received)", &|(_, x)| format!("{} ({})", bold(rate(x.end_to_end_per_s)), int(x.burst_received))),
        ("p50 at 1,000/s", &|(_, x)| x.latency.summary.map_or_else(dash, |l| ms(l.p50))),
        ("p99", &|(_, x)| x.latency.summary.map_or_else(dash, |l| bold(ms(l.p99)))),
        ("max", &|(_, x)| x.latency.summary.map_or_else(dash, |l| ms(l.max))),
        ("paced received", &|(_, x)| format!("{} of {}", int(x.latency.received), int(x.latency.sent.accepted))),
    ];
    let s = format!(
        "**Traffic**: {} clients on node A; a burst to them round-robin over {} keep-alive connections to the other \
         nodes (to the one node on SQLite), then talks at 1,000/s to one of them posted to node B; latency = received \
         on node A − the send time stamped in the text.\n\n{}{}",
        cluster::CLIENTS,
        cluster::SENDER_CONNECTIONS,
        grid(cols, measured(&traffic)),
        failures(traffic.iter().copied())
    );
    s + &cluster_held(f, &setup) + &cluster_queued(f) + &cluster_loss(f, t)
}

fn cluster_queued(f: &cluster::Cluster) -> String {
    match &f.queued {
        Ok(q) => {
            let [u0, u1, u2] = q.used;
            let (first, further) =
                (u1.saturating_sub(u0) as f64 / q.recipients as f64, u2.saturating_sub(u1) as f64 / q.talks as f64);
            format!(
                "\n**Queued talks in Redis** (recipients not connected; texts of {} bytes): used_memory grew by \
                 **{first:.0} B per recipient** with one talk ({} recipients) and **{further:.0} B per further talk** \
                 ({} more talks for {} of them).\n",
                q.text_bytes,
                int(q.recipients),
                int(q.talks),
                cluster::CLIENTS
            )
        }
        Err(e) => format!("\n- queued talks: failed: {e}\n"),
    }
}

fn cluster_loss(f: &cluster::Cluster, t: &mut Vec<Target>) -> String {
    match &f.node_loss {
        Ok(l) => {
            let sm = |x: Option<Summary>| {
                x.map_or_else(dash, |x| format!("p50 **{}**, max {}", secs_f(x.p50), secs_f(x.max)))
            };
            let s = format!(
                "\n**Loss of a node**: {} clients through HAProxy (resuming from their last seq, reconnecting with \
                 the app's backoff), talks at {:.0}/s to them through HAProxy; {} times a node SIGKILLed and started \
                 again {} later. {} client links were cut: connected to another node after {}; with every talk \
                 accepted for them until then after {} ({} talks missed while away; {} not caught up). {} talks \
                 accepted ({} refused while a node went down), **{} never delivered**.\n",
                l.clients,
                l.rate,
                l.kills,
                secs_f(l.down_s),
                l.affected,
                sm(l.reconnect),
                sm(l.caught_up),
                l.missed,
                l.not_caught_up,
                int(l.posted.accepted),
                l.posted.failed,
                l.lost
            );
            target(t, "cluster: accepted talks lost when nodes die", "0", int(l.lost), Some(l.lost == 0));
            s
        }
        Err(e) => format!("\n- loss of a node: failed: {e}\n"),
    }
}

fn cluster_held(f: &cluster::Cluster, setup: &dyn Fn(cluster::Broker) -> String) -> String {
    let held: Vec<(&str, &Tried<cluster::Held>)> = f.held.iter().map(|h| ("idle connections", h)).collect();
    let sum = |m: &[Mem]| m.iter().fold(Mem::default(), |a, b| a + *b);
    let mem = |h: &cluster::Held| (sum(&h.nodes_before), sum(&h.nodes_after), h.connections);
    let of_idle = |cpu: f64, h: &cluster::Held| format!("{:.1} %", 100.0 * cpu / h.idle_secs.max(1) as f64);
    let processes = |h: &cluster::Held| {
        let es = if h.processes == 1 { "" } else { "es" };
        format!("{} ({} client process{es})", bold(int(h.connections)), h.processes)
    };
    let cols: &[Col<(&str, &cluster::Held)>] = &[
        ("setup", &|(_, h)| setup(h.broker)),
        ("path", &|(_, h)| h.path.clone()),
        ("idle connections", &|(_, h)| processes(h)),
        ("connected in", &|(_, h)| secs_f(h.connect_s)),
        ("nodes' PSS", &|(_, h)| format!("{} → {}", mb(mem(h).0.pss_kib), mb(mem(h).1.pss_kib))),
        ("PSS per connection", &|(_, h)| bold(kb_per(mem(h).0.pss_kib, mem(h).1.pss_kib, h.connections))),
        ("RSS per connection", &|(_, h)| kb_per(mem(h).0.rss_kib, mem(h).1.rss_kib, h.connections)),
        ("Redis per connection", &|(_, h)| {
            h.redis_used
                .map_or_else(dash, |(x, y)| format!("{:.0} B", y.saturating_sub(x) as f64 / h.connections as f64))
        }),
        ("HAProxy PSS per connection", &|(_, h)| {
            h.haproxy.map_or_else(dash, |(x, y)| kb_per(x.pss_kib, y.pss_kib, h.connections))
        }),
        ("nodes' CPU while idle (of a core)", &|(_, h)| of_idle(h.idle_cpu_s, h)),
        ("Redis's CPU while idle", &|(_, h)| h.redis_idle_cpu_s.map_or_else(dash, |c| of_idle(c, h))),
    ];
    format!(
        "\n**Idle connections** (open files: {} per process), held by client processes of their own, each from its own \
         127.0.0.x address, sending a heartbeat after 30 s of silence; memory before and after, summed over the \
         nodes.\n\n{}{}",
        int(f.nofile),
        grid(cols, measured(&held)),
        failures(held.iter().copied())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_a_row_per_item_and_pad_short_rows() {
        assert_eq!(table(&["a", "b"], &[vec!["1".into()]]), "| a | b |\n| --- | --- |\n| 1 |  |\n");
        let cols: &[Col<&(u64, &str)>] = &[("n", &|x| int(x.0)), ("name", &|x| bold(x.1.to_owned()))];
        assert_eq!(grid(cols, &[(1000, "x")]), "| n | name |\n| --- | --- |\n| 1,000 | **x** |\n");
    }

    #[test]
    fn an_earlier_json_lends_the_benchmarks_it_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("benchmarks.json");
        let ran = |name: &str, section: &str| serde_json::json!({"name": name, "took_s": 1.0, "figures": null, "error": null, "section": section});
        let all = serde_json::json!({"benchmarks": [ran("idle", "Idle."), ran("burst", ""), ran("gone", "Old.")]});
        std::fs::write(&json, all.to_string()).unwrap();
        let kept = previous(&json);
        assert_eq!(kept.iter().map(|b| (b.name.as_str(), b.section.as_str())).collect::<Vec<_>>(), [("idle", "Idle.")]);
        assert!(previous(&dir.path().join("none.json")).is_empty());
    }
}
