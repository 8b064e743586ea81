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
                if v.fract() == 0.0 && v.is_finite() && v.abs() < 9.0e15 {
                    Ok(UserId(format!("{}", v as i64)))
                } else {
                    Err(E::custom("a user id must be a whole number or a string"))
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
}

/// The heartbeat timing a server prefers (§2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HeartbeatHint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub user: Person,
    pub heartbeat: Option<HeartbeatHint>,
}

/// `{"type": "error", ...}` (§2.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerError {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// Every frame a server sends (§2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    Heartbeat,
    Talk(TalkMessage),
    Welcome(Welcome),
    Error(ServerError),
}

/// The hello (§1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub uuid: String,
    pub token: Token,
    pub resume: Option<Seq>,
    pub client: Option<String>,
}

/// Every frame a client sends (§1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Hello(Hello),
    Heartbeat,
    Ack(Seq),
    Talk(TalkMessage),
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
fn parse_talk(obj: &Map<String, Value>) -> Result<TalkMessage, ProtocolError> {
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
    Ok(TalkMessage { from, to, talk, seq: opt_typed(obj, "seq")?, ts: opt_typed(obj, "ts")? })
}

impl ServerFrame {
    /// Parses one text frame from a server.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ProtocolError::TooLarge { size: text.len(), limit: MAX_MESSAGE_BYTES });
        }
        if text == HEARTBEAT {
            return Ok(ServerFrame::Heartbeat);
        }
        let obj = take_object(text)?;
        match frame_type(&obj) {
            Some("welcome") => {
                let user = typed(field(&obj, "user")?, "user")?;
                let heartbeat = opt_typed(&obj, "heartbeat")?;
                Ok(ServerFrame::Welcome(Welcome { user, heartbeat }))
            }
            Some("error") => Ok(ServerFrame::Error(typed(&Value::Object(obj), "error")?)),
            Some("talk") | None if obj.contains_key("form") || obj.contains_key("from") => {
                parse_talk(&obj).map(ServerFrame::Talk)
            }
            Some(other) => Err(ProtocolError::UnknownType(other.to_owned())),
            None => Err(ProtocolError::Unrecognized),
        }
    }

    /// The frame as the text a server sends.
    pub fn to_text(&self) -> String {
        match self {
            ServerFrame::Heartbeat => HEARTBEAT.to_owned(),
            ServerFrame::Talk(t) => talk_json(t).to_string(),
            ServerFrame::Welcome(w) => {
                let mut v = serde_json::json!({"type": "welcome", "user": w.user});
                if let Some(hb) = &w.heartbeat {
                    v["heartbeat"] = serde_json::to_value(hb).unwrap_or(Value::Null);
                }
                v.to_string()
            }
            ServerFrame::Error(e) => {
                serde_json::json!({"type": "error", "code": e.code, "message": e.message}).to_string()
            }
        }
    }
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
            Some("talk") | None if obj.contains_key("form") || obj.contains_key("from") => {
                parse_talk(&obj).map(ClientFrame::Talk)
            }
            None if obj.contains_key("token") || obj.contains_key("uuid") => {
                let uuid: String = typed(field(&obj, "uuid")?, "uuid")?;
                let token: String = typed(field(&obj, "token")?, "token")?;
                Ok(ClientFrame::Hello(Hello {
                    uuid,
                    token: Token::new(token)?,
                    resume: opt_typed(&obj, "resume")?,
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
                }
                if let Some(client) = &h.client {
                    v["client"] = client.clone().into();
                }
                v.to_string()
            }
            ClientFrame::Ack(seq) => serde_json::json!({"type": "ack", "seq": seq.0}).to_string(),
            ClientFrame::Talk(t) => talk_json(t).to_string(),
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
                    user: Person { id: "1".into(), name: "wang1".into() },
                    heartbeat: Some(HeartbeatHint { interval_ms: Some(25000), timeout_ms: Some(10000) }),
                })),
            ),
            (
                "welcome without timing",
                r#"{"type": "welcome", "user": {"id": "u-7", "name": "x"}}"#,
                Ok(F::Welcome(Welcome { user: Person { id: "u-7".into(), name: "x".into() }, heartbeat: None })),
            ),
            (
                "error frame",
                r#"{"type": "error", "code": "unauthorized", "message": "bad token"}"#,
                Ok(F::Error(ServerError { code: "unauthorized".into(), message: "bad token".into() })),
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
                "talk with a negative seq",
                r#"{"form": {"id": 2, "name": "w", "talk": "x"}, "to": {"id": 1}, "seq": -1}"#,
                Err(ProtocolError::BadField { field: "seq", reason: String::new() }),
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
                client: None,
            }),
            ClientFrame::Hello(Hello {
                uuid: "u".into(),
                token: Token::new("s3cret").unwrap(),
                resume: Some(Seq(41)),
                client: Some("talkbell/0.1".into()),
            }),
            ClientFrame::Ack(Seq(42)),
            ClientFrame::Talk(talk(("1", "wang1"), ("2", "wang2"), "reply")),
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
            ServerFrame::Welcome(Welcome { user: Person { id: 1.into(), name: "wang1".into() }, heartbeat: None }),
            ServerFrame::Error(ServerError { code: "unauthorized".into(), message: "no".into() }),
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
        let hello = Hello { uuid: "u".into(), token: t, resume: None, client: None };
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
}
