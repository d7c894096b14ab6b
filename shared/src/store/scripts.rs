//! The Lua transition scripts (`shared/lua/*.lua`) and how to call them.
//!
//! Each script is `lib.lua` followed by its own body, compiled once and run
//! with `EVALSHA`; a Redis that lost its script cache (restart, `SCRIPT
//! FLUSH`) gets them loaded again on the `NOSCRIPT` error, transparently.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::StoreError;

const LIB: &str = include_str!("../../lua/lib.lua");

fn with_lib(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

const BATCH: &str = include_str!("../../lua/batch.lua");

/// A transition run for many operations of one slot in one call: the body
/// becomes the function `one`, which `batch.lua` calls per operation.
fn batched(body: &str) -> Script {
    Script::new(&format!(
        "{LIB}\nlocal function one()\n{body}\nend\n{BATCH}"
    ))
}

macro_rules! transition {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| with_lib(include_str!(concat!("../../lua/", $file))));
    };
}

transition!(CREATE, "create.lua");
transition!(CLAIM, "claim.lua");
transition!(HEARTBEAT, "heartbeat.lua");
transition!(PROGRESS, "progress.lua");
transition!(COMPLETE, "complete.lua");
transition!(FAIL, "fail.lua");
transition!(HANDOFF, "handoff.lua");
transition!(SPAWN, "spawn.lua");
transition!(WAIT_CHILDREN, "wait_children.lua");
transition!(CANCEL, "cancel.lua");
transition!(DELETE, "delete.lua");
transition!(EXPIRE, "expire.lua");

/// `claim.lua` for a batch of queue entries (see `batch.lua`).
pub static CLAIM_BATCH: LazyLock<Script> =
    LazyLock::new(|| batched(include_str!("../../lua/claim.lua")));
/// `complete.lua` for a batch of finished jobs (see `batch.lua`).
pub static COMPLETE_BATCH: LazyLock<Script> =
    LazyLock::new(|| batched(include_str!("../../lua/complete.lua")));

/// The scheduler's tick: moves due retries to the ready stream and lists
/// due deadlines and index expiries; not a transition (no lib).
pub static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/promote.lua")));

/// A worker's queue read: new entries of one shard, and the id to wait
/// after when there were none; not a transition (no lib).
pub static READ: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/read.lua")));

/// Agrees on the deployment's queue shard count (it only grows); not a
/// transition (no lib).
pub static SHARDS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/shards.lua")));

/// Every script, for loading them all at once.
pub fn all() -> [&'static Script; 17] {
    [
        &CREATE,
        &CLAIM,
        &CLAIM_BATCH,
        &COMPLETE_BATCH,
        &HEARTBEAT,
        &PROGRESS,
        &COMPLETE,
        &FAIL,
        &HANDOFF,
        &SPAWN,
        &WAIT_CHILDREN,
        &CANCEL,
        &DELETE,
        &EXPIRE,
        &PROMOTE,
        &READ,
        &SHARDS,
    ]
}

/// The parsed reply of a transition script: its status word, its own
/// values, and the follow-ups every transition reports (see `outcome` in
/// lib.lua).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub word: String,
    pub values: Vec<String>,
    /// Running operations the script finished; their handlers must stop.
    pub signalled: Vec<String>,
    /// Keys outside the tree's slot to expire with operations that finished
    /// (a child's root index, a root's idempotency key).
    pub expire_keys: Vec<String>,
    /// Parents whose handler resumes now: (id, parked queue entry id).
    pub ready_parents: Vec<(String, String)>,
    /// Root operations that became terminal: (id, owner). Their entries in
    /// the list indexes are removed once they expire.
    pub finished_roots: Vec<(String, String)>,
    /// Queue entries of parked parents that became terminal, to acknowledge.
    pub acks: Vec<String>,
}

impl Outcome {
    /// Parses a reply carrying `fixed` script-specific values after the word.
    pub fn parse(reply: Value, fixed: usize) -> Result<Outcome, StoreError> {
        let items = strings(reply)?;
        let mut iter = items.into_iter();
        let word = iter
            .next()
            .ok_or_else(|| StoreError::data("empty script reply"))?;
        let values: Vec<String> = iter.by_ref().take(fixed).collect();
        if values.len() != fixed {
            return Err(StoreError::data("short script reply"));
        }
        let list = |iter: &mut std::vec::IntoIter<String>, per_item: usize| {
            let count: usize = iter.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            iter.by_ref()
                .take(count.saturating_mul(per_item))
                .collect::<Vec<String>>()
        };
        let signalled = list(&mut iter, 1);
        let expire_keys = list(&mut iter, 1);
        let ready = list(&mut iter, 2);
        let pairs = |items: Vec<String>| {
            items
                .chunks_exact(2)
                .map(|pair| (pair[0].clone(), pair[1].clone()))
                .collect()
        };
        let ready_parents = pairs(ready);
        let finished_roots = pairs(list(&mut iter, 2));
        let acks = list(&mut iter, 1);
        Ok(Outcome {
            word,
            values,
            signalled,
            expire_keys,
            ready_parents,
            finished_roots,
            acks,
        })
    }

    pub fn value(&self, index: usize) -> &str {
        self.values.get(index).map_or("", String::as_str)
    }
}

/// Flattens a script's array reply into strings (integers rendered).
pub fn strings(reply: Value) -> Result<Vec<String>, StoreError> {
    match reply {
        Value::Array(items) => items.into_iter().map(string).collect(),
        other => Ok(vec![string(other)?]),
    }
}

pub fn string(value: Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes).map_err(|_| StoreError::data("non-UTF-8 reply"))
        }
        Value::SimpleString(text) => Ok(text),
        Value::Int(n) => Ok(n.to_string()),
        Value::Nil => Ok(String::new()),
        Value::Okay => Ok("OK".into()),
        Value::Double(d) => Ok(d.to_string()),
        Value::Boolean(b) => Ok(if b { "1" } else { "0" }.into()),
        other => Err(StoreError::data(format!("unexpected reply {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn outcome_parses_values_and_follow_up_lists() {
        let reply = Value::Array(vec![
            bulk("retry"),
            Value::Int(3),
            bulk("1700"),
            Value::Int(1),
            bulk("sig"),
            Value::Int(2),
            bulk("c1"),
            bulk("c2"),
            Value::Int(1),
            bulk("p1"),
            bulk("1-0"),
            Value::Int(1),
            bulk("r1"),
            bulk("alice"),
            Value::Int(1),
            bulk("2-0"),
        ]);
        let outcome = Outcome::parse(reply, 2).expect("parses");
        assert_eq!(outcome.word, "retry");
        assert_eq!(outcome.value(0), "3");
        assert_eq!(outcome.value(1), "1700");
        assert_eq!(outcome.signalled, vec!["sig"]);
        assert_eq!(outcome.expire_keys, vec!["c1", "c2"]);
        assert_eq!(outcome.ready_parents, vec![("p1".into(), "1-0".into())]);
        assert_eq!(outcome.finished_roots, vec![("r1".into(), "alice".into())]);
        assert_eq!(outcome.acks, vec!["2-0"]);
    }

    #[test]
    fn an_absurd_list_count_takes_what_is_there() {
        let reply = Value::Array(vec![
            bulk("ok"),
            Value::Int(0),
            Value::Int(0),
            Value::Int(i64::MAX),
            bulk("p1"),
            bulk("1-0"),
        ]);
        let outcome = Outcome::parse(reply, 0).expect("parses");
        assert_eq!(outcome.ready_parents, vec![("p1".into(), "1-0".into())]);
    }

    #[test]
    fn every_script_compiles_to_a_distinct_hash() {
        let mut hashes: Vec<&str> = all().iter().map(|s| s.get_hash()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), all().len());
    }
}
