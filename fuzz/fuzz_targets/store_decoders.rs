//! The decoders of what Redis hands back: an operation's hash
//! (`Operation::from_hash`), a transition script's reply
//! (`Outcome::parse`, on arbitrary `redis::Value` trees) and the event
//! frames the relay reads from pub/sub (`FrameHead`, `EventFrame`).
//! Redis data can be stale, partial or written by another version: the
//! decoders must refuse or degrade, never panic, and what they render must
//! serialise.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use longrun_shared::model::{EventFrame, FrameHead, Operation};
use longrun_shared::store::Outcome;
use redis::Value;

/// A field of the operation hash: one of the known names, or any other.
#[derive(Debug, Arbitrary)]
enum Field {
    Known(u8),
    Other(String),
}

const KNOWN: &[&str] = &[
    "id",
    "kind",
    "status",
    "seq",
    "attempt",
    "max_attempts",
    "progress",
    "parent",
    "root",
    "gen",
    "owner",
    "result",
    "error",
    "input",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "c_total",
    "c_queued",
    "c_running",
    "c_succeeded",
    "c_failed",
    "c_cancelled",
    "lease_until",
    "options",
];

/// A Redis reply, built by the fuzzer.
#[derive(Debug, Arbitrary)]
enum Reply {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Text(String),
    Simple(String),
    Okay,
    Double(f64),
    Boolean(bool),
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
}

impl From<Reply> for Value {
    fn from(reply: Reply) -> Value {
        match reply {
            Reply::Nil => Value::Nil,
            Reply::Int(n) => Value::Int(n),
            Reply::Bulk(bytes) => Value::BulkString(bytes),
            Reply::Text(text) => Value::BulkString(text.into_bytes()),
            Reply::Simple(text) => Value::SimpleString(text),
            Reply::Okay => Value::Okay,
            Reply::Double(d) => Value::Double(d),
            Reply::Boolean(b) => Value::Boolean(b),
            Reply::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Reply::Map(pairs) => Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), Value::from(v)))
                    .collect(),
            ),
            Reply::Set(items) => Value::Set(items.into_iter().map(Value::from).collect()),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    hash: Vec<(Field, String)>,
    reply: Reply,
    fixed: u8,
    frame: String,
}

fuzz_target!(|input: Input| {
    let hash: HashMap<String, String> = input
        .hash
        .into_iter()
        .map(|(field, value)| {
            let name = match field {
                Field::Known(i) => KNOWN[usize::from(i) % KNOWN.len()].to_owned(),
                Field::Other(name) => name,
            };
            (name, value)
        })
        .collect();
    if let Some(stored) = Operation::from_hash(&hash) {
        let op = stored.operation;
        assert_eq!(op.done, op.status.is_terminal());
        assert_eq!(Some(&op.id), hash.get("id"));
        serde_json::to_string(&op).expect("a decoded operation serialises");
    }

    let fixed = usize::from(input.fixed % 8);
    if let Ok(outcome) = Outcome::parse(input.reply.into(), fixed) {
        assert_eq!(outcome.values.len(), fixed);
        let _ = outcome.value(usize::from(input.fixed));
    }

    let _ = serde_json::from_str::<FrameHead>(&input.frame);
    if let Ok(frame) = serde_json::from_str::<EventFrame>(&input.frame) {
        let event = frame.into_event();
        serde_json::to_string(&event).expect("an event serialises");
    }
});
