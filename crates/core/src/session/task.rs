//! The session task: the state machine of DESIGN.md and the life of one link.
//!
//! `run` is the one `match` over [`Phase`]; each arm publishes its state and returns the
//! next phase. Only [`Phase::Linked`] holds a socket, so only one can exist at a time.
//! A command is handled in one place, `on_command`, whatever the phase it arrives in.

mod replies;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::backoff::Backoff;
use super::connector::{self, ConnectError, Ws};
use super::outbox::ReplyError;
use super::reason::{OfflineReason, Refusal, SignedOutReason};
use super::{
    Command, Credentials, Cursor, Identity, Inbound, KeyringAnswer, SessionConfig, SessionEvent, SessionNow,
    SessionState, SharedStats, Start, StoreError, Stored, TalkStore, Timing,
};
use crate::protocol::{
    ClientFrame, HeartbeatHint, Hello, Person, ProtocolError, Seq, ServerFrame, TalkMessage, UserId, Welcome,
    CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED,
};
use crate::untrusted::untrusted;

/// The range a welcome's heartbeat interval is held to (PROTOCOL.md §2.3).
const HINT_INTERVAL: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));
/// The range a welcome's heartbeat timeout is held to.
const HINT_TIMEOUT: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// The most frames read in one go before what they hold is stored and acked.
const READ_BATCH: usize = 256;

/// Where the task is. Mirrors [`SessionState`], but owns what each state needs.
enum Phase {
    SignedOut {
        reason: Option<SignedOutReason>,
    },
    Connecting {
        attempt: u32,
    },
    /// A socket is open; `attempt` is the attempt that opened it.
    Linked {
        ws: Box<Ws>,
        attempt: u32,
    },
    /// Waiting after failed attempt `attempt`.
    Backoff {
        attempt: u32,
        reason: OfflineReason,
    },
    Stopped,
}

/// How a link ended, decided inside `link` and turned into the next phase in one place.
enum LinkEnd {
    /// Lost, dead, oversized, unstorable: try again after a backoff.
    Failed(OfflineReason),
    /// The server refused the token (close 4001/4003, an error frame).
    Rejected(Refusal),
    /// A command ended the link; go straight to this phase.
    Then(Phase),
}

/// Where a command arrives ([`SessionTask::on_command`]).
#[derive(Clone, Copy)]
enum At<'a> {
    SignedOut(Option<&'a SignedOutReason>),
    /// Opening attempt n.
    Connecting(u32),
    /// Waiting after failed attempt n.
    Backoff(u32),
    Linked,
}

/// What a command leads to.
enum Handled {
    /// The phase goes on.
    Stay,
    /// The phase ends (a link is closed first); this one follows.
    Then(Phase),
    /// A reply to keep (`command` keeps it, in any phase).
    Reply { to: Person, text: String, done: oneshot::Sender<Result<i64, ReplyError>> },
    /// A reply was kept while linked: send the outbox.
    Flush,
}

pub(crate) struct SessionTask {
    config: SessionConfig,
    /// How the task starts; taken by `run`.
    start: Option<Start>,
    credentials: Option<Credentials>,
    store: Arc<dyn TalkStore>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<SessionEvent>,
    /// The state and the user, as published; `user` is owned here.
    now: watch::Sender<SessionNow>,
    stats: SharedStats,
    backoff: Backoff,
    /// Who the server said we are on the current link.
    welcomed: Option<Person>,
    /// Callers of `shutdown()` to answer once stopped.
    stopping: Vec<oneshot::Sender<()>>,
    /// Talks read from the socket and not stored yet (within one read of the link).
    talks_read: Vec<Inbound>,
    /// The reason last logged as a warning, until a link is up again.
    last_offline: Option<OfflineReason>,
    /// Whether the server takes replies (its welcome's features); None: not known yet.
    offers_send: Option<bool>,
}

impl SessionTask {
    pub(crate) fn new(
        config: SessionConfig,
        start: Start,
        store: Arc<dyn TalkStore>,
        commands: mpsc::UnboundedReceiver<Command>,
        events: broadcast::Sender<SessionEvent>,
        now: watch::Sender<SessionNow>,
        stats: SharedStats,
    ) -> Self {
        let t = config.timing;
        let backoff = Backoff::new(t.backoff_min, t.backoff_max, config.jitter_seed);
        SessionTask {
            config,
            start: Some(start),
            credentials: None,
            store,
            commands,
            events,
            now,
            stats,
            backoff,
            welcomed: None,
            stopping: Vec::new(),
            talks_read: Vec::new(),
            last_offline: None,
            offers_send: None,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut phase = match self.start.take() {
            Some(Start::SignedIn(c)) => self.sign_in(c),
            Some(Start::SignedOut(reason)) => Phase::SignedOut { reason },
            None => Phase::SignedOut { reason: None },
        };
        loop {
            phase = match phase {
                Phase::SignedOut { reason } => {
                    self.credentials = None;
                    self.publish(SessionState::SignedOut { reason: reason.clone() });
                    self.wait_signed_out(reason).await
                }
                Phase::Connecting { attempt } => {
                    self.publish(SessionState::Connecting { attempt });
                    self.connect(attempt).await
                }
                Phase::Linked { ws, attempt } => {
                    let opened = Instant::now();
                    match self.link(*ws).await {
                        LinkEnd::Then(next) => next,
                        LinkEnd::Rejected(refusal) => {
                            Phase::SignedOut { reason: Some(SignedOutReason::Refused(refusal)) }
                        }
                        LinkEnd::Failed(reason) => {
                            // A link that was healthy for a while starts the delays afresh.
                            let healthy = opened.elapsed() >= self.config.timing.healthy_after;
                            Phase::Backoff { attempt: if healthy { 1 } else { attempt }, reason }
                        }
                    }
                }
                Phase::Backoff { attempt, reason } => self.wait_backoff(attempt, reason).await,
                Phase::Stopped => {
                    self.publish(SessionState::Stopped);
                    for done in self.stopping.drain(..) {
                        let _ = done.send(());
                    }
                    return;
                }
            };
        }
    }

    fn publish(&mut self, state: SessionState) {
        self.log(&state);
        self.now.send_modify(|now| now.state = state.clone());
        self.emit(SessionEvent::State(state));
    }

    /// Who the user is now; readers see it at once, beside the state.
    fn set_user(&mut self, user: Option<UserId>) {
        self.now.send_if_modified(|now| {
            let changed = now.user != user;
            now.user = user;
            changed
        });
    }

    /// Signs in with `credentials`: they name the user (or none yet, until the welcome).
    fn sign_in(&mut self, credentials: Credentials) -> Phase {
        self.set_user(credentials.user_id.clone());
        self.set_offers_send(None);
        self.credentials = Some(credentials);
        Phase::Connecting { attempt: 1 }
    }

    /// One warning per offline reason: the attempts after it that fail the same way (a
    /// server down for an hour, an untrusted certificate) are logged at debug only, until
    /// a link is up again or the reason changes.
    fn log(&mut self, state: &SessionState) {
        let label = state.label();
        match state {
            SessionState::Backoff { reason, delay, attempt, .. } => {
                if self.last_offline.as_ref() == Some(reason) {
                    tracing::debug!(state = label, attempt, ?delay, reason = %untrusted(&reason.to_string()), "session");
                } else {
                    tracing::warn!(state = label, attempt, ?delay, reason = %untrusted(&reason.to_string()), "session");
                    self.last_offline = Some(reason.clone());
                }
            }
            SessionState::Connecting { .. } | SessionState::Authenticating if self.last_offline.is_some() => {
                tracing::debug!(state = label, "session")
            }
            SessionState::SignedOut { reason: Some(reason) } => {
                self.last_offline = None;
                tracing::info!(state = label, reason = %untrusted(&reason.to_string()), "session")
            }
            _ => {
                self.last_offline = None;
                tracing::info!(state = label, "session")
            }
        }
    }

    fn emit(&self, event: SessionEvent) {
        // No subscriber is not an error: the history already holds what matters.
        let _ = self.events.send(event);
    }

    fn count(&self, f: impl FnOnce(&mut super::SessionStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// What a command does, written once for every phase (`at`).
    fn on_command(&mut self, cmd: Option<Command>, at: At<'_>) -> Handled {
        match cmd {
            // Every handle is gone: nobody can ever ask for anything again.
            None => Handled::Then(Phase::Stopped),
            Some(Command::Shutdown { done }) => {
                self.stopping.push(done);
                Handled::Then(Phase::Stopped)
            }
            Some(Command::SetCredentials(c)) => Handled::Then(self.sign_in(c)),
            Some(Command::SignOut) => {
                self.set_user(None);
                Handled::Then(Phase::SignedOut { reason: None })
            }
            Some(Command::SetTiming(t)) => {
                self.set_timing(t);
                Handled::Stay
            }
            Some(Command::SetUserId(id)) => {
                self.set_user_id(id);
                Handled::Stay
            }
            Some(Command::Reply { to, text, done }) => Handled::Reply { to, text, done },
            Some(Command::ReconnectNow) => match at {
                // A rejected token must not be retried on its own: signed out stays so.
                At::SignedOut(_) => Handled::Stay,
                // A wake from sleep or the network back starts the attempt afresh: one
                // begun before a suspend may hang until its timeout.
                At::Connecting(attempt) => Handled::Then(Phase::Connecting { attempt }),
                At::Backoff(attempt) => Handled::Then(Phase::Connecting { attempt: attempt + 1 }),
                At::Linked => Handled::Then(Phase::Connecting { attempt: 1 }),
            },
            Some(Command::FromKeyring(answer)) => match at {
                At::SignedOut(reason) => self.on_keyring_answer(answer, reason),
                // Credentials are set since the engine began reading the keyring: the
                // user's win over the stored ones.
                _ => Handled::Stay,
            },
        }
    }

    /// The engine's keyring reader answered while signed out for `reason`. It counts only
    /// while that is a keyring reason: a sign-in, a sign-out or the server's refusal
    /// since the reader began wins over it.
    fn on_keyring_answer(&mut self, answer: KeyringAnswer, reason: Option<&SignedOutReason>) -> Handled {
        if !reason.is_some_and(SignedOutReason::is_keyring) {
            tracing::debug!("an answer from the keyring came after a sign-in or sign-out: ignored");
            return Handled::Stay;
        }
        match answer {
            KeyringAnswer::Token(c) => Handled::Then(self.sign_in(c)),
            KeyringAnswer::Missing => Handled::Then(Phase::SignedOut { reason: None }),
            KeyringAnswer::Unreadable(why) if Some(&why) != reason => {
                Handled::Then(Phase::SignedOut { reason: Some(why) })
            }
            // The same reason again: nothing changes, nothing is published.
            KeyringAnswer::Unreadable(_) => Handled::Stay,
        }
    }

    fn set_timing(&mut self, t: Timing) {
        self.config.timing = t;
        self.backoff = Backoff::new(t.backoff_min, t.backoff_max, self.config.jitter_seed);
    }

    /// Signed out for `reason`, until a command moves on.
    async fn wait_signed_out(&mut self, reason: Option<SignedOutReason>) -> Phase {
        loop {
            let cmd = self.commands.recv().await;
            if let Handled::Then(next) = self.command(cmd, At::SignedOut(reason.as_ref())).await {
                return next;
            }
        }
    }

    async fn wait_backoff(&mut self, attempt: u32, reason: OfflineReason) -> Phase {
        let delay = self.backoff.delay(attempt);
        self.publish(SessionState::Backoff { attempt, delay, until: SystemTime::now() + delay, reason });
        let wake = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(wake) => return Phase::Connecting { attempt: attempt + 1 },
                cmd = self.commands.recv() => {
                    if let Handled::Then(next) = self.command(cmd, At::Backoff(attempt)).await {
                        return next;
                    }
                }
            }
        }
    }

    async fn connect(&mut self, attempt: u32) -> Phase {
        let Some(creds) = self.credentials.clone() else {
            return Phase::SignedOut { reason: None };
        };
        let timing = self.config.timing;
        let transport = self.config.transport.clone();
        let open = connector::open(&creds.server, &transport, timing.connect_timeout, self.config.max_message_bytes);
        tokio::pin!(open);
        loop {
            tokio::select! {
                result = &mut open => return match result {
                    Ok(ws) => {
                        self.count(|s| s.connects += 1);
                        Phase::Linked { ws: Box::new(ws), attempt }
                    }
                    Err(ConnectError::Rejected { status }) => Phase::SignedOut {
                        reason: Some(SignedOutReason::Refused(Refusal::Http { status })),
                    },
                    Err(ConnectError::Failed(reason)) => Phase::Backoff { attempt, reason },
                },
                cmd = self.commands.recv() => {
                    if let Handled::Then(next) = self.command(cmd, At::Connecting(attempt)).await {
                        return next;
                    }
                }
            }
        }
    }

    /// Who the session signs in as ([`SessionNow::user`]).
    fn user_id(&self) -> Option<UserId> {
        self.now.borrow().user.clone()
    }

    /// Who the user is on the current link: the welcome's, else the id given, else not
    /// known.
    fn identity(&self) -> Identity {
        match (&self.welcomed, self.user_id()) {
            (Some(p), _) => Identity::Welcomed(p.clone()),
            (None, Some(id)) => Identity::Given(id),
            (None, None) => Identity::Unknown,
        }
    }

    /// The user says who they are, on a server without a welcome: the credentials keep
    /// it for the next hello, and a live link without a welcome is published anew with
    /// it. A welcome's word is kept.
    fn set_user_id(&mut self, id: UserId) {
        if self.welcomed.is_some() {
            tracing::debug!("a user id was set on a link whose welcome named the user: ignored");
            return;
        }
        self.set_user(Some(id.clone()));
        if let Some(creds) = self.credentials.as_mut() {
            creds.user_id = Some(id);
        }
        if matches!(self.now.borrow().state, SessionState::Connected { .. }) {
            self.publish(SessionState::Connected { user: self.identity() });
        }
    }

    /// The life of one socket: hello, heartbeat, frames, commands.
    async fn link(&mut self, mut ws: Ws) -> LinkEnd {
        let Some(creds) = self.credentials.clone() else {
            close(&mut ws, CloseCode::Normal, self.config.timing.close_timeout).await;
            return LinkEnd::Then(Phase::SignedOut { reason: None });
        };
        let mut link = match self.hello(&mut ws, &creds).await {
            Ok(link) => link,
            Err(end) => return end,
        };
        loop {
            let deadline = match link.probe_sent {
                None => link.last_rx + link.timing.heartbeat_interval,
                Some(sent) => sent + link.timing.heartbeat_timeout,
            };
            let end = tokio::select! {
                frame = ws.next() => self.on_frames(&mut ws, &creds, frame, &mut link).await,
                _ = sleep_until(deadline) => self.on_heartbeat_due(&mut ws, &mut link).await,
                cmd = self.commands.recv() => self.on_link_command(&mut ws, cmd, &mut link).await,
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    /// Sends the hello (with the cursor's `resume` and epoch) and starts the link's state.
    async fn hello(&mut self, ws: &mut Ws, creds: &Credentials) -> Result<Link, LinkEnd> {
        self.welcomed = None;
        // A hello without `resume` asks for nothing, and the first ack afterwards tells
        // the server to forget what it queued: so no hello unless the history answers.
        let cursor = match self.resume_for(creds).await {
            Ok(cursor) => cursor,
            Err(e) => {
                close(ws, CloseCode::Away, self.config.timing.close_timeout).await;
                return Err(LinkEnd::Failed(OfflineReason::History(e)));
            }
        };
        let epoch = cursor.as_ref().and_then(|c| c.epoch.clone());
        let hello = ClientFrame::Hello(Hello {
            uuid: self.config.device_uuid.clone(),
            token: creds.token.clone(),
            resume: cursor.as_ref().map(|c| c.seq),
            epoch: epoch.clone(),
            client: self.config.client_name.clone(),
        });
        let link = Link {
            timing: self.config.timing,
            connected: false,
            last_rx: Instant::now(),
            last_rx_wall: SystemTime::now(),
            probe_sent: None,
            resumed: cursor.is_some(),
            epoch,
            replay_until: None,
            takes_replies: false,
            in_flight: HashSet::new(),
        };
        if let Err(e) = send(ws, hello.to_text(), link.timing.heartbeat_timeout).await {
            return Err(LinkEnd::Failed(lost("could not send the hello", e)));
        }
        self.publish(SessionState::Authenticating);
        Ok(link)
    }

    /// A frame came: it and those already here are handled, and the talks among them
    /// stored in one transaction and acked once (acks are cumulative, PROTOCOL.md §1.3).
    async fn on_frames(
        &mut self,
        ws: &mut Ws,
        creds: &Credentials,
        frame: Option<Result<Message, WsError>>,
        link: &mut Link,
    ) -> Option<LinkEnd> {
        let mut frames = vec![frame];
        while frames.len() < READ_BATCH && matches!(frames.last(), Some(Some(Ok(_)))) {
            match ws.next().now_or_never() {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        let mut end = None;
        for frame in frames {
            if let Err(e) = self.on_frame(ws, creds, frame, link).await {
                end = Some(e);
                break;
            }
        }
        // Talks read before an end are still stored (and acked if the socket still
        // takes it): the server would only send them again.
        let flushed = self.store_talks(ws, creds, link).await;
        end.or(flushed.err())
    }

    /// The heartbeat's deadline passed: probe, or declare the link dead.
    async fn on_heartbeat_due(&mut self, ws: &mut Ws, link: &mut Link) -> Option<LinkEnd> {
        // The monotonic clock stops during suspend: if the wall clock says the link has
        // been silent past interval + timeout, it is dead now (§4).
        let timing = link.timing;
        let silent = link.last_rx_wall.elapsed().unwrap_or_default();
        if link.probe_sent.is_some() || silent > timing.heartbeat_interval + timing.heartbeat_timeout {
            let reason = OfflineReason::HeartbeatTimeout { after: timing.heartbeat_timeout };
            tracing::warn!(%reason, "link dead");
            close(ws, CloseCode::Away, timing.close_timeout).await;
            return Some(LinkEnd::Failed(reason));
        }
        if let Err(e) = send(ws, ClientFrame::Heartbeat.to_text(), timing.heartbeat_timeout).await {
            return Some(LinkEnd::Failed(lost("could not send the heartbeat", e)));
        }
        self.count(|s| s.heartbeats_sent += 1);
        link.probe_sent = Some(Instant::now());
        None
    }

    /// A command while the link is up. `Some`: the link ends.
    async fn on_link_command(&mut self, ws: &mut Ws, cmd: Option<Command>, link: &mut Link) -> Option<LinkEnd> {
        match self.command(cmd, At::Linked).await {
            // `command` has kept the reply already.
            Handled::Stay | Handled::Reply { .. } => None,
            Handled::Flush => self.flush_outbox(ws, link).await.err(),
            Handled::Then(next) => {
                close(ws, CloseCode::Normal, self.config.timing.close_timeout).await;
                Some(LinkEnd::Then(next))
            }
        }
    }

    /// The cursor a hello with these credentials resumes from: the account's we sign in
    /// as (a seq numbers one recipient's talks). Not known yet (a first sign-in without a
    /// user id): none, as on a first connection, and the welcome records the link.
    /// Otherwise the link is recorded before the hello is sent, not once it is answered:
    /// the server may take the hello and keep talks for this device even if we die
    /// before its answer, and only a later hello with `resume` would get them.
    async fn resume_for(&self, creds: &Credentials) -> Result<Option<Cursor>, StoreError> {
        let Some(user) = &creds.user_id else { return Ok(None) };
        let cursor = self.store.cursor(&creds.server, user).await?;
        self.store.linked(&creds.server, user).await?;
        Ok(cursor)
    }

    /// One frame read from the socket (or its end). Talks are only collected here, for
    /// [`store_talks`](Self::store_talks); anything else is handled after the talks read
    /// before it are stored, so that order holds. `Err` ends the link.
    async fn on_frame(
        &mut self,
        ws: &mut Ws,
        creds: &Credentials,
        frame: Option<Result<Message, WsError>>,
        link: &mut Link,
    ) -> Result<(), LinkEnd> {
        let message = match frame {
            None => return Err(LinkEnd::Failed(OfflineReason::Closed { code: None })),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                self.count(|s| s.oversized_frames += 1);
                self.emit(SessionEvent::Oversized { size, limit: max_size });
                tracing::warn!(size, limit = max_size, "refused an oversized message");
                return Err(LinkEnd::Failed(OfflineReason::Oversized { size, limit: max_size }));
            }
            Some(Err(e)) => return Err(LinkEnd::Failed(OfflineReason::Lost { detail: e.to_string() })),
            Some(Ok(m)) => m,
        };
        // Any frame at all is a sign of life (§4).
        link.last_rx = Instant::now();
        link.last_rx_wall = SystemTime::now();
        link.probe_sent = None;
        match message {
            Message::Text(text) => self.on_text(ws, creds, text.as_str(), link).await?,
            Message::Binary(data) => {
                self.count(|s| s.dropped_frames += 1);
                tracing::warn!(bytes = data.len(), "dropped a binary frame");
                self.emit(SessionEvent::Dropped { error: ProtocolError::Malformed("binary frame".into()) });
            }
            Message::Close(frame) => {
                // The close is why the link ends, whatever becomes of an ack on it.
                let _ = self.store_talks(ws, creds, link).await;
                return Err(close_end(frame.as_ref()));
            }
            // Pings are answered by tungstenite; both only mean "alive".
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        // The first frame proves the hello was taken. It is handled first, so that a
        // welcome already names the user in the Connected state.
        if !link.connected {
            link.connected = true;
            self.publish(SessionState::Connected { user: self.identity() });
            if self.welcomed.is_none() {
                // A server with no welcome (the original ones) takes no replies.
                self.set_offers_send(Some(false));
                self.flush_outbox(ws, link).await?;
            }
        }
        Ok(())
    }

    /// A text frame: a talk is collected; anything else is handled once the talks read
    /// before it are stored.
    async fn on_text(&mut self, ws: &mut Ws, creds: &Credentials, text: &str, link: &mut Link) -> Result<(), LinkEnd> {
        let frame = match ServerFrame::parse_with_flaws(text) {
            Ok((frame, flaws)) => {
                for flaw in &flaws.0 {
                    // The value is JSON text cut short; `?` escapes what is left.
                    tracing::warn!(field = flaw.field, value = ?flaw.value, "a field is unusable; the frame is taken without it");
                }
                match frame {
                    ServerFrame::Talk(talk) => {
                        self.talks_read.push(Inbound { talk, unusable_seq: flaws.has("seq") });
                        return Ok(());
                    }
                    other => other,
                }
            }
            Err(error) => {
                self.count(|s| s.dropped_frames += 1);
                tracing::warn!(error = %untrusted(&error.to_string()), "dropped a frame");
                self.emit(SessionEvent::Dropped { error });
                return Ok(());
            }
        };
        self.store_talks(ws, creds, link).await?;
        match self.on_server_frame(frame, link).await {
            TextOutcome::Continue => {}
            TextOutcome::Welcomed => {
                // Already connected: say who we are now.
                if link.connected {
                    self.publish(SessionState::Connected { user: self.identity() });
                }
                self.flush_outbox(ws, link).await?;
            }
            // The close that should follow is ours, so that a server that refuses but
            // keeps the socket open is not waited on.
            TextOutcome::Refused(reason) => {
                close(ws, CloseCode::Normal, link.timing.close_timeout).await;
                return Err(LinkEnd::Rejected(reason));
            }
        }
        Ok(())
    }

    /// A frame other than a talk.
    async fn on_server_frame(&mut self, frame: ServerFrame, link: &mut Link) -> TextOutcome {
        match frame {
            // `sent` answers a `send` (§1.4), which this session does not make yet.
            ServerFrame::Heartbeat | ServerFrame::Talk(_) => TextOutcome::Continue,
            ServerFrame::Welcome(welcome) => {
                if let Some(hint) = welcome.heartbeat {
                    apply_hint(hint, &mut link.timing);
                }
                // Talks up to it are the server's replay (§2.3).
                link.replay_until = welcome.last_seq;
                self.welcome_user(&welcome.user.id).await;
                if let Some(creds) = self.credentials.clone() {
                    self.welcome_epoch(&creds.server, &welcome, link).await;
                }
                link.takes_replies = welcome.features.iter().any(|f| f == "send");
                self.set_offers_send(Some(link.takes_replies));
                self.welcomed = Some(welcome.user.clone());
                self.emit(SessionEvent::Welcome { user: welcome.user });
                TextOutcome::Welcomed
            }
            ServerFrame::Sent(sent) => {
                self.on_sent(sent).await;
                TextOutcome::Continue
            }
            // The answer to a reply sent on this link.
            ServerFrame::Error(e) if e.id.as_ref().is_some_and(|id| link.in_flight.contains(id)) => {
                self.on_send_error(&e).await;
                TextOutcome::Continue
            }
            ServerFrame::Error(e) => {
                tracing::warn!(code = %untrusted(&e.code), message = %untrusted(&e.message), "the server reported an error");
                if e.code == "unauthorized" || e.code == "forbidden" {
                    TextOutcome::Refused(Refusal::Error { message: e.message })
                } else {
                    TextOutcome::Continue
                }
            }
        }
    }

    /// The server says whose token this is: later hellos resume that account.
    async fn welcome_user(&mut self, user: &UserId) {
        self.set_user(Some(user.clone()));
        let Some(creds) = self.credentials.as_mut() else { return };
        if creds.user_id.as_ref() == Some(user) {
            return;
        }
        if let Some(expected) = &creds.user_id {
            tracing::warn!(expected = %untrusted(expected.as_str()), user = %untrusted(user.as_str()), "the token belongs to another user than configured");
        }
        creds.user_id = Some(user.clone());
        let server = creds.server.clone();
        if let Err(e) = self.store.linked(&server, user).await {
            tracing::warn!(error = %e, "could not record the link in the history");
        }
    }

    /// The welcome's epoch against the cursor's (§3): none stored, it is adopted; another
    /// one, or `reset`, means the server lost the queue: the cursor goes back to 0 (old
    /// and new seqs are not comparable), the history stays, and the user is told. A
    /// welcome without an epoch changes nothing. The link's talks count in the result.
    async fn welcome_epoch(&mut self, server: &str, welcome: &Welcome, link: &mut Link) {
        let user = &welcome.user.id;
        let stored = match self.store.cursor(server, user).await {
            Ok(cursor) => cursor,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the cursor from the history");
                return;
            }
        };
        let stored_epoch = stored.as_ref().and_then(|c| c.epoch.as_deref());
        let changed = matches!((stored_epoch, welcome.epoch.as_deref()), (Some(a), Some(b)) if a != b);
        // Nothing is lost on a first link: there was no queue of ours before, and a
        // `reset` answers a hello's `resume`.
        let reset = stored.is_some() && (changed || (welcome.reset && link.resumed));
        let adopt = welcome.epoch.is_some() && stored_epoch != welcome.epoch.as_deref();
        if !reset && !adopt {
            return;
        }
        if let Err(e) = self.store.set_epoch(server, user, welcome.epoch.as_deref(), reset).await {
            tracing::warn!(error = %e, "could not keep the server's epoch in the history");
            return;
        }
        if welcome.epoch.is_some() {
            link.epoch = welcome.epoch.clone();
        }
        if reset {
            // The engine tells the user (a warning in its log, the shell a notice).
            tracing::info!(server = ?server, account = %untrusted(user.as_str()), epoch = ?welcome.epoch, "a new queue: the cursor starts again");
            self.emit(SessionEvent::QueueReset { server: server.to_owned(), account: user.clone() });
        }
    }

    /// Store, then ack, then tell (PROTOCOL.md §3), for every talk read so far: one
    /// transaction and one (cumulative) ack for all of them. A talk with an unusable seq
    /// has none, so the ack never covers it.
    async fn store_talks(&mut self, ws: &mut Ws, creds: &Credentials, link: &Link) -> Result<(), LinkEnd> {
        if self.talks_read.is_empty() {
            return Ok(());
        }
        let talks = std::mem::take(&mut self.talks_read);
        let stored = match self.store.store_all(&creds.server, link.epoch.as_deref(), &talks).await {
            Ok(stored) => stored,
            Err(e) => {
                // Not acked, so the server keeps them and replays them on the next link.
                tracing::error!(error = %e, talks = talks.len(), "could not store talks");
                self.emit(SessionEvent::StoreFailed { error: e.clone() });
                return Err(LinkEnd::Failed(OfflineReason::History(e)));
            }
        };
        if let Some(seq) = talks.iter().filter(|t| !t.unusable_seq).filter_map(|t| t.talk.seq).max() {
            if let Err(e) = send(ws, ClientFrame::Ack(seq).to_text(), link.timing.heartbeat_timeout).await {
                return Err(LinkEnd::Failed(lost("could not send an ack", e)));
            }
        }
        self.tell_stored(talks, stored, link);
        Ok(())
    }

    /// The events of a stored batch: each new talk, each repeat dropped.
    fn tell_stored(&mut self, talks: Vec<Inbound>, stored: Vec<Stored>, link: &Link) {
        let duplicates = stored.iter().filter(|s| matches!(s, Stored::Duplicate)).count();
        if duplicates > 0 {
            // At-least-once at work: the server sent again what it had no ack for.
            tracing::info!(dropped = duplicates, "talks already stored, dropped");
        }
        let me = self.user_id();
        for (inbound, stored) in talks.into_iter().zip(stored) {
            let talk = inbound.talk;
            match stored {
                Stored::New(row) => {
                    self.count(|s| s.talks += 1);
                    let for_me = me.as_ref().is_some_and(|me| talk.is_for(me));
                    let replay = link.is_replay(&talk);
                    self.emit(SessionEvent::Talk { talk, row, for_me, replay });
                }
                Stored::Duplicate => {
                    self.count(|s| s.duplicates += 1);
                    if let Some(seq) = talk.seq {
                        self.emit(SessionEvent::Duplicate { seq });
                    }
                }
            }
        }
    }
}

/// A server's heartbeat wish, within bounds: a huge interval would switch off dead-link
/// detection, a tiny one would flood it with `online`.
fn apply_hint(hint: HeartbeatHint, timing: &mut Timing) {
    if let Some(ms) = hint.interval_ms.filter(|ms| *ms > 0) {
        timing.heartbeat_interval = Duration::from_millis(ms).clamp(HINT_INTERVAL.0, HINT_INTERVAL.1);
    }
    if let Some(ms) = hint.timeout_ms.filter(|ms| *ms > 0) {
        timing.heartbeat_timeout = Duration::from_millis(ms).clamp(HINT_TIMEOUT.0, HINT_TIMEOUT.1);
    }
}

/// The state of the link that one frame can change.
struct Link {
    /// The heartbeat timing on this link (config, or the server's welcome).
    timing: Timing,
    /// Whether a frame has come (the hello was taken).
    connected: bool,
    last_rx: Instant,
    last_rx_wall: SystemTime,
    probe_sent: Option<Instant>,
    /// Whether the hello carried a `resume`.
    resumed: bool,
    /// The epoch the link's talks count in: the cursor's, or the welcome's (§3).
    epoch: Option<String>,
    /// The welcome's `last_seq`: talks up to it are the replay.
    replay_until: Option<Seq>,
    /// Whether the welcome listed `send` (replies go out on this link).
    takes_replies: bool,
    /// The replies sent on this link (each goes once a link).
    in_flight: HashSet<String>,
}

impl Link {
    /// Whether `talk` is part of the server's replay (a catch-up) rather than live.
    fn is_replay(&self, talk: &TalkMessage) -> bool {
        matches!((talk.seq, self.replay_until), (Some(seq), Some(last)) if seq <= last)
    }
}

enum TextOutcome {
    Continue,
    Welcomed,
    Refused(Refusal),
}

/// What a close frame from the server means.
fn close_end(frame: Option<&CloseFrame>) -> LinkEnd {
    let code = frame.map(|f| u16::from(f.code));
    match code {
        Some(code @ (CLOSE_UNAUTHORIZED | CLOSE_FORBIDDEN)) => {
            let reason = frame.map(|f| f.reason.to_string()).filter(|r| !r.is_empty());
            LinkEnd::Rejected(Refusal::Close { code, reason })
        }
        code => LinkEnd::Failed(OfflineReason::Closed { code }),
    }
}

/// A link lost while sending `what`.
fn lost(what: &str, error: SendError) -> OfflineReason {
    OfflineReason::Lost { detail: format!("{what}: {error}") }
}

/// Why a frame could not be sent: the link is then lost.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// The socket refused the write (closed, reset, ...).
    #[error("{0}")]
    Socket(#[from] WsError),
    /// The peer stopped reading: the write did not finish in time.
    #[error("the send did not finish within {after:?}")]
    TimedOut { after: Duration },
}

/// A send bounded in time: a peer that stops reading must not hang the task.
async fn send(ws: &mut Ws, text: String, limit: Duration) -> Result<(), SendError> {
    match timeout(limit, ws.send(Message::text(text))).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(SendError::TimedOut { after: limit }),
    }
}

/// The close handshake, bounded in time; after that the socket is simply dropped.
async fn close(ws: &mut Ws, code: CloseCode, limit: Duration) {
    let handshake = async {
        let _ = ws.close(Some(CloseFrame { code, reason: "".into() })).await;
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = timeout(limit, handshake).await;
}
