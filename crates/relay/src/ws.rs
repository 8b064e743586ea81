//! One WebSocket connection: hello, welcome, replay, then live talks, heartbeats, acks
//! and talks from the user, until the client goes, idles out, or the relay stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use talkbell_core::protocol::{
    ClientFrame, Hello, ProtocolError, SendTalk, Sent, Seq, ServerError, ServerFrame, Welcome, CLOSE_UNAUTHORIZED,
    HEARTBEAT, MAX_MESSAGE_BYTES, MAX_SEND_TALK_CHARS,
};
use tokio::time::{sleep_until, timeout, Instant};

use crate::hub::{DeliverError, Live, RegisterError, Registration, Resume, Shared};
use crate::rate::TokenBucket;
use crate::users::User;
use talkbell_core::untrusted::untrusted;

/// What tungstenite itself accepts; anything over [`MAX_MESSAGE_BYTES`] but under this is
/// refused by us with a clean close 1009, anything bigger by tungstenite (close 1009 too,
/// best effort).
pub(crate) const WS_READ_LIMIT: usize = 4 * MAX_MESSAGE_BYTES;

pub(crate) const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
pub(crate) const CLOSE_POLICY: u16 = 1008;
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;
pub(crate) const CLOSE_INTERNAL: u16 = 1011;
pub(crate) const CLOSE_RESTART: u16 = 1012;
pub(crate) const CLOSE_TRY_AGAIN: u16 = 1013;

/// How long a close handshake may take before the socket is simply dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// At most one "rate limited" error frame per this long.
const RATE_ERROR_EVERY: Duration = Duration::from_secs(1);
const MAX_UUID_BYTES: usize = 256;
/// Acks are written at most this often per connection (the highest one wins).
const ACK_EVERY: Duration = Duration::from_millis(100);
/// What the welcome lists in `features` (PROTOCOL.md 2.3).
const FEATURES: [&str; 3] = ["resume", "ack", "send"];

fn error_frame(code: &str, message: impl Into<String>) -> Message {
    Message::Text(ServerFrame::Error(ServerError::new(code, message)).to_text().into())
}

/// An error frame answering the `send` with this id (PROTOCOL.md 1.4).
fn send_error_frame(id: &str, code: &str, message: impl Into<String>) -> Message {
    let err = ServerError { id: Some(id.to_owned()), ..ServerError::new(code, message) };
    Message::Text(ServerFrame::Error(err).to_text().into())
}

/// Sends a close frame and waits (briefly) for the client's reply, so that the close
/// frame is read before the socket goes.
async fn close(ws: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
    match timeout(CLOSE_WAIT, ws.send(Message::Close(Some(frame)))).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(Ok(msg)) = ws.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Whether a read error is a frame over tungstenite's size limit.
fn is_too_big(err: &axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(WsError::Capacity(_)) = e.downcast_ref::<WsError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Handles a read error: a frame too big gets close 1009, anything else just ends.
async fn on_read_error(ws: &mut WebSocket, err: axum::Error, who: &str) {
    if is_too_big(&err) {
        tracing::info!(%who, "frame over the size limit; closing with 1009");
        close(ws, CLOSE_TOO_BIG, "message too big").await;
    } else {
        tracing::debug!(%who, error = %untrusted(&err.to_string()), "read failed");
    }
}

/// Sends one frame within the idle timeout; false when the connection is gone.
async fn send(ws: &mut WebSocket, msg: Message, limit: Duration) -> bool {
    matches!(timeout(limit, ws.send(msg)).await, Ok(Ok(())))
}

/// Refuses a token: an `unauthorized` error frame, then close 4001.
async fn refuse(ws: &mut WebSocket, send_limit: Duration, message: &str) {
    send(ws, error_frame("unauthorized", message), send_limit).await;
    close(ws, CLOSE_UNAUTHORIZED, "unauthorized").await;
}

pub(crate) async fn serve_connection(shared: Arc<Shared>, mut ws: WebSocket, peer: SocketAddr) {
    let who = peer.to_string();
    tracing::debug!(%who, "connection opened");
    let Some(hello) = wait_for_hello(&shared, &mut ws, peer).await else {
        return;
    };
    let limit = shared.config().idle_timeout;
    if shared.gate().logins_blocked(peer.ip()) {
        shared.gate().failed_login(
            &who,
            peer.ip(),
            "a hello from an address with too many failed logins; refused unread",
        );
        send(&mut ws, error_frame("rate_limited", "too many failed logins from this address; try again later"), limit)
            .await;
        return close(&mut ws, CLOSE_TRY_AGAIN, "too many failed logins").await;
    }
    let Some(user) = shared.authenticate(hello.token.expose()) else {
        let what = format!("a hello with an unknown token (uuid {})", untrusted(&hello.uuid));
        shared.gate().failed_login(&who, peer.ip(), &what);
        return refuse(&mut ws, limit, "unknown token").await;
    };
    tracing::info!(
        %who,
        user = %user.id,
        uuid = %untrusted(&hello.uuid),
        client = %untrusted(hello.client.as_deref().unwrap_or("-")),
        resume = hello.resume.map(|s| s.0),
        epoch = %untrusted(hello.epoch.as_deref().unwrap_or("-")),
        "signed in"
    );
    let uuid = hello.uuid.clone();
    let resume = Resume { seq: hello.resume.map(|s| s.0), epoch: hello.epoch.as_deref() };
    let reg = match shared.register(&user, &uuid, resume).await {
        Ok(reg) => reg,
        Err(RegisterError::Revoked) => {
            tracing::info!(%who, user = %user.id, "the users table changed during the hello; refusing");
            return refuse(&mut ws, limit, "unknown token").await;
        }
        Err(e @ RegisterError::TooMany(_)) => {
            tracing::info!(%who, user = %user.id, "{e}; refusing another");
            send(&mut ws, error_frame("too_many_connections", e.to_string()), limit).await;
            return close(&mut ws, CLOSE_TRY_AGAIN, "too many connections for this user").await;
        }
        Err(RegisterError::Unavailable(e)) => {
            tracing::warn!(%who, error = %e, "could not register a connection");
            send(&mut ws, error_frame("unavailable", "the relay's queue is out of reach; try again"), limit).await;
            return close(&mut ws, CLOSE_TRY_AGAIN, "queue out of reach").await;
        }
        Err(RegisterError::Broker(e)) => {
            tracing::error!(%who, error = %e, "could not register a connection");
            send(&mut ws, error_frame("internal", "the relay's database failed"), limit).await;
            close(&mut ws, CLOSE_INTERNAL, "database error").await;
            return;
        }
    };
    let conn_id = reg.conn_id;
    let epoch = reg.epoch.clone();
    Connection { shared: shared.clone(), user: user.clone(), uuid: uuid.clone(), epoch, who }.run(ws, hello, reg).await;
    shared.unregister(&user.id, conn_id, &uuid).await;
}

/// What a frame before the hello leads to.
enum PreHello {
    Hello(Hello),
    /// Answered; wait for the next frame.
    Wait,
    /// The connection is done.
    End,
}

/// The first frame must be the hello. Other frames get an error frame (and count against
/// the peer address's budget of frames before a hello); the connection is closed if no
/// hello arrives within the hello timeout of opening.
async fn wait_for_hello(shared: &Shared, ws: &mut WebSocket, peer: SocketAddr) -> Option<Hello> {
    let who = &peer.to_string();
    let deadline = Instant::now() + shared.config().hello_timeout;
    let send_limit = shared.config().idle_timeout;
    loop {
        let msg = tokio::select! {
            _ = sleep_until(deadline) => {
                tracing::info!(%who, "no hello in time; closing");
                send(ws, error_frame("hello_timeout", "no hello in time"), send_limit).await;
                close(ws, CLOSE_POLICY, "no hello").await;
                return None;
            }
            _ = shared.stopped() => {
                close(ws, CLOSE_GOING_AWAY, "server shutting down").await;
                return None;
            }
            msg = ws.recv() => msg,
        };
        let next = match msg {
            None | Some(Ok(Message::Close(_))) => PreHello::End,
            Some(Err(e)) => {
                on_read_error(ws, e, who).await;
                PreHello::End
            }
            Some(Ok(Message::Text(t))) => pre_hello_text(shared, ws, peer, t.as_str()).await,
            Some(Ok(Message::Binary(b))) => {
                if !within_pre_hello_budget(shared, ws, peer).await {
                    PreHello::End
                } else {
                    tracing::info!(%who, bytes = b.len(), "binary frame before hello; dropped");
                    let err = error_frame("unsupported", "binary frames are not supported");
                    if send(ws, err, send_limit).await {
                        PreHello::Wait
                    } else {
                        PreHello::End
                    }
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => PreHello::Wait,
        };
        match next {
            PreHello::Hello(hello) => return Some(hello),
            PreHello::Wait => continue,
            PreHello::End => return None,
        }
    }
}

/// Takes one frame from the peer address's budget of frames before a hello; over it,
/// closes the connection (1008) and says false.
async fn within_pre_hello_budget(shared: &Shared, ws: &mut WebSocket, peer: SocketAddr) -> bool {
    if shared.gate().pre_hello_allowed(peer.ip()) {
        return true;
    }
    tracing::info!(%peer, "too many frames before the hello from this address; closing");
    send(ws, error_frame("rate_limited", "too many frames before the hello"), shared.config().idle_timeout).await;
    close(ws, CLOSE_POLICY, "too many frames before the hello").await;
    false
}

/// A text frame before the hello: the hello itself, or an error frame.
async fn pre_hello_text(shared: &Shared, ws: &mut WebSocket, peer: SocketAddr, text: &str) -> PreHello {
    let send_limit = shared.config().idle_timeout;
    if text.len() > MAX_MESSAGE_BYTES {
        tracing::info!(%peer, bytes = text.len(), "frame over the size limit; closing with 1009");
        close(ws, CLOSE_TOO_BIG, "message too big").await;
        return PreHello::End;
    }
    let parsed = ClientFrame::parse(text);
    if !matches!(parsed, Ok(ClientFrame::Hello(_))) && !within_pre_hello_budget(shared, ws, peer).await {
        return PreHello::End;
    }
    let problem = match parsed {
        Ok(ClientFrame::Hello(hello)) => {
            if hello.uuid.trim().is_empty() || hello.uuid.len() > MAX_UUID_BYTES {
                tracing::info!(%peer, "hello with an empty or overlong uuid; refusing");
                send(ws, error_frame("bad_hello", "the hello's uuid is empty or too long"), send_limit).await;
                close(ws, CLOSE_POLICY, "bad hello").await;
                return PreHello::End;
            }
            return PreHello::Hello(hello);
        }
        // A hello whose token is missing or empty is a refused token.
        Err(ProtocolError::MissingField("token")) | Err(ProtocolError::BadField { field: "token", .. }) => {
            shared.gate().failed_login(&peer.to_string(), peer.ip(), "a hello without a token");
            send(ws, error_frame("unauthorized", "missing token"), send_limit).await;
            close(ws, CLOSE_UNAUTHORIZED, "unauthorized").await;
            return PreHello::End;
        }
        Ok(_) => "the first frame must be the hello".to_owned(),
        Err(e) => format!("not a hello: {e}"),
    };
    tracing::debug!(%peer, problem = %untrusted(&problem), "frame before hello");
    if send(ws, error_frame("hello_required", problem), send_limit).await {
        PreHello::Wait
    } else {
        PreHello::End
    }
}

/// Per-connection flow control: the frame rate limit and ack coalescing.
struct Flow {
    bucket: TokenBucket,
    last_rate_error: Option<Instant>,
    /// The highest ack received and not yet written.
    ack_pending: Option<u64>,
    ack_written: Option<Instant>,
}

impl Flow {
    /// When the pending ack should be written, if there is one.
    fn ack_due(&self) -> Option<Instant> {
        self.ack_pending?;
        Some(match self.ack_written {
            Some(t) => t + ACK_EVERY,
            None => Instant::now(),
        })
    }
}

struct Connection {
    shared: Arc<Shared>,
    user: User,
    uuid: String,
    /// The queue's epoch its welcome named: its acks are in it.
    epoch: String,
    who: String,
}

enum Next {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Connection {
    /// The welcome, then the replay: (resume, last_seq] from the broker, less what this
    /// device acked, or after a reset the queue up to last_seq less what this device
    /// acked in the new epoch (nothing, for a queue that was lost; what survived of it,
    /// for a Redis queue whose epoch moved on after a restart). Later talks wait in
    /// the registration's live channel.
    async fn welcome_and_replay(&self, ws: &mut WebSocket, hello: &Hello, reg: &Registration) -> Next {
        let cfg = self.shared.config();
        let welcome = ServerFrame::Welcome(Welcome {
            heartbeat: cfg.heartbeat_hint,
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            epoch: Some(reg.epoch.clone()),
            reset: reg.reset,
            last_seq: Some(Seq(reg.last_seq)),
            ..Welcome::new(self.user.person())
        });
        if !send(ws, Message::Text(welcome.to_text().into()), cfg.idle_timeout).await {
            return Next::Gone;
        }
        let after = match hello.resume {
            _ if reg.reset => Some(reg.acked),
            Some(resume) => Some(resume.0.max(reg.acked)),
            None => None,
        };
        match after {
            Some(after) => self.replay(ws, after, reg.last_seq).await,
            None => Next::Continue,
        }
    }

    async fn run(self, mut ws: WebSocket, hello: Hello, mut reg: Registration) {
        let cfg = self.shared.config();
        match self.welcome_and_replay(&mut ws, &hello, &reg).await {
            Next::Continue => {}
            Next::Close(code, reason) => return close(&mut ws, code, reason).await,
            Next::Gone => return,
        }

        let mut idle_deadline = Instant::now() + cfg.idle_timeout;
        let mut flow =
            Flow { bucket: TokenBucket::new(cfg.ws_rate), last_rate_error: None, ack_pending: None, ack_written: None };
        let outcome = loop {
            let ack_due = flow.ack_due();
            let next = tokio::select! {
                _ = self.shared.stopped() => Next::Close(CLOSE_GOING_AWAY, "server shutting down"),
                live = reg.live.recv() => self.on_live(&mut ws, live).await,
                _ = sleep_until(idle_deadline) => {
                    tracing::info!(who = %self.who, user = %self.user.id, "idle; closing");
                    Next::Close(CLOSE_NORMAL, "idle timeout")
                }
                _ = sleep_until(ack_due.unwrap_or(idle_deadline)), if ack_due.is_some() => {
                    self.flush_ack(&mut ws, &mut flow).await
                }
                msg = ws.recv() => {
                    idle_deadline = Instant::now() + cfg.idle_timeout;
                    match msg {
                        None | Some(Ok(Message::Close(_))) => Next::Gone,
                        Some(Err(e)) => {
                            on_read_error(&mut ws, e, &self.who).await;
                            Next::Gone
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
                        Some(Ok(msg)) => self.on_frame(&mut ws, msg, &mut flow).await,
                    }
                }
            };
            match next {
                Next::Continue => continue,
                other => break other,
            }
        };
        if flow.ack_pending.is_some() {
            self.flush_ack(&mut ws, &mut flow).await;
        }
        if let Next::Close(code, reason) = outcome {
            close(&mut ws, code, reason).await;
        }
        tracing::info!(who = %self.who, user = %self.user.id, uuid = %untrusted(&self.uuid), "connection closed");
    }

    /// Records the highest ack received since the last write.
    async fn flush_ack(&self, ws: &mut WebSocket, flow: &mut Flow) -> Next {
        let Some(seq) = flow.ack_pending.take() else {
            return Next::Continue;
        };
        flow.ack_written = Some(Instant::now());
        match self.shared.ack(&self.user.id, &self.uuid, seq, &self.epoch).await {
            Ok(()) => Next::Continue,
            Err(e) => {
                tracing::error!(who = %self.who, error = %e, "could not record an ack");
                let err = error_frame("internal", "could not record the ack");
                if send(ws, err, self.shared.config().idle_timeout).await {
                    Next::Continue
                } else {
                    Next::Gone
                }
            }
        }
    }

    async fn replay(&self, ws: &mut WebSocket, mut after: u64, upto: u64) -> Next {
        let send_limit = self.shared.config().idle_timeout;
        let mut sent = 0usize;
        while after < upto {
            let page = match self.shared.replay_page(&self.user.id, after, upto).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(who = %self.who, error = %e, "replay failed");
                    return Next::Close(CLOSE_INTERNAL, "database error");
                }
            };
            for talk in page.talks {
                let text = ServerFrame::Talk(talk).to_text();
                if !send(ws, Message::Text(text.into()), send_limit).await {
                    return Next::Gone;
                }
                sent += 1;
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        if sent > 0 {
            tracing::info!(who = %self.who, user = %self.user.id, talks = sent, "replayed");
        }
        Next::Continue
    }

    /// What the recipient's side sent this connection: a talk, or word that its token
    /// was revoked; nothing at all means it was dropped for being too slow.
    async fn on_live(&self, ws: &mut WebSocket, live: Option<Live>) -> Next {
        let send_limit = self.shared.config().idle_timeout;
        match live {
            Some(Live::Frame(frame)) => {
                if send(ws, Message::Text(frame), send_limit).await {
                    Next::Continue
                } else {
                    Next::Gone
                }
            }
            Some(Live::CatchUp { after, upto }) => self.replay(ws, after, upto).await,
            Some(Live::Reset) => {
                tracing::info!(who = %self.who, user = %self.user.id, "the queue has a new epoch; closing so the client is told");
                Next::Close(CLOSE_RESTART, "the queue was reset; reconnect with resume")
            }
            Some(Live::Revoked) => {
                tracing::info!(who = %self.who, user = %self.user.id, "the user or their token was removed; closing");
                // Best effort: the close code is what the client acts on.
                let _ = send(ws, error_frame("unauthorized", "the token was revoked"), send_limit).await;
                Next::Close(CLOSE_UNAUTHORIZED, "unauthorized")
            }
            None => Next::Close(CLOSE_TRY_AGAIN, "too slow; reconnect with resume"),
        }
    }

    async fn on_frame(&self, ws: &mut WebSocket, msg: Message, flow: &mut Flow) -> Next {
        let parsed = match &msg {
            Message::Text(text) => {
                if text.len() > MAX_MESSAGE_BYTES {
                    tracing::info!(who = %self.who, bytes = text.len(), "frame over the size limit; closing with 1009");
                    return Next::Close(CLOSE_TOO_BIG, "message too big");
                }
                Some(ClientFrame::parse(text.as_str()))
            }
            Message::Binary(_) => None,
            _ => return Next::Continue,
        };
        // Acks are not rate limited (a client acks every talk of a long replay); they are
        // coalesced instead: written at once, then at most every ACK_EVERY.
        if let Some(Ok(ClientFrame::Ack(seq))) = parsed {
            flow.ack_pending = Some(flow.ack_pending.unwrap_or(0).max(seq.0));
            return if flow.ack_due().is_some_and(|due| due <= Instant::now()) {
                self.flush_ack(ws, flow).await
            } else {
                Next::Continue
            };
        }
        let reply = if !flow.bucket.try_take() {
            match parsed {
                // A send is always answered, with its id.
                Some(Ok(ClientFrame::Send(send))) => {
                    Some(send_error_frame(&send.id, "rate_limited", "too many frames; not sent"))
                }
                _ => self.rate_limited(flow),
            }
        } else {
            match parsed {
                Some(parsed) => self.answer(parsed).await,
                None => {
                    let bytes = if let Message::Binary(b) = &msg { b.len() } else { 0 };
                    tracing::info!(who = %self.who, bytes, "binary frame; dropped");
                    Some(error_frame("unsupported", "binary frames are not supported"))
                }
            }
        };
        let Some(reply) = reply else { return Next::Continue };
        if send(ws, reply, self.shared.config().idle_timeout).await {
            Next::Continue
        } else {
            Next::Gone
        }
    }

    /// A frame over the rate limit is dropped; the error frame that says so goes at most
    /// every [`RATE_ERROR_EVERY`].
    fn rate_limited(&self, flow: &mut Flow) -> Option<Message> {
        tracing::debug!(who = %self.who, "rate limited; frame dropped");
        if flow.last_rate_error.is_some_and(|t| t.elapsed() < RATE_ERROR_EVERY) {
            return None;
        }
        flow.last_rate_error = Some(Instant::now());
        tracing::info!(who = %self.who, user = %self.user.id, "rate limited");
        Some(error_frame("rate_limited", "too many frames; dropped"))
    }

    /// What a text frame after the hello gets back, if anything.
    async fn answer(&self, parsed: Result<ClientFrame, ProtocolError>) -> Option<Message> {
        match parsed {
            Ok(ClientFrame::Heartbeat) => Some(Message::Text(Utf8Bytes::from_static(HEARTBEAT))),
            Ok(ClientFrame::Ack(_)) => None,
            Ok(ClientFrame::Talk(talk)) => {
                if talk.from.id != self.user.id {
                    let claimed = untrusted(talk.from.id.as_str());
                    tracing::info!(who = %self.who, user = %self.user.id, %claimed, "talk with someone else's form; refused");
                    return Some(error_frame("bad_sender", "form must be the signed-in user"));
                }
                let delivered = self.shared.deliver(&self.user, &talk.to.id, talk.talk, None).await;
                delivered.err().map(|e| deliver_error_frame(&e, None))
            }
            Ok(ClientFrame::Send(send)) => Some(self.send_talk(send).await),
            Ok(ClientFrame::Hello(_)) => {
                Some(error_frame("already_signed_in", "this connection has already sent its hello"))
            }
            Err(e) => {
                tracing::debug!(who = %self.who, error = %untrusted(&e.to_string()), "bad frame; dropped");
                Some(error_frame("bad_frame", e.to_string()))
            }
        }
    }
}

impl Connection {
    /// A `send` (PROTOCOL.md 1.4): from the token's user, never from the frame; `sent`
    /// once the talk is stored, or an error frame with the same id. A retried id gets
    /// the first `sent` again.
    async fn send_talk(&self, send: SendTalk) -> Message {
        let SendTalk { id, to, talk } = send;
        if talk.chars().count() > MAX_SEND_TALK_CHARS {
            return send_error_frame(&id, "too_long", format!("a talk is at most {MAX_SEND_TALK_CHARS} characters"));
        }
        if !self.shared.gate().http_allowed(&self.user.id) {
            tracing::info!(who = %self.who, user = %self.user.id, "send rate limited");
            return send_error_frame(&id, "rate_limited", "too many talks; slow down");
        }
        match self.shared.deliver(&self.user, &to, talk, Some(&id)).await {
            Ok(d) => {
                tracing::info!(from = %self.user.id, to = %untrusted(to.as_str()), seq = d.seq, "talk sent");
                Message::Text(ServerFrame::Sent(Sent { id, seq: Seq(d.seq), ts: d.ts }).to_text().into())
            }
            Err(e) => deliver_error_frame(&e, Some(&id)),
        }
    }
}

/// The error frame for a talk that was not delivered, with the `send`'s id if it was one.
fn deliver_error_frame(e: &DeliverError, id: Option<&str>) -> Message {
    let code = match e {
        DeliverError::UnknownRecipient => "unknown_recipient",
        // A talk within 4,000 characters can still make a frame over 64 KiB (long names).
        DeliverError::TooLarge if id.is_some() => "too_long",
        DeliverError::TooLarge => "too_large",
        DeliverError::Empty => "bad_talk",
        DeliverError::QueueFull(_) => "queue_full",
        DeliverError::Unavailable(_) => "unavailable",
        DeliverError::Broker(_) | DeliverError::Stopped => "internal",
    };
    match e {
        DeliverError::Broker(err) => tracing::error!(error = %err, "could not store a talk"),
        DeliverError::Unavailable(err) => tracing::warn!(error = %err, "could not store a talk"),
        _ => {}
    }
    match id {
        Some(id) => send_error_frame(id, code, e.to_string()),
        None => error_frame(code, e.to_string()),
    }
}
