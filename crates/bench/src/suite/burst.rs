//! Benchmark 3, Burst: N talks (100,000) posted as fast as the relay takes them; the time until all
//! are in the app's history, talks per second, the app's peak memory and its popups.
//! Twice: live (the daemon connected while the talks come), and as a replay (the talks
//! queued while the daemon was stopped, then the daemon started).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::app::{self, AppHome, Mode};
use crate::child::Spawned;
use crate::dunst;
use crate::procfs;
use crate::relay::{flood_flags, RelayProc};
use crate::report::{table, Report};
use crate::sender::{self, Sent};
use crate::stats::{int, mb, rate, secs, secs_f};
use crate::Env;

const SENDER_CONNECTIONS: usize = 32;

struct Burst {
    sent: Sent,
    /// From the first POST (live) or the daemon's start (replay) until all are stored.
    all_in: Duration,
    /// Rate into the history over `all_in`.
    rate: f64,
    stored: u64,
    vm_hwm_kib: u64,
    peak_pss_kib: u64,
    popups: Vec<dunst::Popup>,
    /// CPU seconds over `all_in`: the app's and the relay's.
    app_cpu_s: f64,
    relay_cpu_s: f64,
}

/// CPU of the app's tree and of the relay, now.
fn cpu_now(app: &Spawned, relay: &RelayProc) -> (procfs::Activity, procfs::Activity) {
    (procfs::activity(&app.tree()), procfs::activity(&relay.pid().into_iter().collect::<Vec<_>>()))
}

fn cpu_since(app: &Spawned, relay: &RelayProc, before: &(procfs::Activity, procfs::Activity)) -> (f64, f64) {
    let after = cpu_now(app, relay);
    (procfs::activity_delta(&before.0, &after.0).0, procfs::activity_delta(&before.1, &after.1).0)
}

fn stored(db: &rusqlite::Connection) -> u64 {
    db.query_row("SELECT count(*) FROM talks", [], |r| r.get::<_, i64>(0)).map_or(0, |n| u64::try_from(n).unwrap_or(0))
}

/// Polls the history until it holds `want` talks (or nothing new came for 30 s); samples
/// the app's PSS meanwhile. Returns (when all were in, peak PSS).
async fn watch_history(home: &AppHome, app: &mut Spawned, want: u64) -> Result<(Instant, u64, u64)> {
    let mut db = None;
    let mut peak = 0;
    let mut last = (0, Instant::now());
    let mut next_sample = Instant::now();
    loop {
        if db.is_none() && home.paths.history_db.exists() {
            db = home.history().ok();
        }
        let n = db.as_ref().map(|d| d.query_row("SELECT max(id) FROM talks", [], |r| r.get::<_, Option<i64>>(0)));
        let n = n.and_then(|r| r.ok()).flatten().map_or(0, |n| u64::try_from(n).unwrap_or(0));
        if Instant::now() >= next_sample {
            peak = peak.max(procfs::mem_total(&app.tree()).pss_kib);
            next_sample = Instant::now() + Duration::from_millis(200);
        }
        if n >= want {
            let at = Instant::now();
            peak = peak.max(procfs::mem_total(&app.tree()).pss_kib);
            let count = db.as_ref().map(stored).unwrap_or(0);
            return Ok((at, peak, count));
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            bail!("the history stopped at {n} of {want} talks; the app's log ends:\n{}", app.log.tail(15));
        }
        if !app.is_running() {
            bail!("the app exited during the burst:\n{}", app.log.tail(15));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn live(env: &Env, relay: &RelayProc, user: u64) -> Result<Burst> {
    let n = env.sizes.burst_talks;
    let home = AppHome::new(env, "burst-live-app")?;
    home.login(&relay.ws_url(), relay.token(user))?;
    let mut app = home.spawn(Mode::Daemon, None)?;
    app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let popups_before = dunst::last_id()?;
    let (addr, token) = (relay.addr(), relay.token(2).to_owned());
    let cpu0 = cpu_now(&app, relay);
    let started = Instant::now();
    let flood = tokio::spawn(async move {
        sender::flood(addr, &token, n, SENDER_CONNECTIONS, move |_| user, "live", Arc::new(AtomicU64::new(0))).await
    });
    let watched = watch_history(&home, &mut app, n).await;
    let sent = flood.await.context("the sender")??;
    let (all_at, peak, count) = watched?;
    let (app_cpu_s, relay_cpu_s) = cpu_since(&app, relay, &cpu0);
    let vm_hwm_kib = procfs::status_kib(app.pid, "VmHWM").unwrap_or(0);
    // The notifier's last window ends 2 s after the last talk.
    let popups = dunst::settle(popups_before, Duration::from_secs(4), Duration::from_secs(30)).await?;
    app.terminate(Duration::from_secs(10)).await;
    let all_in = all_at - started;
    Ok(Burst {
        rate: n as f64 / all_in.as_secs_f64(),
        sent,
        all_in,
        stored: count,
        vm_hwm_kib,
        peak_pss_kib: peak,
        popups,
        app_cpu_s,
        relay_cpu_s,
    })
}

async fn replay(env: &Env, relay: &RelayProc, user: u64) -> Result<(Burst, Duration)> {
    let n = env.sizes.burst_talks;
    let home = AppHome::new(env, "burst-replay-app")?;
    // Signing in links the device, so the relay keeps its talks for it from then on.
    home.login(&relay.ws_url(), relay.token(user))?;
    let sent = sender::flood(
        relay.addr(),
        relay.token(2),
        n,
        SENDER_CONNECTIONS,
        move |_| user,
        "replay",
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    let popups_before = dunst::last_id()?;
    let relay_cpu0 = procfs::activity(&relay.pid().into_iter().collect::<Vec<_>>());
    let mut app = home.spawn(Mode::Daemon, None)?;
    let started = Instant::now();
    let connected = app::wait_connected(&mut app, 1, Duration::from_secs(60)).await?;
    let to_connect = connected.duration_since(app.spawned_at).unwrap_or_default();
    let (all_at, peak, count) = watch_history(&home, &mut app, n).await?;
    // The app's CPU from its start (it is a fresh process), the relay's since then.
    let (app_cpu_s, _) = cpu_since(&app, relay, &(procfs::Activity::default(), procfs::Activity::default()));
    let relay_cpu_s =
        procfs::activity_delta(&relay_cpu0, &procfs::activity(&relay.pid().into_iter().collect::<Vec<_>>())).0;
    let vm_hwm_kib = procfs::status_kib(app.pid, "VmHWM").unwrap_or(0);
    let popups = dunst::settle(popups_before, Duration::from_secs(4), Duration::from_secs(30)).await?;
    app.terminate(Duration::from_secs(10)).await;
    let all_in = all_at - started;
    let replay_time = all_in.saturating_sub(to_connect);
    Ok((
        Burst {
            rate: n as f64 / replay_time.as_secs_f64(),
            sent,
            all_in,
            stored: count,
            vm_hwm_kib,
            peak_pss_kib: peak,
            popups,
            app_cpu_s,
            relay_cpu_s,
        },
        to_connect,
    ))
}

fn popup_text(popups: &[dunst::Popup]) -> String {
    if popups.is_empty() {
        return "none".into();
    }
    let shown: Vec<String> = popups.iter().take(6).map(|p| format!("“{}: {}”", p.summary, p.body)).collect();
    let more = if popups.len() > 6 { format!(" and {} more", popups.len() - 6) } else { String::new() };
    format!("{}{more}", shown.join(", "))
}

pub async fn run(env: &Env, report: &mut Report) -> Result<()> {
    let n = env.sizes.burst_talks;
    let flags = flood_flags((2 * n).max(200_000));
    let relay = RelayProc::start(env, "burst-relay", 3, &flags).await?;
    tracing::info!(talks = n, "burst: live");
    let live = live(env, &relay, 1).await;
    tracing::info!(talks = n, "burst: replay");
    let replayed = replay(env, &relay, 3).await;
    drop(relay);

    let mut body = format!(
        "{} talks from one user to the app's user, posted as fast as the relay takes them over {} \
         keep-alive connections (relay started with `{}`). The app is `talkbell daemon` on a fresh history; the history is polled read-only \
         (`SELECT max(id) FROM talks` every 10 ms, then `count(*)`) until all are in. Peak memory is \
         the daemon's VmHWM (peak RSS) and the highest PSS sampled every 200 ms. Popups are those \
         dunst shows (`dunstctl history`, after `close-all`).\n\n\
         - **live**: the daemon connected and idle, then the burst; time from the first POST to the \
         last talk stored.\n\
         - **replay**: the talks queued at the relay while the daemon was stopped (signed in \
         before), then the daemon started; time from its start to the last talk stored, and the \
         rate over the time after it connected.\n\n",
        int(n),
        SENDER_CONNECTIONS,
        flags.join(" ")
    );
    let mut rows = Vec::new();
    let mut failures = String::new();
    match &live {
        Ok(b) => rows.push(vec![
            "live".into(),
            format!("{} in {} ({})", int(b.sent.accepted), secs(b.sent.elapsed), rate(b.sent.rate())),
            format!("{} ({})", secs(b.all_in), int(b.stored)),
            format!("**{}**", rate(b.rate)),
            format!("{:.1} s / {:.1} s", b.app_cpu_s, b.relay_cpu_s),
            mb(b.vm_hwm_kib),
            mb(b.peak_pss_kib),
            format!("**{}**", b.popups.len()),
        ]),
        Err(e) => failures.push_str(&format!("- live: failed: {e:#}\n")),
    }
    match &replayed {
        Ok((b, to_connect)) => rows.push(vec![
            "replay".into(),
            format!("{} in {} ({})", int(b.sent.accepted), secs(b.sent.elapsed), rate(b.sent.rate())),
            format!("{} ({}; connected after {})", secs(b.all_in), int(b.stored), secs(*to_connect)),
            format!("**{}**", rate(b.rate)),
            format!("{:.1} s / {:.1} s", b.app_cpu_s, b.relay_cpu_s),
            mb(b.vm_hwm_kib),
            mb(b.peak_pss_kib),
            format!("**{}**", b.popups.len()),
        ]),
        Err(e) => failures.push_str(&format!("- replay: failed: {e:#}\n")),
    }
    body.push_str(&table(
        &[
            "run",
            "relay took (POSTs)",
            "all in the history after (stored)",
            "talks/s into the history",
            "CPU: app / relay",
            "peak RSS (VmHWM)",
            "peak PSS",
            "popups",
        ],
        &rows,
    ));
    body.push_str(&failures);
    for (name, b) in [("live", live.as_ref().ok()), ("replay", replayed.as_ref().ok().map(|(b, _)| b))] {
        if let Some(b) = b {
            body.push_str(&format!("\n- {name} popups: {}.", popup_text(&b.popups)));
            if b.sent.failed > 0 {
                body.push_str(&format!(
                    "\n- {name}: {} POSTs failed (first: {}).",
                    b.sent.failed,
                    b.sent.first_error.clone().unwrap_or_default()
                ));
            }
        }
    }
    body.push('\n');

    let mut verdicts = String::new();
    let cores = procfs::machine().cores;
    let design = "The app stores every talk in a SQLite transaction of its own (a row, its FTS5 \
                  index entry, the cursor), synchronously in the session task, before it acks it";
    match &live {
        Ok(b) => {
            report.target(
                "burst",
                "talks/s into the history (live)",
                "≥ 20,000/s",
                rate(b.rate),
                Some(b.rate >= 20_000.0),
            );
            report.target(
                "burst",
                "popups for the burst (live)",
                "≤ 3",
                b.popups.len().to_string(),
                Some(b.popups.len() <= 3),
            );
            if b.rate < 20_000.0 {
                verdicts.push_str(&format!(
                    "\n**Missed: {} into the history (live), below 20,000/s.** The relay took the POSTs at \
                     {} and the history kept pace with it (the last talk was stored {} after the last POST \
                     was answered): here the relay's intake bounds the live rate. Over those {} the app \
                     used {:.1} s of CPU and the relay {:.1} s, with the sender on the same {cores} cores.\n",
                    rate(b.rate),
                    rate(b.sent.rate()),
                    secs_f((b.all_in.as_secs_f64() - b.sent.elapsed.as_secs_f64()).max(0.0)),
                    secs(b.all_in),
                    b.app_cpu_s,
                    b.relay_cpu_s
                ));
            }
            if b.popups.len() > 3 {
                verdicts.push_str(&format!(
                    "\n**Missed: {} popups for one burst, above 3.** The notifier shows a burst's first two \
                     talks one by one, then one summary once the talks pause for 2 s, and one every 30 s while \
                     they keep coming: a burst that lasts {} gives 2 + one per 30 s.\n",
                    b.popups.len(),
                    secs(b.all_in),
                ));
            }
        }
        Err(_) => report.target("burst", "talks/s into the history (live)", "≥ 20,000/s", "failed".into(), None),
    }
    if let Ok((b, _)) = &replayed {
        report.target(
            "burst",
            "talks/s into the history (replay)",
            "≥ 20,000/s",
            rate(b.rate),
            Some(b.rate >= 20_000.0),
        );
        report.target("burst", "popups for the replay", "≤ 3", b.popups.len().to_string(), Some(b.popups.len() <= 3));
        if b.rate < 20_000.0 {
            verdicts.push_str(&format!(
                "\n**Missed: the replay went into the history at {}, below 20,000/s.** Here nothing waits \
                 on the sender: the relay reads its queue in pages and writes, and the app used {:.1} s of \
                 CPU in {} ({:.2} cores), the relay {:.1} s. {design}.\n",
                rate(b.rate),
                b.app_cpu_s,
                secs(b.all_in),
                b.app_cpu_s / b.all_in.as_secs_f64(),
                b.relay_cpu_s
            ));
        }
        if b.popups.len() > 3 {
            verdicts.push_str(&format!(
                "\n**Missed: {} popups for the replay, above 3.** Replayed talks (a seq up to the welcome's \
                 `last_seq`) raise no single popups, only a summary once they pause for 2 s, and one every \
                 30 s while they keep coming; the replay lasted {}.\n",
                b.popups.len(),
                secs(b.all_in)
            ));
        }
    }
    body.push_str(&verdicts);
    report.section("burst", body);
    if live.is_err() && replayed.is_err() {
        bail!("both runs failed");
    }
    Ok(())
}
