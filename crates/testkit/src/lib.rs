//! talkbell-testkit: what the tests (tests/, crates/*/tests) and the benchmarks
//! (crates/bench) share, so that each helper is written once. Test code: helpers that a
//! test calls with `expect` return a `Result` (the benchmarks report errors instead of
//! panicking); the few that panic say so.
//!
//! - [`wait`]: polling a condition with a deadline, sync and async, instead of sleeps;
//!   the next broadcast message a test waits for.
//! - [`logtime`]: the time stamp that starts a log line of the app or the relay.
//! - [`child`]: child processes with their standard error followed ([`child::Log`]).
//! - [`relay`]: `talkbell-relay serve` as a child process.
//! - [`http`]: the `POST /v1/talk` client (hyper), async with keep-alive, and sync.
//! - [`procfs`]: what Linux's /proc says about processes and the machine.
//! - [`dunst`]: the popups of the desktop session's notification daemon.
//! - [`notifications`]: a stand-in notification service (with `inline-reply`).
//! - [`stand_in`]: stand-in D-Bus services written in Python, as child processes.
//! - [`desktop`]: the private desktop session of scripts/desktop-session.sh.
//! - [`tls`]: certificates made for a test.
//! - [`redis`]: Debian's `redis-server` on a free loopback port, killed and restarted.
//! - [`haproxy`]: Debian's `haproxy` in front of relay nodes, and the PROXY v2 header it sends.
//! - [`original`]: a talk server as the original ones were (no welcome, no `seq`).

pub mod child;
pub mod desktop;
pub mod dunst;
pub mod haproxy;
pub mod http;
pub mod logtime;
pub mod notifications;
pub mod original;
pub mod procfs;
pub mod redis;
pub mod relay;
pub mod stand_in;
pub mod tls;
pub mod wait;
