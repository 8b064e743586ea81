//! Reconnect timing with the server down, on tokio's paused clock.

mod support;

use std::time::Duration;

use support::*;
use talkbell_core::session::{Backoff, Session, SessionEvent, SessionState, Timing};
use tokio::time::Instant;

fn timing() -> Timing {
    Timing {
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        connect_timeout: Duration::from_millis(50),
        ..Timing::default()
    }
}

/// A port on which nothing listens.
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/")
}

#[tokio::test(start_paused = true)]
async fn with_the_server_down_attempts_spread_out_and_never_come_closer_than_the_minimum() {
    let t = timing();
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(t), Some(creds(&dead_url().await, Some(1))), history(&dir));
    let mut events = session.subscribe();
    let mut attempts: Vec<Instant> = Vec::new();
    let mut delays: Vec<(u32, Duration)> = Vec::new();
    while attempts.len() < 12 {
        match events.recv().await.unwrap() {
            SessionEvent::State(SessionState::Connecting { .. }) => attempts.push(Instant::now()),
            SessionEvent::State(SessionState::Backoff { attempt, delay, .. }) => delays.push((attempt, delay)),
            _ => {}
        }
    }
    session.shutdown().await;

    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    println!("gaps between attempts: {gaps:?}");
    for gap in &gaps {
        assert!(*gap >= t.backoff_min, "attempts {gap:?} apart");
    }
    let ceiling = Backoff::new(t.backoff_min, t.backoff_max, None);
    for (attempt, delay) in &delays {
        assert!(*delay >= t.backoff_min && *delay <= ceiling.ceiling(*attempt), "attempt {attempt}: {delay:?}");
    }
    // Attempt numbers count up while nothing succeeds.
    let numbers: Vec<u32> = delays.iter().map(|(a, _)| *a).collect();
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>());
    // The first wait is the minimum; later ones grow with the doubling ceiling.
    assert_eq!(delays[0].1, t.backoff_min);
    let early: Duration = gaps[..3].iter().sum();
    let late: Duration = gaps[gaps.len() - 3..].iter().sum();
    assert!(late > early * 2, "early {early:?}, late {late:?}");
    assert!(gaps.iter().all(|g| *g <= t.backoff_max + t.connect_timeout + Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn reconnect_now_skips_the_wait() {
    let t = Timing { backoff_min: Duration::from_secs(30), ..timing() };
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(t), Some(creds(&dead_url().await, Some(1))), history(&dir));
    let mut events = session.subscribe();
    // Wait for the first backoff, then ask for an attempt now.
    loop {
        if let SessionEvent::State(SessionState::Backoff { .. }) = events.recv().await.unwrap() {
            break;
        }
    }
    let asked = Instant::now();
    session.reconnect_now();
    loop {
        if let SessionEvent::State(SessionState::Connecting { attempt }) = events.recv().await.unwrap() {
            assert_eq!(attempt, 2);
            break;
        }
    }
    assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
    session.shutdown().await;
}

/// A link that stayed up past `healthy_after` starts the delays afresh; one that drops at
/// once keeps growing them. Real time, small numbers, generous bounds.
#[tokio::test]
async fn a_healthy_link_resets_the_backoff() {
    let server = Scripted::start(|n, mut ws| async move {
        next_text(&mut ws).await;
        send_text(&mut ws, "online").await;
        // Links 1-3 drop at once; link 4 lives 1.5 s (healthy after 1 s) and then drops.
        if n == 4 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let _ = ws.close(None).await;
    })
    .await;
    let t = Timing {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        healthy_after: Duration::from_secs(1),
        heartbeat_interval: Duration::from_secs(10),
        ..timing()
    };
    let dir = tempfile::tempdir().unwrap();
    let session = Session::spawn(config(t), Some(creds(&server.url(), Some(1))), history(&dir));
    let mut events = session.subscribe();
    let mut attempts = Vec::new();
    while attempts.len() < 4 {
        if let Some(a) = wait_event(&mut events, |e| match e {
            SessionEvent::State(SessionState::Backoff { attempt, .. }) => Some(Some(*attempt)),
            _ => None,
        })
        .await
        {
            attempts.push(a);
        }
    }
    session.shutdown().await;
    assert_eq!(attempts, [1, 2, 3, 1]);
}
