//! All access to Redis: the one place that knows keys, scripts and replies.
//!
//! [`Store`] wraps a multiplexed, self-reconnecting connection
//! ([`redis::aio::ConnectionManager`]): concurrent callers share one socket
//! and their commands are pipelined, and after Redis comes back the next
//! command reconnects by itself. Reads live here; state transitions are in
//! [`transitions`] and the work queue in [`queue`].

pub mod durability;
pub mod idempotency;
pub mod queue;
pub mod scripts;
pub mod transitions;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Script, Value};
use serde_json::Value as Json;
use thiserror::Error;

use crate::keys::Keys;
use crate::model::{Event, EventType, Operation, Status, StoredOperation};

pub use scripts::Outcome;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected data in redis: {0}")]
    Data(String),
}

impl StoreError {
    pub fn data(message: impl Into<String>) -> Self {
        StoreError::Data(message.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The current time as RFC 3339 with microseconds, the format of every timestamp.
pub fn now_iso() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Filters of `list`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub kind: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    client: redis::Client,
    keys: Keys,
    retention_ms: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Prepares a connection to `url`; connects lazily, so a Redis that is
    /// down at start-up is not an error (commands fail until it is up).
    pub fn connect(url: &str, prefix: &str, retention: Duration) -> StoreResult<Store> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(15)));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Store {
            conn,
            client,
            keys: Keys::new(prefix),
            retention_ms: retention.as_millis() as u64,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the shared multiplexed connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for dedicated connections (pub/sub, blocking reads).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_ms
    }

    pub async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Loads every script into Redis's script cache.
    pub async fn load_scripts(&self) -> StoreResult<()> {
        let mut conn = self.conn();
        for script in scripts::all() {
            script.load_async(&mut conn).await?;
        }
        Ok(())
    }

    /// The arguments every transition script starts with.
    pub(crate) fn base_args(&self, root: &str) -> Vec<String> {
        vec![
            self.keys.prefix().to_owned(),
            root.to_owned(),
            now_iso(),
            self.retention_ms.to_string(),
        ]
    }

    /// Runs a script on one key (loading it again after a `NOSCRIPT`).
    pub(crate) async fn run(
        &self,
        script: &Script,
        key: &str,
        args: &[String],
    ) -> StoreResult<Value> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        Ok(invocation.invoke_async(&mut self.conn()).await?)
    }

    /// Runs many script calls in one round trip; each gets its own result.
    pub(crate) async fn run_many(
        &self,
        calls: &[(&Script, String, Vec<String>)],
    ) -> StoreResult<Vec<StoreResult<Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let build = || {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (script, key, args) in calls {
                pipe.cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(1)
                    .arg(key)
                    .arg(args);
            }
            pipe
        };
        let mut conn = self.conn();
        let mut results: Vec<redis::RedisResult<Value>> = build().query_async(&mut conn).await?;
        let missing_script = |result: &redis::RedisResult<Value>| matches!(result, Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript));
        if results.iter().any(missing_script) {
            self.load_scripts().await?;
            results = build().query_async(&mut conn).await?;
        }
        Ok(results
            .into_iter()
            .map(|result| result.map_err(StoreError::from))
            .collect())
    }

    /// Finds the root of an operation's tree; `None` when it does not exist.
    pub async fn locate(&self, id: &str) -> StoreResult<Option<String>> {
        Ok(self.get(id).await?.map(|stored| stored.root))
    }

    /// Reads an operation. One round trip for a root, two for a child.
    pub async fn get(&self, id: &str) -> StoreResult<Option<StoredOperation>> {
        let mut conn = self.conn();
        let (fields, root): (HashMap<String, String>, Option<String>) = redis::pipe()
            .hgetall(self.keys.op(id, id))
            .get(self.keys.root_of(id))
            .query_async(&mut conn)
            .await?;
        if let Some(stored) = Operation::from_hash(&fields) {
            return Ok(Some(stored));
        }
        match root {
            Some(root) => self.get_in(&root, id).await,
            None => Ok(None),
        }
    }

    /// Reads an operation whose root is known.
    pub async fn get_in(&self, root: &str, id: &str) -> StoreResult<Option<StoredOperation>> {
        let fields: HashMap<String, String> = self.conn().hgetall(self.keys.op(root, id)).await?;
        Ok(Operation::from_hash(&fields))
    }

    /// Reads many operations of one tree in one round trip, skipping missing ones.
    pub async fn get_many_in(&self, root: &str, ids: &[String]) -> StoreResult<Vec<Operation>> {
        self.get_many(ids.iter().map(|id| (root, id.as_str())))
            .await
    }

    async fn get_many<'a>(
        &self,
        refs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> StoreResult<Vec<Operation>> {
        let mut pipe = redis::pipe();
        let mut count = 0;
        for (root, id) in refs {
            pipe.hgetall(self.keys.op(root, id));
            count += 1;
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
        Ok(hashes
            .iter()
            .filter_map(Operation::from_hash)
            .map(|stored| stored.operation)
            .collect())
    }

    /// The running sum of the numeric `totals` its succeeded children
    /// reported in their results (`{}` when none did).
    pub async fn child_totals(&self, root: &str, id: &str) -> StoreResult<Json> {
        let raw: Option<String> = self.conn().hget(self.keys.op(root, id), "totals").await?;
        Ok(raw
            .and_then(|raw| serde_json::from_str(&raw).ok())
            .filter(Json::is_object)
            .unwrap_or_else(|| Json::Object(Default::default())))
    }

    /// Up to `limit` events with seq greater than `after_seq`, in order.
    pub async fn events(
        &self,
        root: &str,
        id: &str,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.events(root, id))
            .arg(format!("({after_seq}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await?;
        reply
            .ids
            .into_iter()
            .map(|entry| event_from_entry(id, &entry.id, &entry.map))
            .collect()
    }

    /// A page of an operation's children, in creation order, from position `offset`.
    /// Returns the children and the offset of the next page, if any.
    pub async fn children(
        &self,
        root: &str,
        id: &str,
        offset: u64,
        limit: usize,
    ) -> StoreResult<(Vec<Operation>, Option<u64>)> {
        let limit = limit.max(1) as u64;
        let ids: Vec<String> = self
            .conn()
            .lrange(
                self.keys.kids(root, id),
                offset as isize,
                (offset + limit) as isize, // one more, to learn whether a next page exists
            )
            .await?;
        let more = ids.len() as u64 > limit;
        let page: Vec<String> = ids.into_iter().take(limit as usize).collect();
        let operations = self.get_many_in(root, &page).await?;
        Ok((operations, more.then_some(offset + limit)))
    }

    /// Newest-first page of root operations (an owner's, or everyone's for
    /// `owner = None`), strictly older than the `before` id. Scans at most a
    /// bounded number of index entries per call, so a selective filter may
    /// return a short page with a cursor to go on.
    pub async fn list(
        &self,
        owner: Option<&str>,
        before: Option<&str>,
        limit: usize,
        filter: &ListFilter,
    ) -> StoreResult<(Vec<Operation>, Option<String>)> {
        const SCAN_BUDGET: usize = 2_000;
        let index = match owner {
            Some(owner) => self.keys.owner_index(owner),
            None => self.keys.all_index(),
        };
        let limit = limit.max(1);
        let mut cursor = before.map(str::to_owned);
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut conn = self.conn();
        loop {
            let chunk = (limit * 2).clamp(16, 500);
            let max = cursor
                .as_deref()
                .map_or_else(|| "+".to_owned(), |c| format!("({c}"));
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg(&max)
                .arg("-")
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(chunk)
                .query_async(&mut conn)
                .await?;
            let exhausted = ids.len() < chunk;
            if ids.is_empty() {
                // An empty pipeline is an error in redis-rs, not an empty answer.
                return Ok((found, None));
            }
            let hashes: Vec<HashMap<String, String>> = {
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.hgetall(self.keys.op(id, id));
                }
                pipe.query_async(&mut conn).await?
            };
            let mut gone = Vec::new();
            for (id, hash) in ids.iter().zip(&hashes) {
                scanned += 1;
                cursor = Some(id.clone());
                match Operation::from_hash(hash) {
                    None => gone.push(id.clone()),
                    Some(stored) => {
                        let op = stored.operation;
                        let wanted = filter.status.is_none_or(|status| op.status == status)
                            && filter.kind.as_deref().is_none_or(|kind| op.kind == kind);
                        if wanted {
                            found.push(op);
                            if found.len() == limit {
                                break;
                            }
                        }
                    }
                }
            }
            if !gone.is_empty() {
                // Expired or deleted: keep the index bounded.
                let _: redis::RedisResult<()> = conn.zrem(&index, &gone).await;
            }
            if found.len() == limit {
                return Ok((found, cursor));
            }
            if exhausted {
                return Ok((found, None));
            }
            if scanned >= SCAN_BUDGET {
                return Ok((found, cursor));
            }
        }
    }
}

fn event_from_entry(id: &str, entry_id: &str, map: &HashMap<String, Value>) -> StoreResult<Event> {
    let field = |name: &str| -> StoreResult<String> {
        map.get(name)
            .cloned()
            .map(scripts::string)
            .transpose()?
            .ok_or_else(|| StoreError::data(format!("event {entry_id} lacks `{name}`")))
    };
    let seq = entry_id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::data(format!("bad event id {entry_id}")))?;
    let event_type: EventType = serde_json::from_value(Json::String(field("t")?))
        .map_err(|_| StoreError::data(format!("event {entry_id} has an unknown type")))?;
    let data = serde_json::from_str(&field("d")?)
        .map_err(|_| StoreError::data(format!("event {entry_id} has bad data")))?;
    Ok(Event {
        operation_id: id.to_owned(),
        seq,
        event_type,
        at: field("at")?,
        data,
    })
}
