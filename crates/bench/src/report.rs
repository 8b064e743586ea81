//! The one renderer: every benchmark's figures ([`Results`], also written as JSON) as the
//! Markdown report — the issue's targets first, the machine and the setup, then one section
//! per benchmark. Only measured facts are rendered here ("missed: 10,851/s against
//! ≥ 20,000/s"); what explains them is hand-written in docs/benchmarks-notes.md, whose
//! `## ` sections are woven in under the generated sections of the same title (its text
//! before the first heading goes under the introduction), so that prose which would go
//! stale with the next run is not in the code. The benchmarks a run leaves out keep their
//! sections from the report being rewritten ([`crate::carry`]).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use talkbell_testkit::procfs::{self, Machine, Mem};

use crate::stats::{int, mb, mb_f, ms, rate, ratio, secs_f, summarize};
use crate::suite::{burst, cluster, idle, latency, recovery, relay_load, start, Figures, Tried};
use crate::{Env, Sizes, BENCHMARKS};

/// One benchmark's run: its figures, and its section of the report and its targets as
/// rendered then (so that a later run of other benchmarks keeps them).
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
    /// Where the section was taken from when it was not rendered from figures (an earlier
    /// report's Markdown, its notes already in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<String>,
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

/// One of the issue's targets and what was measured.
#[derive(Serialize, Deserialize)]
pub struct Target {
    pub benchmark: String,
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measured (the benchmark or its part failed).
    pub met: Option<bool>,
}

impl Results {
    /// This run's, starting with the benchmarks of an earlier report (`kept`), which those
    /// of this run replace.
    pub fn new(env: &Env, nofile: u64, kept: Vec<Ran>) -> Results {
        let place = |p: &Path| format!("{} ({})", p.display(), procfs::fs_type(p));
        Results {
            machine: procfs::machine(),
            rustc: env!("TALKBELL_BENCH_RUSTC").to_owned(),
            date: now_utc(),
            load_at_start: procfs::loadavg(),
            load_at_end: procfs::loadavg(),
            nofile,
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
        let (section, targets) = section(name, figures.as_ref(), error.as_deref());
        let figures = figures.and_then(|f| serde_json::to_value(f).ok());
        let (name, took_s, date) = (name.to_owned(), took.as_secs_f64(), now_utc());
        let ran = Ran { name, took_s, date, figures, error, section, targets, copied_from: None };
        self.benchmarks.retain(|b| b.name != ran.name);
        self.benchmarks.push(ran);
        let place = |b: &Ran| BENCHMARKS.iter().position(|n| *n == b.name).unwrap_or(usize::MAX);
        self.benchmarks.sort_by_key(place);
        self.total_s = total.as_secs_f64();
        self.load_at_end = procfs::loadavg();
    }
}

pub fn now_utc() -> String {
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]).output();
    date.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

/// Writes the Markdown report to `out` and the figures (with the targets) to `json`.
pub fn write(results: &Results, notes: &str, out: &Path, json: &Path) -> Result<()> {
    let targets: Vec<&Target> = results.benchmarks.iter().flat_map(|b| &b.targets).collect();
    for path in [out, json] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
    }
    #[derive(Serialize)]
    struct Json<'a> {
        #[serde(flatten)]
        results: &'a Results,
        targets: &'a [&'a Target],
    }
    let text = serde_json::to_string_pretty(&Json { results, targets: &targets })?;
    std::fs::write(json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(out, render(results, notes)).with_context(|| format!("writing {}", out.display()))
}

/// A Markdown table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: Vec<&str>| format!("| {} |\n", cells.join(" | "));
    let mut s = line(headers.to_vec()) + &line(headers.iter().map(|_| "---").collect());
    for r in rows {
        s += &line(r.iter().map(String::as_str).collect());
    }
    s
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

pub fn title(name: &str) -> String {
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
    s += &format!("{}\n\n## The issue's targets\n\n", note(""));
    let mut rows = Vec::new();
    for (i, t) in r.benchmarks.iter().flat_map(|b| &b.targets).enumerate() {
        let verdict = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let n = BENCHMARKS.iter().position(|b| *b == t.benchmark).map_or(i, |n| n + 1);
        rows.push(vec![format!("{n}. {}", t.what), t.target.clone(), t.measured.clone(), verdict.to_owned()]);
    }
    if rows.is_empty() {
        s += "(no target measured in this run)\n\n";
    } else {
        s += &table(&["what", "target", "measured", ""], &rows);
        let missed = r.benchmarks.iter().flat_map(|b| &b.targets).filter(|t| t.met == Some(false)).count();
        if missed > 0 {
            s += &format!("\n{missed} target(s) missed; each benchmark's notes say why.\n");
        }
        s += "\n";
    }

    let (m, z) = (&r.machine, &r.sizes);
    let (ran, copied): (Vec<&Ran>, Vec<&Ran>) = r.benchmarks.iter().partition(|b| b.copied_from.is_none());
    let took: Vec<String> = ran.iter().map(|b| format!("{} {} ({})", b.name, secs_f(b.took_s), b.date)).collect();
    let copied: Vec<String> =
        copied.iter().map(|b| format!("{} ({})", b.name, b.copied_from.as_deref().unwrap_or(""))).collect();
    let mut rows = vec![
        vec!["CPU".into(), format!("{} ({} cores)", m.cpu, m.cores)],
        vec!["memory".into(), format!("{:.1} GiB", m.mem_total_kib as f64 / 1048576.0)],
        vec!["kernel".into(), m.kernel.clone()],
        vec!["OS".into(), m.os.clone()],
        vec!["rustc".into(), r.rustc.clone()],
        vec!["date".into(), r.date.clone()],
        vec!["load average at start / end".into(), format!("{} / {}", r.load_at_start, r.load_at_end)],
        vec![
            "sizes".into(),
            format!(
            "idle {} s; latency {} talks at {}/s; burst {} talks; recovery {} rounds + {} half-open; relay {} idle \
             clients, {} talks to {} clients; start {} runs; cluster a burst of {} and {} at 1,000/s, {} node kills",
            z.idle_secs, int(z.latency_talks), z.latency_rate, int(z.burst_talks), z.recovery_rounds,
            z.halfopen_rounds, int(z.relay_idle_clients as u64), int(z.route_talks), int(z.route_clients as u64),
            z.start_runs, int(z.cluster_burst), int(z.cluster_paced), z.cluster_kills
        ),
        ],
        vec!["relay queue database".into(), r.relay_db.clone()],
        vec!["app data (history) and logs".into(), r.work.clone()],
        vec!["open files limit".into(), r.nofile.to_string()],
        vec!["run time (date of each)".into(), format!("{} ({})", secs_f(r.total_s), took.join(", "))],
        vec!["sections kept from an earlier report".into(), copied.join(", ")],
    ];
    rows.retain(|row| !row[1].is_empty());
    s += &format!("## Machine and setup\n\n{}\n{}\n\n", table(&["", ""], &rows), note("Machine and setup"));

    for b in &r.benchmarks {
        let title = title(&b.name);
        s += &format!("## {title}\n\n{}\n", b.section.trim_end());
        if b.copied_from.is_some() {
            s += "\n";
            continue;
        }
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

/// The body of a benchmark's section and its targets.
fn section(name: &str, figures: Option<&Figures>, error: Option<&str>) -> (String, Vec<Target>) {
    let mut targets = Vec::new();
    let mut target = |what: &str, target: &str, measured: String, met: Option<bool>| {
        let (benchmark, what, target) = (name.to_owned(), what.to_owned(), target.to_owned());
        targets.push(Target { benchmark, what, target, measured, met });
    };
    let body = match figures {
        Some(Figures::Idle(f)) => idle_section(f, &mut target),
        Some(Figures::Latency(f)) => latency_section(f, &mut target),
        Some(Figures::Burst(f)) => burst_section(f, &mut target),
        Some(Figures::Recovery(f)) => recovery_section(f, &mut target),
        Some(Figures::Relay(f)) => relay_section(f, &mut target),
        Some(Figures::Start(f)) => start_section(f),
        Some(Figures::Cluster(f)) => cluster_section(f, &mut target),
        None => String::new(),
    };
    let failed = error.map_or(String::new(), |e| format!("\n**This benchmark failed:**\n\n```text\n{e}\n```\n"));
    (body + &failed, targets)
}

type TargetFn<'a> = dyn FnMut(&str, &str, String, Option<bool>) + 'a;

/// "- name: failed: …" for the parts that failed.
fn failures<'a, T: 'a>(parts: impl IntoIterator<Item = (&'a str, &'a Tried<T>)>) -> String {
    parts.into_iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("- {n}: failed: {e}\n"))).collect()
}

fn idle_section(f: &idle::Idle, target: &mut TargetFn) -> String {
    let secs = f.secs;
    let baseline = f.get("browser").map(|b| b.mem.pss_kib as f64);
    let rows: Vec<Vec<String>> = (f.cases.iter())
        .filter_map(|(key, r)| Some((key, r.as_ref().ok()?)))
        .map(|(key, c)| {
            vec![
                c.label.clone(),
                c.processes.clone(),
                format!("**{}**", mb(c.mem.pss_kib)),
                mb(c.peak_pss_kib),
                mb(c.mem.uss_kib),
                mb(c.mem.rss_kib),
                c.threads.to_string(),
                format!("{:.2} s ({:.2} %)", c.cpu_s, 100.0 * c.cpu_s / secs as f64),
                format!("{:.1}", c.wakeups_per_s),
                match baseline {
                    Some(b) if key != "browser" => format!("{} less", ratio(b, c.mem.pss_kib as f64)),
                    _ => "—".into(),
                },
            ]
        })
        .collect();
    let cpu = format!("CPU in {secs} s");
    let headers =
        ["case", "processes", "PSS", "peak PSS", "USS", "RSS", "threads", &cpu, "wake-ups/s", "PSS vs baseline"];
    let mut s = format!("Each case connected, then idle for {secs} s.\n\n{}", table(&headers, &rows));
    s += &failures(f.cases.iter().map(|(k, r)| (k.as_str(), r)));
    for (key, c) in f.cases.iter().filter_map(|(k, r)| Some((k, r.as_ref().ok()?))) {
        if c.state_changes > 0 {
            let _ = write!(s, "\n- {key}: {} state change(s) while idle", c.state_changes);
        }
    }
    s += "\n- Where the PSS goes (`/proc/PID/smaps`, by mapping):";
    for (key, c) in f.cases.iter().filter(|(k, _)| k != "browser").filter_map(|(k, r)| Some((k, r.as_ref().ok()?))) {
        let _ = write!(s, "\n  - {key}: {}.", breakdown_text(c));
    }
    if let Some(t) = f.get("tray") {
        let webkit = match t.webkit.is_empty() {
            true => "no WebKit process alive (its descendants checked every second)".to_owned(),
            false => format!("**WebKit processes alive: {}**", t.webkit.join(", ")),
        };
        let _ = write!(s, "\n- Tray, window closed: {webkit}.");
    }
    if let Some(b) = f.get("browser") {
        let _ = write!(
            s,
            "\n- Baseline: {} for one page; ratios are the baseline's PSS over each case's.",
            mb(b.mem.pss_kib)
        );
    }
    let below = |c: &idle::Footprint| baseline.map(|b| b / c.mem.pss_kib as f64);
    for (key, what, limit) in [("tray", "tray, window closed", 30.0), ("daemon", "daemon", 10.0)] {
        let pss = f.get(key).map(|c| c.mem.pss_kib);
        let bound = format!("≤ {limit:.0} MB");
        target(&format!("{what}: PSS"), &bound, pss.map_or("failed".into(), mb), pss.map(|k| mb_f(k) <= limit));
        if let Some(c) = f.get(key).filter(|_| key == "tray") {
            let alive = if c.webkit.is_empty() { "none".into() } else { c.webkit.join(", ") };
            target("tray, window closed: no web view process", "none alive", alive, Some(c.webkit.is_empty()));
        }
        if let Some(x) = f.get(key).and_then(below) {
            target(&format!("{key} vs browser baseline (PSS)"), "≥ 5× below", format!("{x:.1}× below"), Some(x >= 5.0));
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
    format!(
        "the Talkbell binary {} + heap and anonymous memory {} + {} of other mapped files (largest: {})",
        mb(sum(&own)),
        mb(sum(&|n| n.starts_with('['))),
        mb(sum(&other)),
        top.join(", ")
    )
}

fn latency_section(f: &latency::Latency, target: &mut TargetFn) -> String {
    let baseline_skipped = Err("skipped (--no-browser)".to_owned());
    let baseline = f.baseline.as_ref().unwrap_or(&baseline_skipped);
    let diag = format!("*diagnostic:* Talkbell with its history on {}", f.tmpfs_kind);
    let cases = [
        ("app", "Talkbell (`talkbell daemon`)", &f.app),
        ("baseline", "browser baseline (headless Chromium)", baseline),
        ("diagnostic", diag.as_str(), &f.app_on_tmpfs),
    ];
    let dash = || "—".to_owned();
    let rows: Vec<Vec<String>> = (cases.iter())
        .filter_map(|(_, name, r)| Some((name, r.as_ref().ok()?)))
        .map(|(name, m)| {
            let x = m.summary;
            vec![
                (*name).to_owned(),
                format!("{} ({})", int(m.sent.accepted), rate(m.sent.rate())),
                int(m.received),
                x.map_or_else(dash, |x| ms(x.p50)),
                x.map_or_else(dash, |x| format!("**{}**", ms(x.p99))),
                x.map_or_else(dash, |x| ms(x.max)),
                x.map_or_else(dash, |x| ms(x.mean)),
            ]
        })
        .collect();
    let mut s = format!(
        "{} talks at {}/s over {} keep-alive connections; latency = the client's record − the send time.\n\n{}",
        int(f.talks),
        int(crate::stats::saturating_u64(f.rate)),
        f.connections,
        table(&["client", "sent (achieved rate)", "received", "p50", "p99", "max", "mean"], &rows)
    );
    s += &failures(cases.iter().map(|(n, _, r)| (*n, *r)));
    let (a, b) = (f.app.as_ref().ok().and_then(|m| m.summary), baseline.as_ref().ok().and_then(|m| m.summary));
    if let (Some(a), Some(b)) = (a, b) {
        let cmp = |app: f64, base: f64| match app <= base {
            true => format!("{} lower", ratio(base, app)),
            false => format!("{} higher", ratio(app, base)),
        };
        let _ = writeln!(
            s,
            "\nThe app against the baseline: p50 {}, p99 {}, max {}.",
            cmp(a.p50, b.p50),
            cmp(a.p99, b.p99),
            cmp(a.max, b.max)
        );
    }
    for (name, m) in cases.iter().filter_map(|(n, _, r)| Some((n, r.as_ref().ok()?))) {
        let every = m.slow_run_every.map_or(String::new(), |g| format!(", one every {g:.0} talks (median)"));
        let _ = write!(
            s,
            "\n- {name}: {} talks over {} ms, in {} runs of consecutive talks{every}.",
            int(m.slow as u64),
            f.slow_ms,
            m.slow_runs
        );
        if m.sent.failed > 0 {
            let _ = write!(
                s,
                "\n- {name}: {} POSTs failed (first: {}).",
                m.sent.failed,
                m.sent.first_error.clone().unwrap_or_default()
            );
        }
        if m.received < m.sent.accepted {
            let _ = write!(
                s,
                "\n- {name}: **{} of {} talks never recorded**.",
                m.sent.accepted - m.received,
                m.sent.accepted
            );
        }
        let _ = write!(s, "\n- {name}: the sender's largest lag behind its schedule: {}.", ms(m.sent.max_lag_ms));
    }
    if let Some(r) = f.app.as_ref().ok().and_then(|m| m.relay_part) {
        let _ = write!(
            s,
            "\n- Of the app's latency, send → the relay's stamp (`ts`, whole ms, so ±1 ms): p50 {}, p99 {}.",
            ms(r.p50),
            ms(r.p99)
        );
    }
    target("delivery p99 (app)", "≤ 5 ms", a.map_or("failed".into(), |a| ms(a.p99)), a.map(|a| a.p99 <= 5.0));
    if let (Some(a), Some(b)) = (a, b) {
        target(
            "delivery p99, app vs baseline",
            "below the baseline's",
            format!("{} vs {}", ms(a.p99), ms(b.p99)),
            Some(a.p99 < b.p99),
        );
    }
    s + "\n"
}

fn burst_section(f: &burst::Bursts, target: &mut TargetFn) -> String {
    let runs = [("live", &f.live), ("replay", &f.replay)];
    let rows: Vec<Vec<String>> = (runs.iter())
        .filter_map(|(n, r)| Some((n, r.as_ref().ok()?)))
        .map(|(name, b)| {
            let connected = b.to_connect_s.map_or(String::new(), |c| format!("; connected after {}", secs_f(c)));
            vec![
                (*name).to_owned(),
                format!("{} in {} ({})", int(b.sent.accepted), secs_f(b.sent.elapsed_s), rate(b.sent.rate())),
                format!("{} ({}{connected})", secs_f(b.all_in_s), int(b.stored)),
                format!("**{}**", rate(b.rate)),
                format!("{:.1} s / {:.1} s", b.app_cpu_s, b.relay_cpu_s),
                mb(b.vm_hwm_kib),
                mb(b.peak_pss_kib),
                format!("**{}**", b.popups.len()),
            ]
        })
        .collect();
    let headers = [
        "run",
        "relay took (POSTs)",
        "all in the history after (stored)",
        "talks/s into the history",
        "CPU: app / relay",
        "peak RSS (VmHWM)",
        "peak PSS",
        "popups",
    ];
    let mut s = format!(
        "{} talks over {} keep-alive connections, relay started with `{}`; {} cores.\n\n{}",
        int(f.talks),
        f.connections,
        f.relay_flags.join(" "),
        f.cores,
        table(&headers, &rows)
    );
    s += &failures(runs);
    for (name, b) in runs.iter().filter_map(|(n, r)| Some((n, r.as_ref().ok()?))) {
        let more = b.popups.len().saturating_sub(6);
        let shown: Vec<String> = b.popups.iter().take(6).map(|p| format!("“{p}”")).collect();
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        let _ =
            write!(s, "\n- {name} popups: {}{more}.", if shown.is_empty() { "none".into() } else { shown.join(", ") });
        if b.sent.failed > 0 {
            let _ = write!(
                s,
                "\n- {name}: {} POSTs failed (first: {}).",
                b.sent.failed,
                b.sent.first_error.clone().unwrap_or_default()
            );
        }
        if b.to_connect_s.is_none() {
            let after = (b.all_in_s - b.sent.elapsed_s).max(0.0);
            let _ =
                write!(s, "\n- {name}: the last talk was stored {} after the last POST was answered.", secs_f(after));
        }
    }
    for (name, r) in runs {
        let b = r.as_ref().ok();
        let what = if name == "live" { "talks/s into the history (live)" } else { "talks/s into the history (replay)" };
        target(what, "≥ 20,000/s", b.map_or("failed".into(), |b| rate(b.rate)), b.map(|b| b.rate >= 20_000.0));
        if let Some(b) = b {
            let what = if name == "live" { "popups for the burst (live)" } else { "popups for the replay" };
            target(what, "≤ 3", b.popups.len().to_string(), Some(b.popups.len() <= 3));
        }
    }
    s + "\n"
}

fn recovery_section(f: &recovery::Recovery, target: &mut TargetFn) -> String {
    let (b, o) = (summarize(&f.back_s).unwrap_or_default(), summarize(&f.outage_s).unwrap_or_default());
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
    let row = |name: &str, x: crate::stats::Summary, bold: bool| {
        let p50 = if bold { format!("**{}**", secs_f(x.p50)) } else { secs_f(x.p50) };
        vec![name.to_owned(), x.n.to_string(), p50, secs_f(x.max), secs_f(x.min), secs_f(x.mean)]
    };
    let mut s = format!(
        "`talkbell daemon`, heartbeat {} ms + {} ms, `healthy_after` {} ms; the relay SIGKILLed and started again \
         {} s later.\n\n{}\nPer round (relay back → connected, s): {}.\n",
        f.heartbeat_interval_ms,
        f.heartbeat_timeout_ms,
        f.healthy_after_ms,
        f.down_s,
        table(
            &["", "rounds", "p50", "max", "min", "mean"],
            &[
                row("relay back → daemon connected", b, true),
                row("relay killed → daemon connected (whole outage)", o, false),
            ]
        ),
        list(&f.back_s)
    );
    if let Some(d) = summarize(&f.dead_s) {
        let bound = (f.heartbeat_interval_ms + f.heartbeat_timeout_ms) as f64 / 1000.0;
        let thaw = summarize(&f.after_thaw_s).map_or(0.0, |x| x.max);
        let _ =
            writeln!(
            s,
            "\n**Half-open link** (relay SIGSTOPped), {} round(s): declared dead (`link dead`) after p50 {}, max {} \
             from the SIGSTOP, against a bound of interval + timeout = {} after the last frame received ({} to {} \
             after the freeze). Per round: {} s. Connected again {} (max) after SIGCONT.",
            d.n, secs_f(d.p50), secs_f(d.max), secs_f(bound),
            secs_f(f.heartbeat_timeout_ms as f64 / 1000.0), secs_f(bound), list(&f.dead_s), secs_f(thaw)
        );
        if d.max > bound + 0.5 {
            let _ = writeln!(s, "\n**The half-open detection exceeded the {bound:.0} s bound.**");
        }
    }
    target("reconnect after the relay is back (p50)", "≤ 1.5 s", secs_f(b.p50), Some(b.p50 <= 1.5));
    s
}

fn relay_section(f: &relay_load::RelayLoad, target: &mut TargetFn) -> String {
    let mut s = String::new();
    match &f.idle {
        Ok(i) => {
            let per = i.after.pss_kib.saturating_sub(i.before.pss_kib) as f64 * 1024.0 / i.clients as f64;
            let blank = || String::new();
            let _ = write!(
                s,
                "**{} idle clients** (all connected in {}, then {} s idle):\n\n{}\nAbout {:.1} KB of PSS per \
                 connection. The clients sent {:.0} heartbeats/s meanwhile, all answered. With {} users in its \
                 file the relay took {} from its start to listening.\n\n",
                int(i.clients as u64),
                secs_f(i.connect_s),
                i.idle_secs,
                table(
                    &["relay", "PSS", "RSS", "peak RSS (VmHWM)", "threads", "CPU while idle", "wake-ups/s"],
                    &[
                        vec![
                            "started, no client".into(),
                            mb(i.before.pss_kib),
                            mb(i.before.rss_kib),
                            blank(),
                            blank(),
                            blank(),
                            blank()
                        ],
                        vec![
                            format!("{} clients connected, idle", int(i.clients as u64)),
                            format!("**{}**", mb(i.after.pss_kib)),
                            mb(i.after.rss_kib),
                            mb(i.hwm_kib),
                            i.threads.to_string(),
                            format!("{:.1} % of a core", 100.0 * i.cpu_s / i.idle_secs as f64),
                            format!("{:.0}", i.wakeups_per_s),
                        ],
                    ]
                ),
                per / 1000.0,
                i.heartbeats_per_s,
                int(i.clients as u64),
                secs_f(i.start_took_s)
            );
            let what = format!("relay PSS with {} idle connections", int(i.clients as u64));
            target(&what, "≤ 200 MB", mb(i.after.pss_kib), Some(mb_f(i.after.pss_kib) <= 200.0));
        }
        Err(e) => {
            let _ = write!(s, "Idle clients: failed: {e}\n\n");
            target("relay PSS with idle connections", "≤ 200 MB", "failed".into(), None);
        }
    }
    match &f.routing {
        Ok(r) => {
            let _ = write!(
                s,
                "**Routing to {} clients**: {} talks from one sender to the {} users in turn over {} keep-alive \
                 connections.\n\n{}",
                int(r.clients as u64),
                int(r.talks),
                int(r.clients as u64),
                f.connections,
                table(
                    &[
                        "talks accepted",
                        "received by the clients",
                        "first POST → last received",
                        "routed per second",
                        "relay CPU"
                    ],
                    &[vec![
                        int(r.posted.accepted),
                        int(r.received),
                        secs_f(r.elapsed_s),
                        format!("**{}**", rate(r.received as f64 / r.elapsed_s)),
                        format!("{:.2} cores", r.cpu_s / r.elapsed_s),
                    ]]
                )
            );
            if r.received < r.posted.accepted {
                let _ = writeln!(
                    s,
                    "\n**{} accepted talks never reached their client.**",
                    int(r.posted.accepted - r.received)
                );
            }
            if r.posted.failed > 0 {
                let _ = writeln!(
                    s,
                    "\n{} POSTs failed (first: {}).",
                    r.posted.failed,
                    r.posted.first_error.clone().unwrap_or_default()
                );
            }
            s += "\n";
        }
        Err(e) => s += &format!("Routing: failed: {e}\n\n"),
    }
    match &f.on_disk {
        Ok(d) => {
            let _ =
                writeln!(
                s,
                "**Queue on the disk**: {} talks to one user as fast as the relay takes them, its database on this \
                 machine's disk ({}): **{}**; the same on tmpfs: {}.",
                int(d.disk.accepted), d.fs, rate(d.disk.rate()), rate(d.tmpfs.rate())
            );
        }
        Err(e) => s += &format!("Queue on the disk: failed: {e}\n"),
    }
    s
}

fn start_section(f: &start::Start) -> String {
    let mut rows = Vec::new();
    let mut stops = String::new();
    for m in &f.modes {
        let Some(x) = summarize(&m.start_ms) else { continue };
        let each = m.start_ms.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(", ");
        rows.push(vec![
            m.mode.label().to_owned(),
            x.n.to_string(),
            format!("**{}**", ms(x.p50)),
            ms(x.max),
            ms(x.min),
            each,
        ]);
        if let Some(stop) = summarize(&m.stop_ms) {
            let _ = write!(stops, "\n- {}: SIGTERM → exited, p50 {}.", m.mode.label(), ms(stop.p50));
        }
    }
    format!(
        "Spawn → the first `state=\"connected\"` line, {} runs each.\n\n{}{stops}\n",
        f.runs,
        table(&["mode", "runs", "p50", "max", "min", "each run (ms)"], &rows)
    )
}

/// Bytes per connection of a memory growth in KiB.
fn per(before_kib: u64, after_kib: u64, n: u64) -> f64 {
    after_kib.saturating_sub(before_kib) as f64 * 1024.0 / n.max(1) as f64
}

fn kb(bytes: f64) -> String {
    format!("{:.1} KB", bytes / 1e3)
}

/// The setup a row of the cluster's tables is of.
fn setup(f: &cluster::Cluster, b: cluster::Broker) -> String {
    match b {
        cluster::Broker::Redis => format!("3 nodes on Redis {} (`appendfsync always`)", f.redis),
        cluster::Broker::Sqlite => "1 node on SQLite".to_owned(),
    }
}

fn dash() -> String {
    "—".to_owned()
}

fn cluster_traffic(f: &cluster::Cluster) -> String {
    let setup = |b| setup(f, b);
    let rows: Vec<Vec<String>> = (f.traffic.iter().filter_map(|t| t.as_ref().ok()))
        .map(|t| {
            let l = t.latency.summary;
            vec![
                setup(t.broker),
                t.data.clone(),
                format!("{} ({})", int(t.burst.accepted), rate(t.burst.rate())),
                format!("**{}** ({})", rate(t.end_to_end_per_s), int(t.burst_received)),
                l.map_or_else(dash, |l| ms(l.p50)),
                l.map_or_else(dash, |l| format!("**{}**", ms(l.p99))),
                l.map_or_else(dash, |l| ms(l.max)),
                format!("{} of {}", int(t.latency.received), int(t.latency.sent.accepted)),
            ]
        })
        .collect();
    let headers = [
        "setup",
        "data on",
        "burst POSTs taken",
        "end to end (received)",
        "p50 at 1,000/s",
        "p99",
        "max",
        "paced received",
    ];
    let s = format!(
        "**Traffic**: {} clients on node A; a burst to them round-robin over {} keep-alive connections to the other \
         nodes (to the one node on SQLite), then talks at 1,000/s to one of them posted to node B; latency = received \
         on node A − the send time stamped in the text.\n\n{}",
        cluster::CLIENTS,
        cluster::SENDER_CONNECTIONS,
        table(&headers, &rows)
    );
    s + &failures(f.traffic.iter().map(|t| ("traffic", t)))
}

fn cluster_held(f: &cluster::Cluster) -> String {
    let setup = |b| setup(f, b);
    let rows: Vec<Vec<String>> = (f.held.iter().filter_map(|h| h.as_ref().ok()))
        .map(|h| {
            let sum = |m: &[Mem]| m.iter().fold(Mem::default(), |a, b| a + *b);
            let (b, a, n) = (sum(&h.nodes_before), sum(&h.nodes_after), h.connections);
            vec![
                setup(h.broker),
                h.path.clone(),
                format!("**{}** ({} client process{})", int(n), h.processes, if h.processes == 1 { "" } else { "es" }),
                secs_f(h.connect_s),
                format!("{} → {}", mb(b.pss_kib), mb(a.pss_kib)),
                format!("**{}**", kb(per(b.pss_kib, a.pss_kib, n))),
                kb(per(b.rss_kib, a.rss_kib, n)),
                h.redis_used.map_or_else(dash, |(x, y)| format!("{:.0} B", y.saturating_sub(x) as f64 / n as f64)),
                h.haproxy.map_or_else(dash, |(x, y)| kb(per(x.pss_kib, y.pss_kib, n))),
                format!("{:.1} %", 100.0 * h.idle_cpu_s / h.idle_secs.max(1) as f64),
                h.redis_idle_cpu_s.map_or_else(dash, |c| format!("{:.1} %", 100.0 * c / h.idle_secs.max(1) as f64)),
            ]
        })
        .collect();
    let headers = [
        "setup",
        "path",
        "idle connections",
        "connected in",
        "nodes' PSS",
        "PSS per connection",
        "RSS per connection",
        "Redis per connection",
        "HAProxy PSS per connection",
        "nodes' CPU while idle (of a core)",
        "Redis's CPU while idle",
    ];
    let s = format!(
        "\n**Idle connections** (open files: {} per process), held by client processes of their own, each from its own \
         127.0.0.x address, sending a heartbeat after 30 s of silence; memory before and after, summed over the \
         nodes.\n\n{}",
        int(f.nofile),
        table(&headers, &rows)
    );
    s + &failures(f.held.iter().map(|h| ("idle connections", h)))
}

fn cluster_section(f: &cluster::Cluster, target: &mut TargetFn) -> String {
    let mut s = cluster_traffic(f) + &cluster_held(f);
    match &f.queued {
        Ok(q) => {
            let [u0, u1, u2] = q.used;
            let _ = writeln!(
                s,
                "\n**Queued talks in Redis** (recipients not connected; texts of {} bytes): used_memory grew by \
                 **{:.0} B per recipient** with one talk ({} recipients) and **{:.0} B per further talk** ({} more talks for {} of them).",
                q.text_bytes,
                u1.saturating_sub(u0) as f64 / q.recipients as f64,
                int(q.recipients),
                u2.saturating_sub(u1) as f64 / q.talks as f64,
                int(q.talks),
                cluster::CLIENTS
            );
        }
        Err(e) => s += &format!("\n- queued talks: failed: {e}\n"),
    }
    match &f.node_loss {
        Ok(l) => {
            let sm = |x: Option<crate::stats::Summary>| {
                x.map_or_else(dash, |x| format!("p50 **{}**, max {}", secs_f(x.p50), secs_f(x.max)))
            };
            let _ =
                writeln!(
                s,
                "\n**Loss of a node**: {} clients through HAProxy (resuming from their last seq, reconnecting with \
                 the app's backoff), talks at {:.0}/s to them through HAProxy; {} times a node SIGKILLed and started \
                 again {} later. {} client links were cut: connected to another node after {}; with every talk \
                 accepted for them until then after {} ({} talks missed while away; {} not caught up). {} talks \
                 accepted ({} refused while a node went down), **{} never delivered**.",
                l.clients, l.rate, l.kills, secs_f(l.down_s), l.affected, sm(l.reconnect), sm(l.caught_up),
                l.missed, l.not_caught_up, int(l.posted.accepted), l.posted.failed, l.lost
            );
            target("cluster: accepted talks lost when nodes die", "0", int(l.lost), Some(l.lost == 0));
        }
        Err(e) => s += &format!("\n- loss of a node: failed: {e}\n"),
    }
    s
}
