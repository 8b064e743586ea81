//! Properties of the one parser: no frame can panic it, and every talk it parses
//! round-trips (serialized and parsed again, it is the same talk).

use proptest::prelude::*;
use serde_json::{Map, Value};
use talkbell_core::protocol::{ClientFrame, Person, Seq, ServerFrame, TalkMessage, UserId, MAX_TS_MS};

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Keys the parser looks at, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "form",
            "from",
            "to",
            "id",
            "name",
            "talk",
            "seq",
            "ts",
            "user",
            "heartbeat",
            "interval_ms",
            "timeout_ms",
            "features",
            "epoch",
            "reset",
            "last_seq",
            "code",
            "message",
            "uuid",
            "token",
            "resume",
            "client",
        ])
        .prop_map(str::to_owned),
        ".{0,6}",
    ]
}

/// Objects shaped like frames, with any values in their fields: they reach past the
/// first checks into the talk, welcome and hello readers.
fn frame_like() -> impl Strategy<Value = Value> {
    let person = || {
        (json(), json(), json()).prop_map(|(id, name, talk)| {
            let mut m = Map::new();
            m.insert("id".into(), id);
            m.insert("name".into(), name);
            m.insert("talk".into(), talk);
            Value::Object(m)
        })
    };
    let kind = prop::sample::select(vec!["talk", "welcome", "error", "ack", "other"]);
    (prop::option::of(kind), person(), person(), json(), json(), json(), json(), any::<bool>()).prop_map(
        |(kind, form, to, seq, ts, epoch, last_seq, from_alias)| {
            let mut m = Map::new();
            if let Some(kind) = kind {
                m.insert("type".into(), kind.into());
            }
            m.insert(if from_alias { "from" } else { "form" }.into(), form.clone());
            m.insert("to".into(), to);
            m.insert("user".into(), form);
            m.insert("seq".into(), seq);
            m.insert("ts".into(), ts);
            m.insert("epoch".into(), epoch);
            m.insert("last_seq".into(), last_seq);
            Value::Object(m)
        },
    )
}

/// An id as the parser leaves it: trimmed text, not empty.
fn user_id() -> impl Strategy<Value = UserId> {
    prop_oneof![any::<u64>().prop_map(UserId::from), "[^\\s]([^\\n]{0,8}[^\\s])?".prop_map(UserId::new)]
}

fn talk() -> impl Strategy<Value = TalkMessage> {
    let seq = prop::option::of((0..=Seq::MAX.0).prop_map(Seq));
    let ts = prop::option::of(0..=MAX_TS_MS);
    (user_id(), ".{0,10}", user_id(), ".{0,10}", "(?s).{0,40}", seq, ts).prop_map(
        |(from, from_name, to, to_name, text, seq, ts)| TalkMessage {
            from: Person { id: from, name: from_name },
            to: Person { id: to, name: to_name },
            talk: text,
            seq,
            ts,
        },
    )
}

/// A parsed talk, serialized and parsed again, is the same talk.
fn round_trips(text: &str) -> Result<(), TestCaseError> {
    if let Ok(ServerFrame::Talk(t)) = ServerFrame::parse(text) {
        let again = ServerFrame::parse(&ServerFrame::Talk(t.clone()).to_text());
        prop_assert_eq!(again, Ok(ServerFrame::Talk(t)));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_string_never_panics_the_parsers(text in "(?s).{0,200}") {
        let _ = ServerFrame::parse_with_flaws(&text);
        let _ = ClientFrame::parse(&text);
        round_trips(&text)?;
    }

    #[test]
    fn any_json_value_never_panics_the_parsers(v in json()) {
        let text = v.to_string();
        let _ = ServerFrame::parse_with_flaws(&text);
        let _ = ClientFrame::parse(&text);
        round_trips(&text)?;
    }

    #[test]
    fn frame_shaped_json_never_panics_and_its_talks_round_trip(v in frame_like()) {
        let text = v.to_string();
        let _ = ClientFrame::parse(&text);
        if let Ok((ServerFrame::Talk(t), flaws)) = ServerFrame::parse_with_flaws(&text) {
            // A flawed field is absent, never half-read.
            if flaws.has("seq") { prop_assert_eq!(t.seq, None); }
            if flaws.has("ts") { prop_assert_eq!(t.ts, None); }
        }
        round_trips(&text)?;
    }

    #[test]
    fn every_talk_round_trips_through_the_wire(t in talk()) {
        let frame = ServerFrame::Talk(t);
        prop_assert_eq!(ServerFrame::parse(&frame.to_text()), Ok(frame.clone()));
        let (_, flaws) = ServerFrame::parse_with_flaws(&frame.to_text()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(flaws.is_empty(), "{:?}", flaws);
    }
}
