//! The work queue: N shards, each a Redis stream read by the consumer group
//! `workers` plus sorted sets of delayed retries, deadlines and index
//! expiries, all under the shard's hash tag `{qN}`.
//!
//! An operation's entries go to shard `hash(id) mod N`, so a fan-out's
//! children spread over every shard and, on a Redis Cluster, over every
//! node. N is 1 on one server and 16 on a cluster unless
//! `LONGRUN_QUEUE_SHARDS` says otherwise; the deployment records the
//! largest count any process asked for (`P:queue:shards`) and every process
//! adopts it at its self-check, so writers and readers agree and a shard
//! holding entries is never left unread. Workers read every shard.
//!
//! An entry names an operation, its tree and the generation it was queued
//! as. The stream's pending-entries list is the lease table: an entry stays
//! pending until the worker acknowledges it after a terminal transition, so
//! a worker that dies leaves it to be taken over (`XAUTOCLAIM`) by a live
//! worker's reaper. The claim script, not the stream, decides what an entry
//! means: a stale generation or a terminal operation is simply dropped.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::streams::{StreamAutoClaimReply, StreamId};
use redis::{Pipeline, Value};

use super::connection::Dedicated;
use super::scripts::{self, Outcome};
use super::{Store, StoreError, StoreResult};
use crate::config::MAX_QUEUE_SHARDS;
use crate::keys::WORKER_GROUP;

/// Length of an operation id (a hyphenated UUID); an `expiring` member is
/// the id followed by the owner.
const ID_LEN: usize = 36;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The shard of `id` among `shards`: FNV-1a of the id, so every process
/// computes the same one.
pub fn shard_for(id: &str, shards: u32) -> u32 {
    if shards <= 1 {
        return 0;
    }
    let hash = id.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % shards
}

/// Where a queue entry lives: its shard and its stream id. Written as
/// `SHARD/ID` (plain `ID` for shard 0) where it is stored in an operation
/// (a parked parent's entry) and comes back from scripts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryRef {
    pub shard: u32,
    pub id: String,
}

impl EntryRef {
    pub fn parse(text: &str) -> EntryRef {
        match text.split_once('/') {
            Some((shard, id)) => EntryRef {
                shard: shard.parse().unwrap_or(0),
                id: id.to_owned(),
            },
            None => EntryRef {
                shard: 0,
                id: text.to_owned(),
            },
        }
    }
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shard == 0 {
            f.write_str(&self.id)
        } else {
            write!(f, "{}/{}", self.shard, self.id)
        }
    }
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
    pub acks: Vec<EntryRef>,
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
        self.acks
            .extend(outcome.acks.iter().map(|ack| EntryRef::parse(ack)));
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

/// What a scheduler tick found on one shard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Due {
    pub shard: u32,
    /// Retries moved to the ready stream.
    pub promoted: u64,
    /// Ms until the next item is due, if any is waiting.
    pub next_in_ms: Option<u64>,
    /// Operations whose deadline may have passed: (root, id, member).
    pub deadlines: Vec<(String, String, String)>,
    /// Finished roots whose list-index entries may go: (id, owner, member).
    pub expiring: Vec<(String, String, String)>,
}

/// What a read of one shard found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Read {
    /// Entries delivered to this consumer.
    pub entries: Vec<QueueEntry>,
    /// The newest entry id the stream held: with no entries delivered,
    /// [`Store::wait_for_entries`] after it misses none added since.
    pub last_id: String,
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

impl QueueEntry {
    /// Where this entry lives.
    pub fn reference(&self) -> EntryRef {
        EntryRef {
            shard: self.shard,
            id: self.entry_id.clone(),
        }
    }
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

fn is_no_group(err: &redis::RedisError) -> bool {
    err.code() == Some("NOGROUP") || err.to_string().contains("NOGROUP")
}

/// Groups entry references by shard, in shard order.
fn by_shard<'a>(refs: impl IntoIterator<Item = &'a EntryRef>) -> BTreeMap<u32, Vec<&'a str>> {
    let mut shards: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for entry in refs {
        shards.entry(entry.shard).or_default().push(&entry.id);
    }
    shards
}

impl Store {
    /// Every shard this process reads, `0..queue_shards()`.
    pub fn shards(&self) -> std::ops::Range<u32> {
        0..self.queue_shards()
    }

    /// Agrees with the deployment on the shard count: records this
    /// process's count if it is larger than the recorded one, and adopts
    /// the recorded one if that is larger. Returns the count in use.
    pub async fn agree_on_queue_shards(&self) -> StoreResult<u32> {
        let wanted = self.queue_shards();
        let reply = self
            .run(
                &scripts::SHARDS,
                &self.keys().queue_shards(),
                &[wanted.to_string()],
            )
            .await?;
        let recorded: u32 = scripts::string(reply)?.parse().unwrap_or(0);
        self.raise_queue_shards(recorded.min(MAX_QUEUE_SHARDS));
        Ok(self.queue_shards())
    }

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

    /// Creates the consumer group of every shard that lacks one.
    pub async fn ensure_groups(&self) -> StoreResult<()> {
        for shard in self.shards() {
            self.ensure_group(shard).await?;
        }
        Ok(())
    }

    /// Adds the `XADD` of an operation's queue entry to a pipeline.
    pub(crate) fn add_entry(&self, pipe: &mut Pipeline, root: &str, id: &str, generation: u64) {
        pipe.cmd("XADD")
            .arg(self.keys().ready(self.shard_of(id)))
            .arg("*")
            .arg("o")
            .arg(id)
            .arg("r")
            .arg(root)
            .arg("g")
            .arg(generation)
            .ignore();
    }

    /// Puts operations on their shards' ready streams.
    pub async fn enqueue(&self, items: &[(&str, &str, u64)]) -> StoreResult<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (root, id, generation) in items {
            self.add_entry(&mut pipe, root, id, *generation);
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Puts a retry on its shard's delayed set, due at `due_ms` (Redis clock).
    pub async fn delay(
        &self,
        root: &str,
        id: &str,
        generation: u64,
        due_ms: u64,
    ) -> StoreResult<()> {
        let _: () = redis::cmd("ZADD")
            .arg(self.keys().delayed(self.shard_of(id)))
            .arg(due_ms)
            .arg(format!("{id}|{root}|{generation}"))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// The scheduler's tick on every shard, in one round trip: moves due
    /// retries to the ready streams and lists due deadlines and index
    /// expiries (at most `max` of each per shard).
    pub async fn tick(&self, max: usize) -> StoreResult<Vec<Due>> {
        let keys = self.keys();
        let now = unix_ms();
        let build = || {
            let mut pipe = redis::pipe();
            for shard in self.shards() {
                pipe.cmd("FCALL")
                    .arg(scripts::PROMOTE.name())
                    .arg(4)
                    .arg(keys.delayed(shard))
                    .arg(keys.ready(shard))
                    .arg(keys.deadlines(shard))
                    .arg(keys.expiring(shard))
                    .arg(max)
                    .arg(now);
            }
            pipe
        };
        let replies: Vec<Value> = self.query_loading_library(build).await?;
        self.shards()
            .zip(replies)
            .map(|(shard, reply)| due_from(shard, reply))
            .collect()
    }

    /// Enforces the deadlines a tick found due on `shard`: fails the
    /// operations that passed theirs, reschedules the ones whose deadline
    /// is still ahead (a caller's clock ran ahead), and forgets the rest.
    /// Returns the follow-ups of the operations that failed.
    pub async fn enforce_deadlines(
        &self,
        shard: u32,
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
        let key = self.keys().deadlines(shard);
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
        if !pipe.is_empty() {
            let _: () = pipe.query_async(&mut self.conn()).await?;
        }
        Ok(housekeeping)
    }

    /// Removes the list-index entries of finished roots (of `shard`) that
    /// expired (or were deleted); a root still there (its retention was
    /// renewed) is looked at again when it expires.
    pub async fn sweep_index(
        &self,
        shard: u32,
        due: &[(String, String, String)],
    ) -> StoreResult<usize> {
        if due.is_empty() {
            return Ok(0);
        }
        let mut probe = redis::pipe();
        for (id, _, _) in due {
            probe.cmd("PTTL").arg(self.keys().op(id, id));
        }
        let ttls: Vec<i64> = probe.query_async(&mut self.conn()).await?;
        let key = self.keys().expiring(shard);
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
        for (shard, ids) in by_shard(&housekeeping.acks) {
            let stream = keys.ready(shard);
            pipe.cmd("XACK")
                .arg(&stream)
                .arg(WORKER_GROUP)
                .arg(&ids)
                .ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&ids).ignore();
        }
        for key in &housekeeping.expire_keys {
            pipe.pexpire(key, self.retention_ms() as i64).ignore();
        }
        if !housekeeping.finished_roots.is_empty() {
            let due = unix_ms() + self.retention_ms();
            for (id, owner) in &housekeeping.finished_roots {
                let shard = self.shard_of(id);
                pipe.zadd(keys.expiring(shard), format!("{id}{owner}"), due)
                    .ignore();
                pipe.zrem(keys.deadlines(shard), format!("{id}|{id}"))
                    .ignore();
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

    /// Reads up to `count` new entries of `shard` for `consumer`, without
    /// blocking, after sending `housekeeping` in the same round trip.
    pub async fn read_new(
        &self,
        shard: u32,
        housekeeping: &Housekeeping,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Read> {
        let build = || {
            let mut pipe = redis::pipe();
            self.add_housekeeping(&mut pipe, housekeeping);
            scripts::READ.add_call(
                &mut pipe,
                self.keys().ready(shard),
                (WORKER_GROUP, consumer, count.max(1)),
            );
            pipe
        };
        let (reply,): (Vec<String>,) = self.query_loading_library(build).await?;
        let mut items = reply.into_iter();
        let last_id = items.next().unwrap_or_else(|| "0-0".to_owned());
        let mut entries = Vec::new();
        while let (Some(entry_id), Some(op_id), Some(root), Some(generation)) =
            (items.next(), items.next(), items.next(), items.next())
        {
            if let Ok(generation) = generation.parse() {
                entries.push(QueueEntry {
                    shard,
                    entry_id,
                    op_id,
                    root,
                    generation,
                });
            }
        }
        Ok(Read { entries, last_id })
    }

    /// Blocks on `conn` up to `block_ms` until `shard`'s ready stream holds
    /// an entry newer than `after` (see [`Read::last_id`]). Reads nothing:
    /// the caller then takes entries with [`read_new`](Self::read_new), so
    /// a wait that is cut short loses nothing. Returns whether one came.
    pub async fn wait_for_entries(
        &self,
        conn: &mut Dedicated,
        shard: u32,
        after: &str,
        block_ms: u64,
    ) -> StoreResult<bool> {
        let reply = conn
            .query(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(1)
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(self.keys().ready(shard))
                    .arg(after),
            )
            .await?;
        Ok(!matches!(reply, Value::Nil))
    }

    /// Takes over entries of `shard` pending longer than `min_idle_ms`
    /// (their worker stopped renewing), up to `count`, scanning the pending
    /// list from `cursor`. Returns the entries and where the next pass goes
    /// on (`0-0` once the whole list was scanned), so that a long list of
    /// live entries at its head never hides lost ones further on.
    pub async fn take_over_idle(
        &self,
        shard: u32,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
        cursor: &str,
    ) -> StoreResult<(Vec<QueueEntry>, String)> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().ready(shard))
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
            .filter_map(|entry| entry_from(shard, entry))
            .collect();
        Ok((entries, reply.next_stream_id))
    }

    /// Removes consumers of the group that hold no entry of any shard and
    /// have not read for `min_idle_ms` (workers that stopped); a live one
    /// that is removed is created again by its next read. Returns how many
    /// (consumer, shard) pairs went.
    pub async fn forget_idle_consumers(&self, me: &str, min_idle_ms: u64) -> StoreResult<usize> {
        let mut count = 0;
        for shard in self.shards() {
            count += self
                .forget_idle_consumers_of(shard, me, min_idle_ms)
                .await?;
        }
        Ok(count)
    }

    async fn forget_idle_consumers_of(
        &self,
        shard: u32,
        me: &str,
        min_idle_ms: u64,
    ) -> StoreResult<usize> {
        let stream = self.keys().ready(shard);
        let consumers: Vec<HashMap<String, Value>> = match redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(&stream)
            .arg(WORKER_GROUP)
            .query_async(&mut self.conn())
            .await
        {
            Ok(consumers) => consumers,
            Err(err) if is_no_group(&err) || err.to_string().contains("no such key") => {
                return Ok(0);
            }
            Err(err) => return Err(err.into()),
        };
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
        entry: &EntryRef,
    ) -> StoreResult<Option<QueueEntry>> {
        let reply: Value = redis::cmd("XCLAIM")
            .arg(self.keys().ready(entry.shard))
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&entry.id)
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
            let stream_entry = StreamId {
                id,
                map,
                ..Default::default()
            };
            return Ok(entry_from(entry.shard, &stream_entry));
        }
        Ok(None)
    }

    /// Resets the idle time of entries this worker still holds, so reapers
    /// leave them alone.
    pub async fn touch(&self, consumer: &str, entries: &[EntryRef]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (shard, ids) in by_shard(entries) {
            pipe.cmd("XCLAIM")
                .arg(self.keys().ready(shard))
                .arg(WORKER_GROUP)
                .arg(consumer)
                .arg(0)
                .arg(&ids)
                .arg("JUSTID")
                .ignore();
        }
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Acknowledges and deletes handled entries.
    pub async fn ack(&self, entries: &[EntryRef]) -> StoreResult<()> {
        let housekeeping = Housekeeping {
            acks: entries.to_vec(),
            ..Housekeeping::default()
        };
        self.housekeep(&housekeeping).await
    }

    /// Entries waiting in the ready streams, pending (claimed) ones and
    /// delayed retries, summed over the shards.
    pub async fn queue_depth(&self) -> StoreResult<(u64, u64, u64)> {
        let mut conn = self.conn();
        let mut counts = redis::pipe();
        let mut pending = redis::pipe();
        pending.ignore_errors();
        for shard in self.shards() {
            let stream = self.keys().ready(shard);
            counts
                .cmd("XLEN")
                .arg(&stream)
                .cmd("ZCARD")
                .arg(self.keys().delayed(shard));
            pending.cmd("XPENDING").arg(&stream).arg(WORKER_GROUP);
        }
        let counts: Vec<u64> = counts.query_async(&mut conn).await?;
        // A shard without a consumer group yet (no worker ever read it) has
        // nothing pending.
        let summaries: Vec<redis::RedisResult<Value>> = pending.query_async(&mut conn).await?;
        let mut pending_total = 0;
        for summary in summaries {
            match summary {
                Ok(Value::Array(items)) => {
                    pending_total += items
                        .into_iter()
                        .next()
                        .map(scripts::string)
                        .transpose()?
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                }
                Ok(_) => {}
                Err(err) if is_no_group(&err) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let length: u64 = counts.iter().step_by(2).sum();
        let delayed: u64 = counts.iter().skip(1).step_by(2).sum();
        Ok((length.saturating_sub(pending_total), pending_total, delayed))
    }
}

fn due_from(shard: u32, reply: Value) -> StoreResult<Due> {
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
        shard,
        promoted,
        next_in_ms: (wait >= 0).then_some(wait as u64),
        deadlines,
        expiring,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_takes_everything() {
        assert_eq!(shard_for("0193a3f6-0000-7000-8000-000000000000", 1), 0);
        assert_eq!(shard_for("anything", 0), 0);
    }

    #[test]
    fn ids_spread_over_every_shard() {
        let mut counts = [0u32; 16];
        for _ in 0..1_600 {
            let id = uuid::Uuid::now_v7().to_string();
            let shard = shard_for(&id, 16);
            assert_eq!(shard, shard_for(&id, 16), "stable");
            counts[shard as usize] += 1;
        }
        assert!(
            counts.iter().all(|&count| count > 40),
            "roughly even: {counts:?}"
        );
    }

    #[test]
    fn entry_references_carry_their_shard() {
        let plain = EntryRef::parse("1700000000000-0");
        assert_eq!(plain.shard, 0);
        assert_eq!(plain.to_string(), "1700000000000-0", "shard 0 stays plain");
        let sharded = EntryRef {
            shard: 7,
            id: "1700000000000-3".into(),
        };
        assert_eq!(sharded.to_string(), "7/1700000000000-3");
        assert_eq!(EntryRef::parse(&sharded.to_string()), sharded);
    }

    #[test]
    fn acknowledgements_are_grouped_by_shard() {
        let refs = [
            EntryRef::parse("3/1-0"),
            EntryRef::parse("1-1"),
            EntryRef::parse("3/2-0"),
        ];
        let grouped = by_shard(&refs);
        assert_eq!(grouped.get(&0), Some(&vec!["1-1"]));
        assert_eq!(grouped.get(&3), Some(&vec!["1-0", "2-0"]));
    }
}
