//! The frames of PROTOCOL.md as types, and the one place where the wire is parsed.
//!
//! Parsing is tolerant exactly where the protocol says so (`form`/`from`, number or string
//! ids, unknown fields) and strict everywhere else: anything that does not fit is a typed
//! [`ProtocolError`], never a panic, so a hostile or broken server cannot stop the client.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// The text frame both sides use as a heartbeat (§1.2, §2.2). Not JSON.
pub const HEARTBEAT: &str = "online";
/// Close code a server uses when it refuses the token (§2.4).
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code a server uses when the user may not connect (§2.4).
pub const CLOSE_FORBIDDEN: u16 = 4003;
/// Largest frame either side accepts (§5).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How much of a talk a notification shows (§5).
pub const NOTIFY_TEXT_CHARS: usize = 300;
/// The latest `ts` taken as a time: 9999-12-31T23:59:59.999Z, in ms since the Unix epoch.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;
/// The longest `epoch` kept (it is stored and sent back in every hello).
pub const MAX_EPOCH_CHARS: usize = 128;
/// The longest `talk` a `send` may carry (§1.4, §5); a server answers `too_long` past it.
pub const MAX_SEND_TALK_CHARS: usize = 4000;
/// The longest `id` of a `send` (a UUID is 36): longer, the frame is not a `send`.
pub const MAX_SEND_ID_CHARS: usize = 128;
/// How much of an unusable field's JSON text a [`Flaw`] keeps.
const FLAW_TEXT_CHARS: usize = 64;

/// A user's id. The wire may carry `1` or `"1"`; both are the same user, so the id is kept
/// as its canonical text and written back as a number when it is one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub fn new(id: impl Into<String>) -> Self {
        UserId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A decimal number without a sign or leading zero goes on the wire as a JSON number,
    /// like the original servers sent it.
    fn as_number(&self) -> Option<u64> {
        let s = &self.0;
        let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        canonical.then(|| s.parse().ok()).flatten()
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<u64> for UserId {
    fn from(n: u64) -> Self {
        UserId(n.to_string())
    }
}

impl From<&str> for UserId {
    fn from(s: &str) -> Self {
        UserId(s.to_owned())
    }
}

impl std::str::FromStr for UserId {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ProtocolError::BadField { field: "id", reason: "empty".into() });
        }
        Ok(UserId(s.to_owned()))
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_number() {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_str(&self.0),
        }
    }
}

/// `v` as an integer when it is a whole number of magnitude below 9·10^15 (so that every
/// integer of that range is exactly a float, and the conversion is exact), else `None`.
fn whole_number(v: f64) -> Option<i64> {
    const LIMIT: f64 = 9.0e15;
    if !(v.is_finite() && v.fract() == 0.0 && v.abs() < LIMIT) {
        return None;
    }
    // Checked above: finite, whole and well inside i64, so `as` neither saturates nor rounds.
    #[allow(clippy::cast_possible_truncation)]
    Some(v as i64)
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = UserId;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user id (number or string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<UserId, E> {
                Ok(UserId(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<UserId, E> {
                Ok(UserId(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<UserId, E> {
                // 1.0 is the user 1; 1.5 is nobody.
                match whole_number(v) {
                    Some(n) => Ok(UserId(n.to_string())),
                    None => Err(E::custom("a user id must be a whole number or a string")),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UserId, E> {
                v.parse().map_err(|_| E::custom("a user id must not be empty"))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// Per-recipient sequence number set by a server that supports delivery (§3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The largest seq a talk may carry: what SQLite's INTEGER (an i64) holds, so that a
    /// stored seq is never cut. A talk with a larger one has an unusable seq ([`Flaw`]).
    pub const MAX: Seq = Seq(i64::MAX.unsigned_abs());

    /// The seq as SQLite stores it; every seq up to [`Seq::MAX`] fits.
    pub fn to_i64(self) -> Option<i64> {
        i64::try_from(self.0).ok()
    }

    /// A stored seq read back; a negative one is no seq.
    pub fn from_i64(n: i64) -> Option<Seq> {
        u64::try_from(n).ok().map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The user's secret. It travels only in the hello frame; it has no `Display` and its
/// `Debug` is redacted so that it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(secret: impl Into<String>) -> Result<Self, ProtocolError> {
        let secret = secret.into();
        let trimmed = secret.trim();
        if trimmed.is_empty() {
            return Err(ProtocolError::BadField { field: "token", reason: "empty".into() });
        }
        Ok(Token(trimmed.to_owned()))
    }
    /// The secret itself, for the hello frame and the keyring only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Someone on either end of a talk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: UserId,
    #[serde(default)]
    pub name: String,
}

/// A talk (§2.1): `from` said `talk` to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TalkMessage {
    pub from: Person,
    pub to: Person,
    pub talk: String,
    pub seq: Option<Seq>,
    /// Milliseconds since the Unix epoch, server time.
    pub ts: Option<i64>,
}

impl TalkMessage {
    /// Whether this talk is addressed to `user` (and so may notify).
    pub fn is_for(&self, user: &UserId) -> bool {
        &self.to.id == user
    }

    /// A talk from `from` (id `id-<from>`) to wang1 (id 1), with no seq and no server
    /// time: what the gate's tests feed it. For tests (the `test-hooks` feature).
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn for_test(from: &str, text: &str) -> TalkMessage {
        TalkMessage {
            from: Person { id: UserId::new(format!("id-{from}")), name: from.into() },
            to: Person { id: 1.into(), name: "wang1".into() },
            talk: text.into(),
            seq: None,
            ts: None,
        }
    }
}

/// The heartbeat timing a server prefers (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatHint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The welcome (§2.3). Its extensions are read tolerantly: an unusable one is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub user: Person,
    pub heartbeat: Option<HeartbeatHint>,
    /// What the server offers beyond version 1 (`"resume"`, `"ack"`, `"send"`).
    pub features: Vec<String>,
    /// The lifetime of this user's queue (§3).
    pub epoch: Option<String>,
    /// The server lost the queue the hello's `resume` and `epoch` named, and replays the
    /// new one from its start (§3).
    pub reset: bool,
    /// The highest `seq` in the queue as the welcome is sent: talks up to it are the
    /// replay (a catch-up), later ones are live. Without it nothing is a catch-up.
    pub last_seq: Option<Seq>,
}

impl Welcome {
    /// A welcome naming `user` and nothing else.
    pub fn new(user: Person) -> Self {
        Welcome { user, heartbeat: None, features: Vec::new(), epoch: None, reset: false, last_seq: None }
    }
}

/// `{"type": "error", ...}` (§2.4); one that answers a `send` carries its `id` (§1.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerError {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl ServerError {
    /// An error frame that answers no `send`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServerError { code: code.into(), message: message.into(), id: None }
    }
}

/// `{"type": "sent", ...}` (§1.4): the `send` with this `id` is in the recipient's queue
/// at `seq`, since `ts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub id: String,
    pub seq: Seq,
    pub ts: i64,
}

/// `{"type": "send", ...}` (§1.4): the signed-in user says `talk` to `to`. The frame never
/// names its sender; `id` is the client's, the same on every retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendTalk {
    pub id: String,
    pub to: UserId,
    pub talk: String,
}

/// Every frame a server sends (§2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Heartbeat,
    Talk(TalkMessage),
    Welcome(Welcome),
    Error(ServerError),
    Sent(Sent),
}

/// The hello (§1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub uuid: String,
    pub token: Token,
    pub resume: Option<Seq>,
    /// The epoch the client stored with its cursor, sent with `resume` (§3).
    pub epoch: Option<String>,
    pub client: Option<String>,
}

/// Every frame a client sends (§1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Hello(Hello),
    Heartbeat,
    Ack(Seq),
    Talk(TalkMessage),
    Send(SendTalk),
}

/// Why a frame was not understood. Each one is counted and dropped by the session (§2.5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame is not valid JSON: {0}")]
    Malformed(String),
    #[error("frame is JSON but not an object")]
    NotAnObject,
    #[error("frame of unknown type {0:?}")]
    UnknownType(String),
    #[error("frame has no type and is not a talk")]
    Unrecognized,
    #[error("field {0} is missing")]
    MissingField(&'static str),
    #[error("field {field} is invalid: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("frame of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// A field a frame carried but that could not be used, so the frame was taken without
/// it: a talk with a `ts` that is not a time is a talk with no `ts`, and one with a `seq`
/// that is not a sequence number is a talk with no `seq` (stored once, never acked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flaw {
    /// The field's name on the wire.
    pub field: &'static str,
    /// Its JSON text (control characters escaped, as JSON writes them), cut to 64
    /// characters.
    pub value: String,
}

/// The flaws of one frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flaws(pub Vec<Flaw>);

impl Flaws {
    /// Whether `field` was there and unusable.
    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|f| f.field == field)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add(&mut self, field: &'static str, value: &Value) {
        let mut text: String = value.to_string().chars().take(FLAW_TEXT_CHARS + 1).collect();
        if text.chars().count() > FLAW_TEXT_CHARS {
            text = text.chars().take(FLAW_TEXT_CHARS - 1).collect();
            text.push('…');
        }
        self.0.push(Flaw { field, value: text });
    }
}

/// An optional field read with `read`; present but unusable, it is a flaw and absent.
fn lenient<T>(
    obj: &Map<String, Value>,
    name: &'static str,
    read: fn(&Value) -> Option<T>,
    flaws: &mut Flaws,
) -> Option<T> {
    let value = obj.get(name).filter(|v| !v.is_null())?;
    let read = read(value);
    if read.is_none() {
        flaws.add(name, value);
    }
    read
}

/// A sequence number: a JSON integer or a string of digits, from 0 to [`Seq::MAX`].
fn seq_of(v: &Value) -> Option<Seq> {
    let n = match v {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok()?,
        _ => return None,
    };
    (n <= Seq::MAX.0).then_some(Seq(n))
}

/// A time: a JSON integer of ms since the Unix epoch, from 0 to [`MAX_TS_MS`].
fn ts_of(v: &Value) -> Option<i64> {
    v.as_i64().filter(|ms| (0..=MAX_TS_MS).contains(ms))
}

/// An epoch: a non-empty string of at most [`MAX_EPOCH_CHARS`] characters.
fn epoch_of(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty() && s.chars().count() <= MAX_EPOCH_CHARS).map(str::to_owned)
}

/// The features: the strings of an array (anything else in it is skipped).
fn features_of(v: &Value) -> Option<Vec<String>> {
    Some(v.as_array()?.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

fn take_object(text: &str) -> Result<Map<String, Value>, ProtocolError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ProtocolError::NotAnObject),
        Err(e) => Err(ProtocolError::Malformed(e.to_string())),
    }
}

fn field<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(ProtocolError::MissingField(name)),
        Some(v) => Ok(v),
    }
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value, name: &'static str) -> Result<T, ProtocolError> {
    T::deserialize(v).map_err(|e| ProtocolError::BadField { field: name, reason: e.to_string() })
}

fn opt_typed<T: serde::de::DeserializeOwned>(
    obj: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, ProtocolError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => typed(v, name).map(Some),
    }
}

fn frame_type(obj: &Map<String, Value>) -> Option<&str> {
    obj.get("type").and_then(Value::as_str)
}

/// A talk object: `form` (or its alias `from`) with id, name and talk; `to` with an id.
/// Its extensions (`seq`, `ts`) are lenient: unusable, they are flaws and absent.
fn parse_talk(obj: &Map<String, Value>, flaws: &mut Flaws) -> Result<TalkMessage, ProtocolError> {
    // `form` is the original spelling and wins over the alias (§2.1).
    let sender = match obj.get("form").filter(|v| !v.is_null()) {
        Some(v) => ("form", v),
        None => ("from", field(obj, "from").map_err(|_| ProtocolError::MissingField("form"))?),
    };
    let sender_obj =
        sender.1.as_object().ok_or(ProtocolError::BadField { field: "form", reason: "not an object".into() })?;
    let to_obj =
        field(obj, "to")?.as_object().ok_or(ProtocolError::BadField { field: "to", reason: "not an object".into() })?;

    let from = Person {
        id: typed(field(sender_obj, "id").map_err(|_| ProtocolError::MissingField("form.id"))?, "form.id")?,
        name: typed(field(sender_obj, "name").map_err(|_| ProtocolError::MissingField("form.name"))?, "form.name")?,
    };
    let talk: String =
        typed(field(sender_obj, "talk").map_err(|_| ProtocolError::MissingField("form.talk"))?, "form.talk")?;
    let to = Person {
        id: typed(field(to_obj, "id").map_err(|_| ProtocolError::MissingField("to.id"))?, "to.id")?,
        name: opt_typed(to_obj, "name")?.unwrap_or_default(),
    };
    let seq = lenient(obj, "seq", seq_of, flaws);
    let ts = lenient(obj, "ts", ts_of, flaws);
    Ok(TalkMessage { from, to, talk, seq, ts })
}

/// A `send` id: a non-empty string of at most [`MAX_SEND_ID_CHARS`] characters.
fn send_id(obj: &Map<String, Value>) -> Result<String, ProtocolError> {
    let id: String = typed(field(obj, "id")?, "id")?;
    if id.trim().is_empty() || id.chars().count() > MAX_SEND_ID_CHARS {
        let reason = format!("must be 1 to {MAX_SEND_ID_CHARS} characters");
        return Err(ProtocolError::BadField { field: "id", reason });
    }
    Ok(id)
}

/// A `send` (§1.4): `id`, `to.id` and `talk` are required and strict; its length is the
/// server's to judge (it answers `too_long` with the id), so it is not checked here.
fn parse_send(obj: &Map<String, Value>) -> Result<SendTalk, ProtocolError> {
    let id = send_id(obj)?;
    let to_obj =
        field(obj, "to")?.as_object().ok_or(ProtocolError::BadField { field: "to", reason: "not an object".into() })?;
    let to = typed(field(to_obj, "id").map_err(|_| ProtocolError::MissingField("to.id"))?, "to.id")?;
    let talk = typed(field(obj, "talk")?, "talk")?;
    Ok(SendTalk { id, to, talk })
}

/// A `sent` (§1.4): `id`, `seq` and `ts` are all required.
fn parse_sent(obj: &Map<String, Value>) -> Result<Sent, ProtocolError> {
    let id = send_id(obj)?;
    let seq = seq_of(field(obj, "seq")?).ok_or(ProtocolError::BadField { field: "seq", reason: "not a seq".into() })?;
    let ts = ts_of(field(obj, "ts")?).ok_or(ProtocolError::BadField { field: "ts", reason: "not a time".into() })?;
    Ok(Sent { id, seq, ts })
}

/// An error frame: `code` required; an `id` that is not one is dropped (a flaw).
fn parse_error(obj: &Map<String, Value>, flaws: &mut Flaws) -> Result<ServerError, ProtocolError> {
    Ok(ServerError {
        code: typed(field(obj, "code")?, "code")?,
        message: opt_typed(obj, "message")?.unwrap_or_default(),
        id: lenient(obj, "id", |v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned), flaws),
    })
}

/// A welcome object: `user` is required (and strict), the rest lenient.
fn parse_welcome(obj: &Map<String, Value>, flaws: &mut Flaws) -> Result<Welcome, ProtocolError> {
    Ok(Welcome {
        user: typed(field(obj, "user")?, "user")?,
        heartbeat: opt_typed(obj, "heartbeat")?,
        features: lenient(obj, "features", features_of, flaws).unwrap_or_default(),
        epoch: lenient(obj, "epoch", epoch_of, flaws),
        reset: lenient(obj, "reset", Value::as_bool, flaws).unwrap_or(false),
        last_seq: lenient(obj, "last_seq", seq_of, flaws),
    })
}

impl ServerFrame {
    /// Parses one text frame from a server.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        Self::parse_with_flaws(text).map(|(frame, _)| frame)
    }

    /// Parses one text frame from a server, and says which of its fields were there but
    /// unusable (and so taken as absent).
    pub fn parse_with_flaws(text: &str) -> Result<(Self, Flaws), ProtocolError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge { size: text.len(), limit: MAX_MESSAGE_BYTES });
        }
        let mut flaws = Flaws::default();
        if text == HEARTBEAT {
            return Ok((ServerFrame::Heartbeat, flaws));
        }
        let obj = take_object(text)?;
        let frame = match frame_type(&obj) {
            Some("welcome") => ServerFrame::Welcome(parse_welcome(&obj, &mut flaws)?),
            Some("error") => ServerFrame::Error(parse_error(&obj, &mut flaws)?),
            Some("sent") => ServerFrame::Sent(parse_sent(&obj)?),
            Some("talk") | None if obj.contains_key("form") || obj.contains_key("from") => {
                ServerFrame::Talk(parse_talk(&obj, &mut flaws)?)
            }
            Some(other) => return Err(ProtocolError::UnknownType(other.to_owned())),
            None => return Err(ProtocolError::Unrecognized),
        };
        Ok((frame, flaws))
    }

    /// The frame as the text a server sends.
    pub fn to_text(&self) -> String {
        match self {
            ServerFrame::Heartbeat => HEARTBEAT.to_owned(),
            ServerFrame::Talk(t) => talk_json(t).to_string(),
            ServerFrame::Welcome(w) => welcome_json(w).to_string(),
            ServerFrame::Error(e) => {
                let mut v = serde_json::json!({"type": "error", "code": e.code, "message": e.message});
                if let Some(id) = &e.id {
                    v["id"] = id.clone().into();
                }
                v.to_string()
            }
            ServerFrame::Sent(s) => {
                serde_json::json!({"type": "sent", "id": s.id, "seq": s.seq.0, "ts": s.ts}).to_string()
            }
        }
    }
}

fn welcome_json(w: &Welcome) -> Value {
    let mut v = serde_json::json!({"type": "welcome", "user": w.user});
    if let Some(hb) = &w.heartbeat {
        v["heartbeat"] = serde_json::to_value(hb).unwrap_or(Value::Null);
    }
    if !w.features.is_empty() {
        v["features"] = w.features.clone().into();
    }
    if let Some(epoch) = &w.epoch {
        v["epoch"] = epoch.clone().into();
    }
    if w.reset {
        v["reset"] = true.into();
    }
    if let Some(seq) = w.last_seq {
        v["last_seq"] = seq.0.into();
    }
    v
}

fn talk_json(t: &TalkMessage) -> Value {
    let mut v = serde_json::json!({
        "form": {"id": t.from.id, "name": t.from.name, "talk": t.talk},
        "to": {"id": t.to.id, "name": t.to.name},
    });
    if let Some(seq) = t.seq {
        v["seq"] = seq.0.into();
    }
    if let Some(ts) = t.ts {
        v["ts"] = ts.into();
    }
    v
}

impl ClientFrame {
    /// Parses one text frame from a client (the relay's side).
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge { size: text.len(), limit: MAX_MESSAGE_BYTES });
        }
        if text == HEARTBEAT {
            return Ok(ClientFrame::Heartbeat);
        }
        let obj = take_object(text)?;
        match frame_type(&obj) {
            Some("ack") => Ok(ClientFrame::Ack(typed(field(&obj, "seq")?, "seq")?)),
            Some("send") => parse_send(&obj).map(ClientFrame::Send),
            // A client's seq and ts mean nothing to a server, which sets its own.
            Some("talk") | None if obj.contains_key("form") || obj.contains_key("from") => {
                parse_talk(&obj, &mut Flaws::default()).map(ClientFrame::Talk)
            }
            None if obj.contains_key("token") || obj.contains_key("uuid") => {
                let uuid: String = typed(field(&obj, "uuid")?, "uuid")?;
                let token: String = typed(field(&obj, "token")?, "token")?;
                Ok(ClientFrame::Hello(Hello {
                    uuid,
                    token: Token::new(token)?,
                    resume: opt_typed(&obj, "resume")?,
                    epoch: lenient(&obj, "epoch", epoch_of, &mut Flaws::default()),
                    client: opt_typed(&obj, "client")?,
                }))
            }
            Some(other) => Err(ProtocolError::UnknownType(other.to_owned())),
            None => Err(ProtocolError::Unrecognized),
        }
    }

    /// The frame as the text a client sends.
    pub fn to_text(&self) -> String {
        match self {
            ClientFrame::Heartbeat => HEARTBEAT.to_owned(),
            ClientFrame::Hello(h) => {
                let mut v = serde_json::json!({"uuid": h.uuid, "token": h.token.expose()});
                if let Some(seq) = h.resume {
                    v["resume"] = seq.0.into();
                    // The epoch goes with the cursor it names (§3).
                    if let Some(epoch) = &h.epoch {
                        v["epoch"] = epoch.clone().into();
                    }
                }
                if let Some(client) = &h.client {
                    v["client"] = client.clone().into();
                }
                v.to_string()
            }
            ClientFrame::Ack(seq) => serde_json::json!({"type": "ack", "seq": seq.0}).to_string(),
            ClientFrame::Talk(t) => talk_json(t).to_string(),
            ClientFrame::Send(s) => {
                serde_json::json!({"type": "send", "id": s.id, "to": {"id": s.to}, "talk": s.talk}).to_string()
            }
        }
    }
}

/// The text a notification shows: at most [`NOTIFY_TEXT_CHARS`] characters, cut with `…`.
pub fn notification_text(talk: &str) -> String {
    let mut chars = talk.chars();
    let head: String = chars.by_ref().take(NOTIFY_TEXT_CHARS).collect();
    if chars.next().is_some() {
        let mut cut: String = head.chars().take(NOTIFY_TEXT_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(from: (&str, &str), to: (&str, &str), text: &str) -> TalkMessage {
        TalkMessage {
            from: Person { id: from.0.into(), name: from.1.into() },
            to: Person { id: to.0.into(), name: to.1.into() },
            talk: text.into(),
            seq: None,
            ts: None,
        }
    }

    /// One row per wire shape the protocol promises to accept or refuse.
    #[test]
    fn server_frames_table() {
        use ServerFrame as F;
        let long_epoch = format!(
            r#"{{"type": "welcome", "user": {{"id": 1, "name": "w"}}, "epoch": "{}"}}"#,
            "e".repeat(MAX_EPOCH_CHARS + 1)
        );
        let cases: Vec<(&str, &str, Result<F, ProtocolError>)> = vec![
            (
                "the original sample message",
                r#"{"form": {"id": 2, "name": "wang2", "talk": "hello"}, "to": {"id": 1, "name": "wang1"}}"#,
                Ok(F::Talk(talk(("2", "wang2"), ("1", "wang1"), "hello"))),
            ),
            (
                "from as an alias of form",
                r#"{"from": {"id": 2, "name": "wang2", "talk": "hi"}, "to": {"id": 1, "name": "wang1"}}"#,
                Ok(F::Talk(talk(("2", "wang2"), ("1", "wang1"), "hi"))),
            ),
            (
                "form wins over from",
                r#"{"from": {"id": 9, "name": "x", "talk": "no"}, "form": {"id": 2, "name": "wang2", "talk": "yes"}, "to": {"id": 1}}"#,
                Ok(F::Talk(talk(("2", "wang2"), ("1", ""), "yes"))),
            ),
            (
                "string ids equal number ids",
                r#"{"form": {"id": "2", "name": "wang2", "talk": "s"}, "to": {"id": "1", "name": "wang1"}}"#,
                Ok(F::Talk(talk(("2", "wang2"), ("1", "wang1"), "s"))),
            ),
            (
                "unknown fields are ignored, seq and ts kept",
                r#"{"form": {"id": 2, "name": "wang2", "talk": "t", "avatar": "a.png"}, "to": {"id": 1, "name": "wang1", "x": 1}, "seq": 42, "ts": 1763900000000, "extra": [1]}"#,
                Ok(F::Talk(TalkMessage {
                    seq: Some(Seq(42)),
                    ts: Some(1_763_900_000_000),
                    ..talk(("2", "wang2"), ("1", "wang1"), "t")
                })),
            ),
            ("heartbeat", "online", Ok(F::Heartbeat)),
            (
                "welcome with timing",
                r#"{"type": "welcome", "user": {"id": 1, "name": "wang1"}, "heartbeat": {"interval_ms": 25000, "timeout_ms": 10000}}"#,
                Ok(F::Welcome(Welcome {
                    heartbeat: Some(HeartbeatHint { interval_ms: Some(25000), timeout_ms: Some(10000) }),
                    ..Welcome::new(Person { id: "1".into(), name: "wang1".into() })
                })),
            ),
            (
                "welcome without timing",
                r#"{"type": "welcome", "user": {"id": "u-7", "name": "x"}}"#,
                Ok(F::Welcome(Welcome::new(Person { id: "u-7".into(), name: "x".into() }))),
            ),
            (
                "welcome with features, epoch, reset and last_seq",
                r#"{"type": "welcome", "user": {"id": 1, "name": "w"}, "features": ["resume", "ack", 7, "send"], "epoch": "8c1e", "reset": true, "last_seq": 57}"#,
                Ok(F::Welcome(Welcome {
                    features: vec!["resume".into(), "ack".into(), "send".into()],
                    epoch: Some("8c1e".into()),
                    reset: true,
                    last_seq: Some(Seq(57)),
                    ..Welcome::new(Person { id: "1".into(), name: "w".into() })
                })),
            ),
            (
                "welcome with unusable extensions is a plain welcome",
                r#"{"type": "welcome", "user": {"id": 1, "name": "w"}, "features": "all", "epoch": "", "reset": "yes", "last_seq": -3}"#,
                Ok(F::Welcome(Welcome::new(Person { id: "1".into(), name: "w".into() }))),
            ),
            (
                "welcome with an epoch too long to keep",
                &long_epoch,
                Ok(F::Welcome(Welcome::new(Person { id: "1".into(), name: "w".into() }))),
            ),
            (
                "error frame",
                r#"{"type": "error", "code": "unauthorized", "message": "bad token"}"#,
                Ok(F::Error(ServerError::new("unauthorized", "bad token"))),
            ),
            (
                "error frame answering a send carries its id",
                r#"{"type": "error", "id": "c0ffee", "code": "too_long", "message": "over 4000"}"#,
                Ok(F::Error(ServerError { id: Some("c0ffee".into()), ..ServerError::new("too_long", "over 4000") })),
            ),
            (
                "error frame with an unusable id is an error frame without one",
                r#"{"type": "error", "id": 7, "code": "queue_full"}"#,
                Ok(F::Error(ServerError::new("queue_full", ""))),
            ),
            (
                "error frame without a code",
                r#"{"type": "error", "message": "?"}"#,
                Err(ProtocolError::MissingField("code")),
            ),
            (
                "sent",
                r#"{"type": "sent", "id": "c0ffee", "seq": 17, "ts": 1763900000000, "extra": 1}"#,
                Ok(F::Sent(Sent { id: "c0ffee".into(), seq: Seq(17), ts: 1_763_900_000_000 })),
            ),
            (
                "sent without its seq",
                r#"{"type": "sent", "id": "c0ffee", "ts": 1}"#,
                Err(ProtocolError::MissingField("seq")),
            ),
            (
                "sent with a negative seq",
                r#"{"type": "sent", "id": "c0ffee", "seq": -1, "ts": 1}"#,
                Err(ProtocolError::BadField { field: "seq", reason: String::new() }),
            ),
            (
                "sent with an empty id",
                r#"{"type": "sent", "id": "", "seq": 1, "ts": 1}"#,
                Err(ProtocolError::BadField { field: "id", reason: String::new() }),
            ),
            ("malformed JSON", r#"{"form": "#, Err(ProtocolError::Malformed(String::new()))),
            ("not an object", "[1,2]", Err(ProtocolError::NotAnObject)),
            ("unknown type", r#"{"type": "presence"}"#, Err(ProtocolError::UnknownType("presence".into()))),
            ("no type, not a talk", r#"{"hello": 1}"#, Err(ProtocolError::Unrecognized)),
            (
                "talk missing its text",
                r#"{"form": {"id": 2, "name": "wang2"}, "to": {"id": 1}}"#,
                Err(ProtocolError::MissingField("form.talk")),
            ),
            (
                "talk missing to",
                r#"{"form": {"id": 2, "name": "wang2", "talk": "x"}}"#,
                Err(ProtocolError::MissingField("to")),
            ),
            (
                "talk with an object as id",
                r#"{"form": {"id": {}, "name": "wang2", "talk": "x"}, "to": {"id": 1}}"#,
                Err(ProtocolError::BadField { field: "form.id", reason: String::new() }),
            ),
            (
                "talk with a negative seq is a talk without one",
                r#"{"form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}, "seq": -1}"#,
                Ok(F::Talk(talk(("2", "w"), ("1", ""), "x"))),
            ),
            (
                "talk with a ts that is not a time is a talk without one",
                r#"{"form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}, "seq": 3, "ts": 1e30}"#,
                Ok(F::Talk(TalkMessage { seq: Some(Seq(3)), ..talk(("2", "w"), ("1", ""), "x") })),
            ),
            (
                "seq as a string of digits",
                r#"{"form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}, "seq": "42"}"#,
                Ok(F::Talk(TalkMessage { seq: Some(Seq(42)), ..talk(("2", "w"), ("1", ""), "x") })),
            ),
            (
                "the largest seq",
                r#"{"form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}, "seq": 9223372036854775807, "ts": 0}"#,
                Ok(F::Talk(TalkMessage { seq: Some(Seq::MAX), ts: Some(0), ..talk(("2", "w"), ("1", ""), "x") })),
            ),
            ("empty frame", "", Err(ProtocolError::Malformed(String::new()))),
            ("Online is not online", "Online", Err(ProtocolError::Malformed(String::new()))),
        ];
        for (name, text, want) in cases {
            let got = ServerFrame::parse(text);
            match (&got, &want) {
                // Error details come from serde; the kind is what callers rely on.
                (Err(g), Err(w)) => {
                    assert_eq!(std::mem::discriminant(g), std::mem::discriminant(w), "{name}: got {g:?}, want {w:?}")
                }
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    /// A talk's unusable extensions: the talk is kept without them, and each is a flaw.
    #[test]
    fn unusable_extensions_table() {
        let base = r#""form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}"#;
        /// (name, extensions, seq, ts, fields with a flaw)
        type Case = (&'static str, &'static str, Option<u64>, Option<i64>, &'static [&'static str]);
        let cases: Vec<Case> = vec![
            ("valid seq and ts", r#""seq": 5, "ts": 1763900000000"#, Some(5), Some(1_763_900_000_000), &[]),
            ("null seq and ts are absent", r#""seq": null, "ts": null"#, None, None, &[]),
            ("ts 1e30", r#""seq": 5, "ts": 1e30"#, Some(5), None, &["ts"]),
            ("negative ts", r#""ts": -1"#, None, None, &["ts"]),
            ("ts as a string", r#""ts": "yesterday""#, None, None, &["ts"]),
            ("fractional ts", r#""ts": 1763900000000.5"#, None, None, &["ts"]),
            ("ts past year 9999", r#""ts": 253402300800000"#, None, None, &["ts"]),
            ("negative seq", r#""seq": -1"#, None, None, &["seq"]),
            ("fractional seq", r#""seq": 41.5"#, None, None, &["seq"]),
            ("seq past u64", r#""seq": 18446744073709551616"#, None, None, &["seq"]),
            ("seq past i64", r#""seq": 9223372036854775808"#, None, None, &["seq"]),
            ("seq string not a number", r#""seq": "forty-two""#, None, None, &["seq"]),
            ("seq string with a sign", r#""seq": "-4""#, None, None, &["seq"]),
            ("seq as an object", r#""seq": {"n": 1}"#, None, None, &["seq"]),
            ("both unusable", r#""seq": true, "ts": [1]"#, None, None, &["seq", "ts"]),
        ];
        for (name, ext, seq, ts, flawed) in cases {
            let text = format!("{{{base}, {ext}}}");
            let (frame, flaws) = ServerFrame::parse_with_flaws(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ServerFrame::Talk(t) = frame else { panic!("{name}: not a talk") };
            assert_eq!((t.seq, t.ts), (seq.map(Seq), ts), "{name}");
            let fields: Vec<&str> = flaws.0.iter().map(|f| f.field).collect();
            assert_eq!(fields, flawed, "{name}");
        }
        // A flaw keeps the field's JSON text, control characters escaped and cut short.
        let text = format!("{{{base}, \"seq\": \"\\u001b]0;pwned\\u0007{}\"}}", "z".repeat(500));
        let (_, flaws) = ServerFrame::parse_with_flaws(&text).unwrap();
        let value = &flaws.0[0].value;
        assert!(value.starts_with(r#""\u001b]0;pwned\u0007zz"#), "{value}");
        assert!(!value.contains('\u{1b}') && !value.contains('\u{7}'), "{value:?}");
        assert_eq!(value.chars().count(), FLAW_TEXT_CHARS);
    }

    /// One row per `send` shape (§1.4) a server must accept or refuse.
    #[test]
    fn client_send_frames_table() {
        let send = |id: &str, to: &str, talk: &str| {
            Ok(ClientFrame::Send(SendTalk { id: id.into(), to: to.into(), talk: talk.into() }))
        };
        let long_id = format!(r#"{{"type": "send", "id": "{}", "to": {{"id": 2}}, "talk": "x"}}"#, "i".repeat(129));
        let long_talk = "é".repeat(MAX_SEND_TALK_CHARS + 1);
        let long_talk_frame = format!(r#"{{"type": "send", "id": "a", "to": {{"id": 2}}, "talk": "{long_talk}"}}"#);
        let cases: Vec<(&str, &str, Result<ClientFrame, ProtocolError>)> = vec![
            (
                "the spec's sample",
                r#"{"type": "send", "id": "c0ffee", "to": {"id": 2}, "talk": "on my way"}"#,
                send("c0ffee", "2", "on my way"),
            ),
            (
                "string id of the recipient, unknown fields ignored",
                r#"{"type": "send", "id": "c0ffee", "to": {"id": "2", "name": "x"}, "talk": "t", "form": {"id": 9}}"#,
                send("c0ffee", "2", "t"),
            ),
            (
                "a talk over the limit still parses (the server answers too_long)",
                &long_talk_frame,
                send("a", "2", &long_talk),
            ),
            (
                "without an id",
                r#"{"type": "send", "to": {"id": 2}, "talk": "x"}"#,
                Err(ProtocolError::MissingField("id")),
            ),
            (
                "with a number as id",
                r#"{"type": "send", "id": 5, "to": {"id": 2}, "talk": "x"}"#,
                Err(ProtocolError::BadField { field: "id", reason: String::new() }),
            ),
            (
                "with a blank id",
                r#"{"type": "send", "id": "  ", "to": {"id": 2}, "talk": "x"}"#,
                Err(ProtocolError::BadField { field: "id", reason: String::new() }),
            ),
            ("with an id too long", &long_id, Err(ProtocolError::BadField { field: "id", reason: String::new() })),
            ("without to", r#"{"type": "send", "id": "a", "talk": "x"}"#, Err(ProtocolError::MissingField("to"))),
            (
                "with to as a bare id",
                r#"{"type": "send", "id": "a", "to": 2, "talk": "x"}"#,
                Err(ProtocolError::BadField { field: "to", reason: String::new() }),
            ),
            (
                "without to.id",
                r#"{"type": "send", "id": "a", "to": {}, "talk": "x"}"#,
                Err(ProtocolError::MissingField("to.id")),
            ),
            (
                "without talk",
                r#"{"type": "send", "id": "a", "to": {"id": 2}}"#,
                Err(ProtocolError::MissingField("talk")),
            ),
            (
                "with talk not a string",
                r#"{"type": "send", "id": "a", "to": {"id": 2}, "talk": 5}"#,
                Err(ProtocolError::BadField { field: "talk", reason: String::new() }),
            ),
        ];
        for (name, text, want) in cases {
            let got = ClientFrame::parse(text);
            match (&got, &want) {
                (Err(g), Err(w)) => {
                    assert_eq!(std::mem::discriminant(g), std::mem::discriminant(w), "{name}: got {g:?}, want {w:?}");
                    if let (ProtocolError::MissingField(g), ProtocolError::MissingField(w)) = (g, w) {
                        assert_eq!(g, w, "{name}");
                    }
                    if let (ProtocolError::BadField { field: g, .. }, ProtocolError::BadField { field: w, .. }) = (g, w)
                    {
                        assert_eq!(g, w, "{name}");
                    }
                }
                _ => assert_eq!(got, want, "{name}"),
            }
        }
    }

    #[test]
    fn send_and_sent_are_the_spec_shapes() {
        let send = ClientFrame::Send(SendTalk { id: "c0ffee".into(), to: 2.into(), talk: "on my way".into() });
        let v: Value = serde_json::from_str(&send.to_text()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "send", "id": "c0ffee", "to": {"id": 2}, "talk": "on my way"}));
        let sent = ServerFrame::Sent(Sent { id: "c0ffee".into(), seq: Seq(17), ts: 1_763_900_000_000 });
        let v: Value = serde_json::from_str(&sent.to_text()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "sent", "id": "c0ffee", "seq": 17, "ts": 1_763_900_000_000_i64}));
        let err = ServerFrame::Error(ServerError { id: Some("c0ffee".into()), ..ServerError::new("too_long", "m") });
        let v: Value = serde_json::from_str(&err.to_text()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "error", "id": "c0ffee", "code": "too_long", "message": "m"}));
    }

    #[test]
    fn oversized_frames_are_refused_before_parsing() {
        let text = format!(
            r#"{{"form": {{"id": 2, "name": "w", "talk": "{}"}}, "to": {{"id": 1}}}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(ServerFrame::parse(&text), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn client_frames_round_trip() {
        let frames = vec![
            ClientFrame::Heartbeat,
            ClientFrame::Hello(Hello {
                uuid: "u".into(),
                token: Token::new("s3cret").unwrap(),
                resume: None,
                epoch: None,
                client: None,
            }),
            ClientFrame::Hello(Hello {
                uuid: "u".into(),
                token: Token::new("s3cret").unwrap(),
                resume: Some(Seq(41)),
                epoch: None,
                client: Some("talkbell/0.1".into()),
            }),
            ClientFrame::Hello(Hello {
                uuid: "u".into(),
                token: Token::new("s3cret").unwrap(),
                resume: Some(Seq(41)),
                epoch: Some("8c1e".into()),
                client: None,
            }),
            ClientFrame::Ack(Seq(42)),
            ClientFrame::Talk(talk(("1", "wang1"), ("2", "wang2"), "reply")),
            ClientFrame::Send(SendTalk { id: "c0ffee".into(), to: "u-2".into(), talk: "on my way".into() }),
        ];
        for f in frames {
            assert_eq!(ClientFrame::parse(&f.to_text()).unwrap(), f);
        }
        assert_eq!(ClientFrame::Heartbeat.to_text(), "online");
    }

    #[test]
    fn hello_is_the_original_shape() {
        let hello = ClientFrame::Hello(Hello {
            uuid: "dev".into(),
            token: Token::new("tok").unwrap(),
            resume: None,
            epoch: Some("ignored without a resume".into()),
            client: None,
        });
        let v: Value = serde_json::from_str(&hello.to_text()).unwrap();
        assert_eq!(v, serde_json::json!({"uuid": "dev", "token": "tok"}));
    }

    #[test]
    fn server_frames_round_trip() {
        let frames = vec![
            ServerFrame::Heartbeat,
            ServerFrame::Talk(TalkMessage {
                seq: Some(Seq(7)),
                ts: Some(5),
                ..talk(("2", "wang2"), ("1", "wang1"), "hi")
            }),
            ServerFrame::Welcome(Welcome::new(Person { id: 1.into(), name: "wang1".into() })),
            ServerFrame::Welcome(Welcome {
                heartbeat: Some(HeartbeatHint { interval_ms: Some(1), timeout_ms: None }),
                features: vec!["send".into()],
                epoch: Some("e-2".into()),
                reset: true,
                last_seq: Some(Seq(9)),
                ..Welcome::new(Person { id: "u".into(), name: String::new() })
            }),
            ServerFrame::Error(ServerError::new("unauthorized", "no")),
            ServerFrame::Error(ServerError { id: Some("c0ffee".into()), ..ServerError::new("queue_full", "full") }),
            ServerFrame::Sent(Sent { id: "c0ffee".into(), seq: Seq(3), ts: 0 }),
        ];
        for f in frames {
            assert_eq!(ServerFrame::parse(&f.to_text()).unwrap(), f);
        }
    }

    #[test]
    fn ids_keep_their_wire_form() {
        let t = talk(("2", "a"), ("007", "b"), "x");
        let v: Value = serde_json::from_str(&ServerFrame::Talk(t).to_text()).unwrap();
        assert_eq!(v["form"]["id"], serde_json::json!(2));
        assert_eq!(v["to"]["id"], serde_json::json!("007"));
    }

    #[test]
    fn token_never_prints() {
        let t = Token::new("hunter2").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        let hello = Hello { uuid: "u".into(), token: t, resume: None, epoch: None, client: None };
        assert!(!format!("{hello:?}").contains("hunter2"));
        assert!(Token::new("  ").is_err());
    }

    #[test]
    fn notification_text_is_cut_at_300_chars() {
        assert_eq!(notification_text("short"), "short");
        let exact = "é".repeat(300);
        assert_eq!(notification_text(&exact), exact);
        let long = "é".repeat(301);
        let cut = notification_text(&long);
        assert_eq!(cut.chars().count(), 300);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_float_user_id_is_a_user_only_when_whole_and_exact() {
        let id = |json: &str| serde_json::from_str::<UserId>(json).ok().map(|id| id.to_string());
        assert_eq!(id("1.0"), Some("1".into()));
        assert_eq!(id("-0.0"), Some("0".into()));
        assert_eq!(id("-42.0"), Some("-42".into()));
        assert_eq!(id("4503599627370496.0"), Some("4503599627370496".into()));
        // (serde_json's float parser may be one ulp off up there; the conversion is exact.)
        assert_eq!(whole_number(8_999_999_999_999_999.0), Some(8_999_999_999_999_999));
        assert_eq!(whole_number(-8_999_999_999_999_999.0), Some(-8_999_999_999_999_999));
        for refused in ["1.5", "9.0e15", "-9.0e15", "1e300", "-1e300"] {
            assert_eq!(id(refused), None, "{refused}");
        }
        assert_eq!(whole_number(f64::NAN), None);
        assert_eq!(whole_number(f64::INFINITY), None);
        assert_eq!(whole_number(f64::NEG_INFINITY), None);
    }
}
