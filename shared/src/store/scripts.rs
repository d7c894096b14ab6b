//! The Lua function library (`shared/lua/*.lua`) and how to call it.
//!
//! Every script is a function of one Redis function library (Redis 7+):
//! `lib.lua`'s helpers and `batch.lua`'s runner come first, then each
//! script's body becomes a function registered with
//! `redis.register_function` and called with `FCALL`. The library is
//! compiled and its helpers defined once, at `FUNCTION LOAD`, not again on
//! every call as an `EVALSHA` script's would be (that cost about as much
//! as a whole small transition). Function names carry a hash of the
//! library's text, so processes of two longrun versions can share a Redis
//! during an upgrade. A Redis that lost the library (a restart without
//! persistence, `FUNCTION FLUSH`, an empty replica promoted) gets it loaded
//! again on the "Function not found" error, transparently.

use std::fmt::Write as _;
use std::sync::LazyLock;

use redis::Value;
use sha2::{Digest, Sha256};

use super::StoreError;

const LIB: &str = include_str!("../../lua/lib.lua");
const BATCH: &str = include_str!("../../lua/batch.lua");

/// How a script's body becomes a function of the library.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    /// A transition: `begin` sets the call's common arguments first.
    Transition,
    /// A transition with a second function, `NAME_batch`, that runs it for
    /// many operations of one slot in one call (`batch.lua`).
    Batched,
    /// Not a transition (no common arguments): the body alone.
    Plain,
}

/// Every script: its function name, body and form.
const SCRIPTS: [(&str, &str, Form); 15] = [
    (
        "create",
        include_str!("../../lua/create.lua"),
        Form::Transition,
    ),
    ("claim", include_str!("../../lua/claim.lua"), Form::Batched),
    (
        "heartbeat",
        include_str!("../../lua/heartbeat.lua"),
        Form::Transition,
    ),
    (
        "progress",
        include_str!("../../lua/progress.lua"),
        Form::Transition,
    ),
    (
        "complete",
        include_str!("../../lua/complete.lua"),
        Form::Batched,
    ),
    ("fail", include_str!("../../lua/fail.lua"), Form::Transition),
    (
        "handoff",
        include_str!("../../lua/handoff.lua"),
        Form::Transition,
    ),
    (
        "spawn",
        include_str!("../../lua/spawn.lua"),
        Form::Transition,
    ),
    (
        "wait_children",
        include_str!("../../lua/wait_children.lua"),
        Form::Transition,
    ),
    (
        "cancel",
        include_str!("../../lua/cancel.lua"),
        Form::Transition,
    ),
    (
        "delete",
        include_str!("../../lua/delete.lua"),
        Form::Transition,
    ),
    (
        "expire",
        include_str!("../../lua/expire.lua"),
        Form::Transition,
    ),
    (
        "promote",
        include_str!("../../lua/promote.lua"),
        Form::Plain,
    ),
    ("read", include_str!("../../lua/read.lua"), Form::Plain),
    ("shards", include_str!("../../lua/shards.lua"), Form::Plain),
];

/// The library: its `FUNCTION LOAD` source and the prefix of its
/// function names (`lr_` and the first 12 hex digits of the text's SHA-256).
pub struct Library {
    pub source: String,
    prefix: String,
}

pub static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    let mut body = format!("{LIB}\n{BATCH}\n");
    for (name, script, _) in SCRIPTS {
        let _ = write!(body, "\nlocal function {name}(KEYS, ARGV)\n{script}\nend\n");
    }
    let tag = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
    let prefix = format!("lr_{tag}_");
    let mut source = format!("#!lua name=longrun_{tag}\n{body}");
    for (name, _, form) in SCRIPTS {
        let call = match form {
            Form::Plain => name.to_owned(),
            Form::Transition | Form::Batched => {
                format!("function(KEYS, ARGV) begin(ARGV) return {name}(KEYS, ARGV) end")
            }
        };
        let _ = writeln!(source, "redis.register_function('{prefix}{name}', {call})");
        if form == Form::Batched {
            let _ = writeln!(
                source,
                "redis.register_function('{prefix}{name}_batch', \
                 function(KEYS, ARGV) begin(ARGV) return run_batch({name}, KEYS, ARGV) end)"
            );
        }
    }
    Library { source, prefix }
});

/// One function of the library.
pub struct Function {
    name: String,
}

impl Function {
    fn named(name: &str) -> Function {
        Function {
            name: format!("{}{name}", LIBRARY.prefix),
        }
    }

    /// Its name in Redis, for `FCALL`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a call on one key, `FCALL name 1 key args…`, to `pipe`.
    pub fn add_call(
        &self,
        pipe: &mut redis::Pipeline,
        key: impl redis::ToRedisArgs,
        args: impl redis::ToRedisArgs,
    ) {
        pipe.cmd("FCALL").arg(&self.name).arg(1).arg(key).arg(args);
    }
}

macro_rules! functions {
    ($($(#[$doc:meta])* $static:ident = $name:literal;)*) => {
        $($(#[$doc])* pub static $static: LazyLock<Function> = LazyLock::new(|| Function::named($name));)*
    };
}

functions! {
    CREATE = "create";
    CLAIM = "claim";
    /// `claim` for a batch of queue entries (see `batch.lua`).
    CLAIM_BATCH = "claim_batch";
    HEARTBEAT = "heartbeat";
    PROGRESS = "progress";
    COMPLETE = "complete";
    /// `complete` for a batch of finished jobs (see `batch.lua`).
    COMPLETE_BATCH = "complete_batch";
    FAIL = "fail";
    HANDOFF = "handoff";
    SPAWN = "spawn";
    WAIT_CHILDREN = "wait_children";
    CANCEL = "cancel";
    DELETE = "delete";
    EXPIRE = "expire";
    /// The scheduler's tick: moves due retries to the ready stream and lists
    /// due deadlines and index expiries; not a transition.
    PROMOTE = "promote";
    /// A worker's queue read: new entries of one shard, and the id to wait
    /// after when there were none; not a transition.
    READ = "read";
    /// Agrees on the deployment's queue shard count (it only grows); not a
    /// transition.
    SHARDS = "shards";
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
    fn every_function_is_registered_once_under_the_library_prefix() {
        let all = [
            &CREATE,
            &CLAIM,
            &CLAIM_BATCH,
            &HEARTBEAT,
            &PROGRESS,
            &COMPLETE,
            &COMPLETE_BATCH,
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
        ];
        for function in all {
            let registration = format!("redis.register_function('{}',", function.name());
            assert_eq!(
                LIBRARY.source.matches(&registration).count(),
                1,
                "{}",
                function.name()
            );
        }
        assert_eq!(
            LIBRARY.source.matches("redis.register_function(").count(),
            all.len()
        );
        assert!(LIBRARY.source.starts_with("#!lua name=longrun_"));
    }
}
