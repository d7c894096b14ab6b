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

use redis::Value;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::scripts;
use super::{Store, StoreError, StoreResult};
use crate::keys::WORKER_GROUP;

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

    /// Moves due retries to the ready stream. Returns how many moved and
    /// the ms until the next one is due.
    pub async fn promote_due(&self, max: usize) -> StoreResult<(u64, Option<u64>)> {
        let reply: Vec<i64> = scripts::PROMOTE
            .key(self.keys().delayed(0))
            .key(self.keys().ready(0))
            .arg(max)
            .invoke_async(&mut self.conn())
            .await?;
        let moved = reply.first().copied().unwrap_or(0).max(0) as u64;
        let wait = reply.get(1).copied().filter(|w| *w >= 0).map(|w| w as u64);
        Ok((moved, wait))
    }

    /// Reads up to `count` new entries for `consumer`, blocking up to
    /// `block_ms`. Needs a dedicated connection: a blocking read would hold
    /// up every other command on a shared one.
    pub async fn read_new(
        &self,
        conn: &mut MultiplexedConnection,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> StoreResult<Vec<QueueEntry>> {
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count.max(1))
            .arg("BLOCK")
            .arg(block_ms)
            .arg("STREAMS")
            .arg(self.keys().ready(0))
            .arg(">")
            .query_async(conn)
            .await?;
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
    /// stopped renewing), up to `count`.
    pub async fn take_over_idle(
        &self,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> StoreResult<Vec<QueueEntry>> {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(self.keys().ready(0))
            .arg(WORKER_GROUP)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg("0-0")
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(reply
            .claimed
            .iter()
            .filter_map(|entry| entry_from(0, entry))
            .collect())
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
