//! Who is let in: the budgets of failed logins and of frames before the hello per peer
//! address, of POSTs per user, and the log lines of those turned away, held to a few a
//! second and summed up after.

use std::net::IpAddr;

use talkbell_core::protocol::UserId;

use crate::config::RelayConfig;
use crate::rate::{Buckets, LogThrottle};

/// Lines of one kind logged one by one each second; the rest are summed up.
const LOG_LINES_PER_SECOND: u32 = 5;

pub(crate) struct Gate {
    /// `POST /v1/talk` per user.
    http: Buckets<UserId>,
    /// Frames before the hello, per peer address.
    pre_hello: Buckets<IpAddr>,
    /// Failed logins, per peer address.
    login_failures: Buckets<IpAddr>,
    failed_logins: LogThrottle,
    over_cap: LogThrottle,
}

impl Gate {
    pub fn new(cfg: &RelayConfig) -> Self {
        Gate {
            http: Buckets::new(cfg.http_rate),
            pre_hello: Buckets::new(cfg.pre_hello_rate),
            login_failures: Buckets::new(cfg.failed_login_rate),
            failed_logins: LogThrottle::new(LOG_LINES_PER_SECOND),
            over_cap: LogThrottle::new(LOG_LINES_PER_SECOND),
        }
    }

    /// Whether this user may make another HTTP request now.
    pub fn http_allowed(&self, user: &UserId) -> bool {
        self.http.try_take(user)
    }

    /// Takes one frame before a hello from this address's budget, if it has one.
    pub fn pre_hello_allowed(&self, ip: IpAddr) -> bool {
        self.pre_hello.try_take(&ip)
    }

    /// Whether logins from this address are refused for now (too many failed).
    pub fn logins_blocked(&self, ip: IpAddr) -> bool {
        !self.login_failures.has_token(&ip)
    }

    /// Counts a failed login from `peer` and logs it, at most a few lines a second.
    pub fn failed_login(&self, peer: &str, ip: IpAddr, what: &str) {
        self.login_failures.try_take(&ip);
        let (log, summary) = self.failed_logins.event(peer);
        log_failed_logins(summary);
        if log {
            tracing::info!(%peer, "failed login: {what}");
        }
    }

    /// Logs a connection closed for being over the total cap, at most a few a second.
    pub fn over_cap(&self, peer: &str, cap: usize) {
        let (log, summary) = self.over_cap.event(peer);
        log_over_cap(summary);
        if log {
            tracing::warn!(%peer, open = cap, "over the connection cap; closed at once");
        }
    }

    /// Sums up the lines held back in the second that is over (a timer calls this).
    pub fn flush_logs(&self) {
        log_failed_logins(self.failed_logins.flush());
        log_over_cap(self.over_cap.flush());
    }
}

fn log_failed_logins(summary: Option<crate::rate::Suppressed>) {
    if let Some(s) = summary {
        tracing::info!(last_from = %s.last, "{} more failed logins not logged one by one", s.count);
    }
}

fn log_over_cap(summary: Option<crate::rate::Suppressed>) {
    if let Some(s) = summary {
        tracing::warn!(last_from = %s.last, "{} more connections over the cap closed", s.count);
    }
}
