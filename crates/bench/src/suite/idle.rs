//! Benchmark 1, Idle footprint: after N s (60) connected and idle, the PSS of every process of the
//! app (and of the browser baseline), the CPU time those N s took and the wake-ups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::app::{self, AppHome, Mode};
use crate::browser::Baseline;
use crate::procfs::{self, Mem};
use crate::relay::RelayProc;
use crate::report::{table, Report};
use crate::stats::{mb, mb_f, ratio};
use crate::Env;

struct Footprint {
    label: String,
    /// Process names, with counts.
    processes: String,
    mem: Mem,
    /// Highest PSS seen while idle.
    peak_pss_kib: u64,
    threads: usize,
    cpu_s: f64,
    wakeups_per_s: f64,
    webkit: Vec<String>,
    note: String,
    /// PSS by mapping, largest first (KiB).
    breakdown: Vec<(String, u64)>,
}

/// "PSS = the binary + heap/anonymous + other files (largest: …)".
fn breakdown_text(f: &Footprint) -> String {
    let short = |n: &str| n.find(".so").map_or(n.to_owned(), |i| n[..i + 3].to_owned());
    let sum = |pred: &dyn Fn(&str) -> bool| f.breakdown.iter().filter(|(n, _)| pred(n)).map(|(_, k)| k).sum::<u64>();
    // `talkbell daemon` runs as talkbell-daemon.
    let is_own = |n: &str| n == "talkbell" || n == "talkbell-daemon";
    let own = sum(&|n| is_own(n));
    let anon = sum(&|n| n.starts_with('['));
    let files = sum(&|n| !is_own(n) && !n.starts_with('['));
    let top: Vec<String> = f
        .breakdown
        .iter()
        .filter(|(n, _)| !is_own(n) && !n.starts_with('['))
        .take(6)
        .map(|(n, k)| format!("{} {}", short(n), mb(*k)))
        .collect();
    format!(
        "the Talkbell binary {} + heap and anonymous memory {} + {} of other mapped files (largest: {})",
        mb(own),
        mb(anon),
        mb(files),
        top.join(", ")
    )
}

fn process_names(pids: &[u32]) -> String {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for &p in pids {
        *names.entry(procfs::comm(p).unwrap_or_else(|| "?".into())).or_default() += 1;
    }
    names.into_iter().map(|(n, c)| if c > 1 { format!("{c}× {n}") } else { n }).collect::<Vec<_>>().join(", ")
}

struct Watched {
    pids: Vec<u32>,
    mem: Mem,
    peak_pss_kib: u64,
    cpu_s: f64,
    wakeups_per_s: f64,
    /// The names of every process seen in the samples.
    seen: BTreeSet<String>,
}

/// Watches `pids()` for `secs` seconds from now: CPU and wake-ups over the period, memory at
/// its end, peak PSS and the processes sampled every second.
async fn watch(secs: u64, pids: impl Fn() -> Vec<u32>) -> Watched {
    let start_pids = pids();
    let mut seen: BTreeSet<String> = start_pids.iter().filter_map(|&p| procfs::comm(p)).collect();
    let before = procfs::activity(&start_pids);
    let started = Instant::now();
    let period = Duration::from_secs(secs);
    let mut peak = 0;
    while started.elapsed() < period {
        let left = period.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if left > Duration::from_millis(1500) {
            let now = pids();
            seen.extend(now.iter().filter_map(|&p| procfs::comm(p)));
            peak = peak.max(procfs::mem_total(&now).pss_kib);
        }
    }
    let end_pids = pids();
    seen.extend(end_pids.iter().filter_map(|&p| procfs::comm(p)));
    let after = procfs::activity(&end_pids);
    let elapsed = started.elapsed().as_secs_f64();
    let mem = procfs::mem_total(&end_pids);
    let (cpu_s, switches) = procfs::activity_delta(&before, &after);
    Watched {
        pids: end_pids,
        mem,
        peak_pss_kib: peak.max(mem.pss_kib),
        cpu_s,
        wakeups_per_s: switches as f64 / elapsed,
        seen,
    }
}

async fn app_case(env: &Env, home: &AppHome, mode: Mode) -> Result<Footprint> {
    let _tray = if mode == Mode::Daemon { None } else { super::tray_host(env).await };
    let mut app = home.spawn(mode, None)?;
    app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
    if mode == Mode::Window {
        // The window is up once its web process is.
        let started = Instant::now();
        while !app.tree().iter().any(|&p| procfs::comm(p).is_some_and(|c| c.starts_with("WebKitWeb"))) {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the window's web process did not start within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lines_before = app.log.len();
    let tree_of = |pid: u32| move || procfs::tree(pid);
    let w = watch(env.sizes.idle_secs, tree_of(app.pid)).await;
    let threads = w.pids.iter().map(|&p| procfs::threads(p)).sum();
    let webkit: Vec<String> = w.seen.iter().filter(|c| c.starts_with("WebKit")).cloned().collect();
    let breakdown = procfs::pss_by_mapping(&w.pids);
    let state_changes = app.log.times_from(lines_before, "session state=").len();
    let note = if state_changes > 0 { format!("{state_changes} state change(s) while idle") } else { String::new() };
    let fp = Footprint {
        label: mode.label().to_owned(),
        processes: process_names(&w.pids),
        mem: w.mem,
        peak_pss_kib: w.peak_pss_kib,
        threads,
        cpu_s: w.cpu_s,
        wakeups_per_s: w.wakeups_per_s,
        webkit,
        note,
        breakdown,
    };
    app.terminate(Duration::from_secs(5)).await;
    Ok(fp)
}

async fn browser_case(env: &Env, relay: &RelayProc) -> Result<Footprint> {
    let baseline = Baseline::start(&relay.ws_url(), relay.token(1), 1).await?;
    let w = watch(env.sizes.idle_secs, || baseline.pids()).await;
    let threads = w.pids.iter().map(|&p| procfs::threads(p)).sum();
    let fp = Footprint {
        label: "browser baseline (headless Chromium on bench/baseline.html)".into(),
        processes: process_names(&w.pids),
        mem: w.mem,
        peak_pss_kib: w.peak_pss_kib,
        threads,
        cpu_s: w.cpu_s,
        wakeups_per_s: w.wakeups_per_s,
        webkit: Vec::new(),
        note: String::new(),
        breakdown: Vec::new(),
    };
    baseline.stop().await;
    Ok(fp)
}

pub async fn run(env: &Env, report: &mut Report) -> Result<()> {
    let relay = RelayProc::start(env, "idle-relay", 2, &[]).await?;
    let home = AppHome::new(env, "idle-app")?;
    home.login(&relay.ws_url(), relay.token(1))?;
    let secs = env.sizes.idle_secs;

    let mut results: Vec<(&str, Result<Footprint>)> = Vec::new();
    for (key, mode) in [("tray", Mode::Tray), ("window", Mode::Window), ("daemon", Mode::Daemon)] {
        tracing::info!(case = key, secs, "idle footprint");
        results.push((key, app_case(env, &home, mode).await));
    }
    if env.browser {
        tracing::info!(case = "browser", secs, "idle footprint");
        results.push(("browser", browser_case(env, &relay).await));
    }
    drop(relay);

    let get = |key: &str| results.iter().find(|(k, _)| *k == key).and_then(|(_, r)| r.as_ref().ok());
    let baseline_pss = get("browser").map(|b| b.mem.pss_kib as f64);
    let mut rows = Vec::new();
    let mut failures = String::new();
    for (key, r) in &results {
        match r {
            Ok(f) => rows.push(vec![
                f.label.clone(),
                f.processes.clone(),
                format!("**{}**", mb(f.mem.pss_kib)),
                mb(f.peak_pss_kib),
                mb(f.mem.uss_kib),
                mb(f.mem.rss_kib),
                f.threads.to_string(),
                format!("{:.2} s ({:.2} %)", f.cpu_s, 100.0 * f.cpu_s / secs as f64),
                format!("{:.1}", f.wakeups_per_s),
                match baseline_pss {
                    Some(b) if *key != "browser" => format!("{} less", ratio(b, f.mem.pss_kib as f64)),
                    _ => "—".into(),
                },
            ]),
            Err(e) => failures.push_str(&format!("- {key}: failed: {e:#}\n")),
        }
    }
    let mut body = format!(
        "One relay; each case signed in as the same user, started alone, connected, then left idle for \
         {secs} s (no talks; the heartbeat runs: `online` after 5 s without a frame). Memory is taken at \
         the end of the {secs} s, CPU time and wake-ups are over those {secs} s, summed over the process \
         and all its descendants (the window's WebKit processes; every Chromium process).\n\n"
    );
    body.push_str(&table(
        &[
            "case",
            "processes",
            "PSS",
            "peak PSS",
            "USS",
            "RSS",
            "threads",
            &format!("CPU in {secs} s"),
            "wake-ups/s",
            "PSS vs baseline",
        ],
        &rows,
    ));
    if !failures.is_empty() {
        body.push_str(&format!("\n{failures}"));
    }
    for (key, r) in &results {
        if let Ok(f) = r {
            if !f.note.is_empty() {
                body.push_str(&format!("\n- {key}: {}", f.note));
            }
        }
    }
    body.push_str("\n- Where the PSS goes (`/proc/PID/smaps`, by mapping):");
    for (key, r) in &results {
        if let (Ok(f), true) = (r, *key != "browser") {
            body.push_str(&format!("\n  - {key}: {}.", breakdown_text(f)));
        }
    }
    if let Some(t) = get("tray") {
        body.push_str(&format!(
            "\n- Tray, window closed: {}.",
            if t.webkit.is_empty() {
                "no WebKit process alive (its descendants checked every second)".to_owned()
            } else {
                format!("**WebKit processes alive: {}**", t.webkit.join(", "))
            }
        ));
    }
    if let Some(b) = get("browser") {
        body.push_str(&format!(
            "\n- Baseline: {} for one page; ratios are the baseline's PSS over each case's.",
            mb(b.mem.pss_kib)
        ));
    }
    body.push('\n');

    // Targets.
    let five_x = |f: &Footprint| baseline_pss.map(|b| b / f.mem.pss_kib as f64);
    match get("tray") {
        Some(t) => {
            report.target(
                "idle",
                "tray, window closed: PSS",
                "≤ 30 MB",
                mb(t.mem.pss_kib),
                Some(mb_f(t.mem.pss_kib) <= 30.0),
            );
            report.target(
                "idle",
                "tray, window closed: no web view process",
                "none alive",
                if t.webkit.is_empty() { "none".into() } else { t.webkit.join(", ") },
                Some(t.webkit.is_empty()),
            );
            if let Some(x) = five_x(t) {
                report.target(
                    "idle",
                    "tray vs browser baseline (PSS)",
                    "≥ 5× below",
                    format!("{x:.1}× below"),
                    Some(x >= 5.0),
                );
            }
        }
        None => report.target("idle", "tray, window closed: PSS", "≤ 30 MB", "failed".into(), None),
    }
    match get("daemon") {
        Some(d) => {
            report.target("idle", "daemon: PSS", "≤ 10 MB", mb(d.mem.pss_kib), Some(mb_f(d.mem.pss_kib) <= 10.0));
            if let Some(x) = five_x(d) {
                report.target(
                    "idle",
                    "daemon vs browser baseline (PSS)",
                    "≥ 5× below",
                    format!("{x:.1}× below"),
                    Some(x >= 5.0),
                );
            }
        }
        None => report.target("idle", "daemon: PSS", "≤ 10 MB", "failed".into(), None),
    }
    let mut verdicts = String::new();
    let has = |f: &Footprint, lib: &str| f.breakdown.iter().find(|(n, _)| n.starts_with(lib)).map(|(_, k)| *k);
    if let Some(t) = get("tray") {
        if mb_f(t.mem.pss_kib) > 30.0 {
            let llvm = has(t, "libLLVM").map_or(String::new(), |k| {
                format!(
                    " Of that, {} is libLLVM: something in the process makes an OpenGL context, and \
                     Xvfb has no GPU, so Mesa's software renderer (llvmpipe) is loaded; on a desktop \
                     with a GPU its driver takes that place, at a size of its own.",
                    mb(k)
                )
            });
            verdicts.push_str(&format!(
                "\n**Missed: the tray app uses {} PSS, above the 30 MB target.** Its heap is small; \
                 most of its PSS is shared libraries mapped into its one process (see the breakdown \
                 above: WebKitGTK, GTK and their dependencies are loaded although no web view exists).{llvm} \
                 Tauri links the web view into the app's one binary, so the tray process maps it \
                 for its whole life; reaching 30 MB would take a tray process of its own without \
                 WebKit (GTK and the tray only), which starts the window's process on demand.\n",
                mb(t.mem.pss_kib)
            ));
        }
    }
    if let Some(d) = get("daemon") {
        if mb_f(d.mem.pss_kib) > 10.0 {
            let why = if has(d, "libwebkit2gtk").is_some() {
                "`talkbell daemon` ran inside the desktop app's binary (talkbell-daemon was not \
                 found beside it), which is linked against WebKitGTK, GTK and everything they pull \
                 in: the dynamic loader maps and relocates all of them before `main` runs."
                    .to_owned()
            } else {
                "`talkbell daemon` runs as talkbell-daemon, built from talkbell-core alone, and \
                 maps no GUI library; most of its PSS is its own code, the pages of it that the \
                 start-up touched (tokio, rustls, SQLite, zbus for the keyring and the \
                 notifications), which stay resident though they are not used again. An \
                 optimisation for size of the daemon's dependencies, or a build without the \
                 wake-up watch and TLS where they are not wanted, would shrink it; they are shared \
                 with the desktop app's build, where speed counts."
                    .to_owned()
            };
            verdicts.push_str(&format!(
                "\n**Missed: the daemon uses {} PSS, above the 10 MB target.** {why}\n",
                mb(d.mem.pss_kib)
            ));
        }
    }
    for key in ["tray", "daemon"] {
        if let (Some(f), Some(b)) = (get(key), baseline_pss) {
            let x = b / f.mem.pss_kib as f64;
            if x < 5.0 {
                verdicts
                    .push_str(&format!("\n**Missed: {key} is only {x:.1}× below the baseline's PSS (target 5×).**\n"));
            }
        }
    }
    body.push_str(&verdicts);
    report.section("idle", body);
    if results.iter().all(|(_, r)| r.is_err()) {
        bail!("every case failed");
    }
    Ok(())
}
