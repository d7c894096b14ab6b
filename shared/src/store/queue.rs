//! The work queue: a Redis stream per shard read by the consumer group
//! `workers`, and a sorted set of delayed retries per shard.
//!
//! An entry names an operation, its tree and the generation it was queued
//! as. The stream's pending-entries list is the lease table: an entry stays
//! pending until the worker acknowledges it after a terminal transition, so
//! a worker that dies leaves it to be taken over (`XAUTOCLAIM`) by a live
//! worker's reaper. The claim script, not the stream, decides what an entry
//! means: a stale generation or a terminal operation is simply dropped.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{Pipeline, Value};

use super::scripts::{self, Outcome};
use super::{Store, StoreError, StoreResult};
use crate::keys::WORKER_GROUP;

/// Length of an operation id (a hyphenated UUID); an `expiring` member is
/// the id followed by the owner.
const ID_LEN: usize = 36;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Follow-ups of transitions that need not happen before the worker goes
/// on: acknowledging handled queue entries, giving keys outside a tree's
/// slot their retention TTL, and scheduling finished roots' list-index
/// entries for removal. A worker batches them and sends them in the same
/// round trip as its next queue read, so they cost no round trip of their
/// own on the hot path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Housekeeping {
    /// Queue entries to acknowledge and delete.
    pub acks: Vec<String>,
    /// Keys to give the retention TTL.
    pub expire_keys: Vec<String>,
    /// Finished roots: (id, owner).
    pub finished_roots: Vec<(String, String)>,
}

impl Housekeeping {
    pub fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.expire_keys.is_empty() && self.finished_roots.is_empty()
    }

    /// Takes on the follow-ups a transition reported.
    pub fn add_outcome(&mut self, outcome: &Outcome) {
        self.acks.extend(outcome.acks.iter().cloned());
        self.expire_keys.extend(outcome.expire_keys.iter().cloned());
        self.finished_roots
            .extend(outcome.finished_roots.iter().cloned());
    }

    /// Moves everything of `other` into this batch.
    pub fn absorb(&mut self, other: Housekeeping) {
        self.acks.extend(other.acks);
        self.expire_keys.extend(other.expire_keys);
        self.finished_roots.extend(other.finished_roots);
    }
}

/// What a scheduler tick found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    /// Retries moved to the ready stream.
    pub promoted: u64,
    /// Ms until the next item is due, if any is waiting.
    pub next_in_ms: Option<u64>,
    /// Operations whose deadline may have passed: (root, id, member).
    pub deadlines: Vec<(String, String, String)>,
    /// Finished roots whose list-index entries may go: (id, owner, member).
    pub expiring: Vec<(String, String, String)>,
}

/// One entry of a ready stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QueueEntry {
    pub shard: u32,
    pub entry_id: String,
    pub op_id: String,
    pub root: String,
    pub generation: u64,
}

fn entry_from(shard: u32, entry: &StreamId) -> Option<QueueEntry> {
    let field = |name: &str| -> Option<String> {
        entry
            .map
            .get(name)
            .cloned()
            .and_then(|v| scripts::string(v).ok())
    };
    Some(QueueEntry {
        shard,
        entry_id: entry.id.clone(),
        op_id: field("o")?,
        root: field("r")?,
        generation: field("g")?.parse().ok()?,
    })
}

impl Store {
    /// Creates the consumer group of a shard's stream if it is missing.
    pub async fn ensure_group(&self, shard: u32) -> StoreResult<()> {
        let result: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys().ready(shard))
            .arg(WORKER_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match result {
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Puts operations on the ready stream.
    pub async fn enqueue(&self, items: &[(&str, &str, u64)]) -> StoreResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (root, id, generation) in items {
            pipe.cmd("XADD")
                .arg(self.keys().ready(0))
                .arg("*")
                .arg("o")
                .arg(id)
                .arg("r")
                .arg(root)
                .arg("g")
                .arg(generation)
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Puts a retry on the delayed set, due at `due_ms` (Redis clock).
    pub async fn delay(
        &self,
        root: &str,
        id: &str,
        generation: u64,
        due_ms: u64,
    ) -> StoreResult<()> {
        let _: () = redis::cmd("ZADD")
            .arg(self.keys().delayed(0))
            .arg(due_ms)
            .arg(format!("{id}|{root}|{generation}"))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The scheduler's tick: moves due retries to the ready stream and
    /// lists due deadlines and index expiries (at most `max` of each).
    pub async fn tick(&self, max: usize) -> StoreResult<Due> {
        let keys = self.keys();
        let reply: Value = scripts::PROMOTE
            .key(keys.delayed(0))
            .key(keys.ready(0))
            .key(keys.deadlines(0))
            .key(keys.expiring(0))
            .arg(max)
            .arg(unix_ms())
            .invoke_async(&mut self.conn())
            .await?;
        let mut items = scripts::strings(reply)?.into_iter();
        let promoted = next_number(&mut items).max(0) as u64;
        let wait = next_number(&mut items);
        let mut list = || -> Vec<String> {
            let n = next_number(&mut items).max(0) as usize;
            items.by_ref().take(n).collect()
        };
        let deadlines = list()
            .into_iter()
            .filter_map(|member| {
                let (id, root) = member.split_once('|')?;
                Some((root.to_owned(), id.to_owned(), member.clone()))
            })
            .collect();
        let expiring = list()
            .into_iter()
            .filter(|member| member.len() >= ID_LEN && member.is_char_boundary(ID_LEN))
            .map(|member| {
                let (id, owner) = member.split_at(ID_LEN);
                (id.to_owned(), owner.to_owned(), member.clone())
            })
            .collect();
        Ok(Due {
            promoted,
            next_in_ms: (wait >= 0).then_some(wait as u64),
            deadlines,
            expiring,
        })
    }

    /// Enforces the deadlines a tick found due: fails the operations that
    /// passed theirs, reschedules the ones whose deadline is still ahead
    /// (a caller's clock ran ahead), and forgets the rest. Returns the
    /// follow-ups of the operations that failed.
    pub async fn enforce_deadlines(
        &self,
        due: &[(String, String, String)],
    ) -> StoreResult<Housekeeping> {
        let mut housekeeping = Housekeeping::default();
        if due.is_empty() {
            return Ok(housekeeping);
        }
        let calls: Vec<_> = due
            .iter()
            .map(|(root, id, _)| {
                let mut args = self.base_args(root);
                args.push(id.clone());
                (&*scripts::EXPIRE, self.keys().op(root, id), args)
            })
            .collect();
        let replies = self.run_many(&calls).await?;
        let key = self.keys().deadlines(0);
        let mut pipe = redis::pipe();
        for ((_, _, member), reply) in due.iter().zip(replies) {
            let outcome = match reply.and_then(|value| Outcome::parse(value, 1)) {
                Ok(outcome) => outcome,
                Err(err) => {
                    tracing::debug!(error = %err, "deadline check failed");
                    continue;
                }
            };
            match outcome.word.as_str() {
                "later" => {
                    let left: u64 = outcome.value(0).parse().unwrap_or(1_000);
                    pipe.zadd(&key, member, unix_ms() + left).ignore();
                }
                "expired" => {
                    housekeeping.add_outcome(&outcome);
                    pipe.zrem(&key, member).ignore();
                }
                _ => {
                    pipe.zrem(&key, member).ignore();
                }
            }
            if !outcome.signalled.is_empty() {
                tracing::debug!(
                    count = outcome.signalled.len(),
                    "deadline stopped running handlers"
                );
            }
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(housekeeping)
    }

    /// Removes the list-index entries of finished roots that expired (or
    /// were deleted); a root still there (its retention was renewed) is
    /// looked at again when it expires.
    pub async fn sweep_index(&self, due: &[(String, String, String)]) -> StoreResult<usize> {
        if due.is_empty() {
            return Ok(0);
        }
        let mut probe = redis::pipe();
        for (id, _, _) in due {
            probe.cmd("PTTL").arg(self.keys().op(id, id));
        }
        let ttls: Vec<i64> = probe.query_async(&mut self.conn()).await?;
        let key = self.keys().expiring(0);
        let mut pipe = redis::pipe();
        let mut removed = 0;
        for ((id, owner, member), ttl) in due.iter().zip(ttls) {
            match ttl {
                // Gone: its index entries go too.
                -2 => {
                    pipe.zrem(self.keys().owner_index(owner), id).ignore();
                    pipe.zrem(self.keys().all_index(), id).ignore();
                    pipe.zrem(&key, member).ignore();
                    removed += 1;
                }
                // Not terminal (a refused late write scheduled it): its own
                // terminal transition schedules it again.
                -1 => {
                    pipe.zrem(&key, member).ignore();
                }
                left => {
                    pipe.zadd(&key, member, unix_ms() + left as u64).ignore();
                }
            }
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(removed)
    }

    /// Adds the commands of a housekeeping batch to a pipeline.
    pub fn add_housekeeping(&self, pipe: &mut Pipeline, housekeeping: &Housekeeping) {
        let keys = self.keys();
        if !housekeeping.acks.is_empty() {
            let stream = keys.ready(0);
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .arg(&housekeeping.acks)
                .ignore();
            pipe.cmd("XDEL")
                .arg(&stream)
                .arg(&housekeeping.acks)
                .ignore();
        }
        for key in &housekeeping.expire_keys {
            pipe.pexpire(key, self.retention_ms() as i64).ignore();
        }
        if !housekeeping.finished_roots.is_empty() {
            let due = unix_ms() + self.retention_ms();
            let expiring = keys.expiring(0);
            let deadlines = keys.deadlines(0);
            for (id, owner) in &housekeeping.finished_roots {
                pipe.zadd(&expiring, format!("{id}{owner}"), due).ignore();
                pipe.zrem(&deadlines, format!("{id}|{id}")).ignore();
            }
        }
    }

    /// Sends a housekeeping batch on its own.
    pub async fn housekeep(&self, housekeeping: &Housekeeping) -> StoreResult<()> {
        if housekeeping.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        self.add_housekeeping(&mut pipe, housekeeping);
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Reads up to `count` new entries for `consumer`, blocking up to
    /// `block_ms`, after sending `housekeeping` in the same round trip.
    /// Needs a dedicated connection: a blocking read would hold up every
    /// other command on a shared one.
    pub async fn read_new(
        &self,
        conn: &mut MultiplexedConnection,
        housekeeping: &Housekeeping,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> StoreResult<Vec<QueueEntry>> {
        let mut pipe = redis::pipe();
        self.add_housekeeping(&mut pipe, housekeeping);
        pipe.cmd("XREADGROUP")
            .arg("GROUP")
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(self.keys().ready(0))
            .arg(">");
        let (reply,): (Option<StreamReadReply>,) = pipe.query_async(conn).await?;
        Ok(reply
            .map(|reply| {
                reply
                    .keys
                    .iter()
                    .flat_map(|key| key.ids.iter().filter_map(|entry| entry_from(0, entry)))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Takes over entries pending longer than `min_idle_ms` (their worker
    /// stopped renewing), up to `count`, scanning the pending list from
    /// `cursor`. Returns the entries and where the next pass goes on
    /// (`0-0` once the whole list was scanned), so that a long list of
    /// live entries at its head never hides lost ones further on.
    pub async fn take_over_idle(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
        cursor: &str,
    ) -> StoreResult<(Vec<QueueEntry>, String)> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().ready(0))
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(cursor)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        let entries = reply
            .claimed
            .iter()
            .filter_map(|entry| entry_from(0, entry))
            .collect();
        Ok((entries, reply.next_stream_id))
    }

    /// Removes consumers of the group that hold no entry and have not
    /// read for `min_idle_ms` (workers that stopped); a live one that is
    /// removed is created again by its next read. Returns how many went.
    pub async fn forget_idle_consumers(&self, me: &str, min_idle_ms: u64) -> StoreResult<usize> {
        let stream = self.keys().ready(0);
        let consumers: Vec<HashMap<String, Value>> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .query_async(&mut self.conn())
            .await?;
        let number = |info: &HashMap<String, Value>, name: &str| -> i64 {
            match info.get(name) {
                Some(Value::Int(n)) => *n,
                _ => -1,
            }
        };
        let mut pipe = redis::pipe();
        let mut count = 0;
        for info in &consumers {
            let Some(name) = info
                .get("name")
                .cloned()
                .and_then(|n| scripts::string(n).ok())
            else {
                continue;
            };
            let idle = number(info, "idle");
            if name != me && number(info, "pending") == 0 && idle >= min_idle_ms as i64 {
                pipe.cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream)
                    .arg(WORKER_GROUP)
                    .arg(&name)
                    .ignore();
                count += 1;
            }
        }
        if count > 0 {
            let _: () = pipe.query_async(&mut self.conn()).await?;
        }
        Ok(count)
    }

    /// Takes one specific pending entry (a parked parent to resume).
    pub async fn take_entry(
        &self,
        consumer: &str,
        entry_id: &str,
    ) -> StoreResult<Option<QueueEntry>> {
        let reply: Value = redis::cmd("XCLAIM")
            .arg(self.keys().ready(0))
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry_id)
            .query_async(&mut self.conn())
            .await?;
        let Value::Array(items) = reply else {
            return Ok(None);
        };
        for item in items {
            let Value::Array(mut parts) = item else {
                continue;
            };
            if parts.len() != 2 {
                continue;
            }
            let fields = parts.pop().unwrap_or(Value::Nil);
            let id = scripts::string(parts.pop().unwrap_or(Value::Nil))?;
            let map = field_map(fields)?;
            let entry = StreamId {
                id,
                map,
                ..Default::default()
            };
            return Ok(entry_from(0, &entry));
        }
        Ok(None)
    }

    /// Resets the idle time of entries this worker still holds, so reapers
    /// leave them alone.
    pub async fn touch(&self, consumer: &str, entry_ids: &[&str]) -> StoreResult<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let _: Value = redis::cmd("XCLAIM")
            .arg(self.keys().ready(0))
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(entry_ids)
            .arg("JUSTID")
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Acknowledges and deletes handled entries.
    pub async fn ack(&self, entry_ids: &[String]) -> StoreResult<()> {
        if entry_ids.is_empty() {
            return Ok(());
        }
        let stream = self.keys().ready(0);
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .arg(entry_ids)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(entry_ids)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Entries waiting in the ready stream and pending (claimed) ones.
    pub async fn queue_depth(&self) -> StoreResult<(u64, u64, u64)> {
        let stream = self.keys().ready(0);
        let mut conn = self.conn();
        let (length, delayed): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("ZCARD")
            .arg(self.keys().delayed(0))
            .query_async(&mut conn)
            .await?;
        // No consumer group yet (no worker ever started): nothing is pending.
        let pending: Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .query_async(&mut conn)
            .await
            .or_else(|err| {
                if err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP") {
                    Ok(Value::Nil)
                } else {
                    Err(err)
                }
            })?;
        let pending = match pending {
            Value::Array(items) => items
                .into_iter()
                .next()
                .map(scripts::string)
                .transpose()?
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        Ok((length.saturating_sub(pending), pending, delayed))
    }
}

fn next_number(items: &mut std::vec::IntoIter<String>) -> i64 {
    items
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(-1)
}

fn field_map(fields: Value) -> StoreResult<HashMap<String, Value>> {
    let Value::Array(items) = fields else {
        return Err(StoreError::data("stream entry without fields"));
    };
    let mut map = HashMap::new();
    let mut iter = items.into_iter();
    while let (Some(name), Some(value)) = (iter.next(), iter.next()) {
        map.insert(scripts::string(name)?, value);
    }
    Ok(map)
}
