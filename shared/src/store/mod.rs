//! All access to Redis: the one place that knows keys, scripts and replies.
//!
//! [`Store`] wraps a multiplexed, self-reconnecting connection
//! ([`RedisConn`]: one server or a Redis Cluster, see [`connection`]):
//! concurrent callers share it and their commands are pipelined, and after
//! Redis comes back the next command reconnects by itself. Reads live here
//! (an operation's event log in [`log`]); state transitions are in
//! [`transitions`], the work queue and its shards in [`queue`], the startup
//! self-checks in [`durability`].

pub mod connection;
pub mod durability;
pub mod idempotency;
mod log;
pub mod queue;
pub mod scripts;
pub mod transitions;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use redis::{AsyncCommands, Value};
use serde_json::Value as Json;
use thiserror::Error;

use crate::config::{Config, RedisConfig};
use crate::keys::Keys;
use crate::model::{Operation, Status, StoredOperation};

pub use connection::{Dedicated, RedisConn, Topology};
pub use scripts::{Function, Outcome};

#[derive(Debug, Clone, Error)]
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

    /// True when Redis is (momentarily) unreachable, restarting or failing
    /// over: the same call may succeed after a pause.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Redis(err) => connection::is_transient(err),
            StoreError::Data(_) => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Operations per batch script call, at most: about a millisecond of
/// Redis time for claims or results of no-op jobs, so a batch never keeps
/// other clients (an api's start, a gateway's read) waiting long.
pub const BATCH_LIMIT: usize = 16;

/// True for "Function not found": Redis lost the function library (a
/// restart without persistence, `FUNCTION FLUSH`, a failover to an empty
/// replica).
fn is_missing_function(err: &redis::RedisError) -> bool {
    let missing =
        |detail: Option<&str>| detail.is_some_and(|d| d.starts_with("Function not found"));
    missing(err.detail())
        || err
            .clone()
            .into_server_errors()
            .is_some_and(|errors| errors.iter().any(|(_, error)| missing(error.details())))
}

/// One operation's reply of a batch script: its transition's reply, or
/// the error it raised (`{'error', message}`).
fn batch_item(reply: Value) -> StoreResult<Value> {
    if let Value::Array(items) = &reply
        && items.len() == 2
        && matches!(&items[0], Value::BulkString(word) if word == b"error")
    {
        let message = match &items[1] {
            Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => format!("{other:?}"),
        };
        return Err(StoreError::data(format!("transition failed: {message}")));
    }
    Ok(reply)
}

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
    conn: RedisConn,
    topology: Arc<Topology>,
    /// One client per `REDIS_URL` node, for pub/sub (classic pub/sub
    /// reaches every node of a cluster, so any node will do).
    clients: Arc<Vec<redis::Client>>,
    keys: Keys,
    retention_ms: u64,
    /// Queue shards in use (see [`queue`]); may grow at the self-check.
    shards: Arc<AtomicU32>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("keys", &self.keys)
            .field("cluster", &self.topology.cluster)
            .field("queue_shards", &self.queue_shards())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Prepares a connection to `url` (one server, or a cluster when it
    /// lists several comma-separated nodes); connects lazily, so a Redis
    /// that is down at start-up is not an error (commands fail until it is up).
    pub fn connect(url: &str, prefix: &str, retention: Duration) -> StoreResult<Store> {
        Store::open(url, &RedisConfig::default(), prefix, retention)
    }

    /// [`connect`](Self::connect) with every Redis setting of `config`
    /// (cluster mode, queue shards).
    pub fn from_config(config: &Config) -> StoreResult<Store> {
        let url = config.require_redis_url().map_err(|err| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "REDIS_URL is not set",
                err.to_string(),
            ))
        })?;
        Store::open(url, &config.redis, &config.redis_prefix, config.retention)
    }

    fn open(
        url: &str,
        settings: &RedisConfig,
        prefix: &str,
        retention: Duration,
    ) -> StoreResult<Store> {
        let topology = Topology::parse(url, settings.cluster)?;
        let conn = RedisConn::open(&topology)?;
        let clients = topology
            .seeds
            .iter()
            .map(|seed| redis::Client::open(seed.clone()))
            .collect::<redis::RedisResult<Vec<_>>>()?;
        let default_shards = if topology.cluster { 16 } else { 1 };
        Ok(Store {
            conn,
            clients: Arc::new(clients),
            keys: Keys::new(prefix),
            retention_ms: retention.as_millis() as u64,
            shards: Arc::new(AtomicU32::new(
                settings.queue_shards.unwrap_or(default_shards).max(1),
            )),
            topology: Arc::new(topology),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A clone of the shared multiplexed connection.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// True when Redis is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.topology.cluster
    }

    /// A client of the first `REDIS_URL` node, for pub/sub (classic pub/sub
    /// is cluster-wide, so on a cluster any node will do).
    pub fn client(&self) -> &redis::Client {
        &self.clients[0]
    }

    /// A client of every `REDIS_URL` node, for pub/sub that moves to
    /// another node when one is down.
    pub fn clients(&self) -> &[redis::Client] {
        &self.clients
    }

    /// A new connection of its own for blocking commands; see [`Dedicated`].
    pub fn dedicated(&self, response_timeout: Option<Duration>) -> Dedicated {
        Dedicated::new(&self.topology, response_timeout)
    }

    /// How many queue shards this process writes to and reads.
    pub fn queue_shards(&self) -> u32 {
        self.shards.load(Ordering::Relaxed).max(1)
    }

    /// Raises the shard count (never lowers it).
    pub(crate) fn raise_queue_shards(&self, count: u32) {
        self.shards.fetch_max(count.max(1), Ordering::Relaxed);
    }

    /// The shard an operation's queue entries, retries, deadline and index
    /// expiry go to: a hash of its id, so a tree's children spread over
    /// every shard.
    pub fn shard_of(&self, id: &str) -> u32 {
        queue::shard_for(id, self.queue_shards())
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_ms
    }

    pub async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Loads the function library into Redis (every master, on a
    /// cluster). Loading it again is harmless: its name and content go
    /// together. Redis older than 7.0 has no functions and is refused here
    /// with a message that says so.
    pub async fn load_library(&self) -> StoreResult<()> {
        let loaded: redis::RedisResult<Value> = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&scripts::LIBRARY.source)
            .query_async(&mut self.conn())
            .await;
        match loaded {
            Ok(_) => Ok(()),
            Err(err) if err.detail().is_some_and(|d| d.contains("unknown command")) => {
                Err(StoreError::data(format!(
                    "longrun needs Redis 7.0 or newer (its transitions are Redis functions): {err}"
                )))
            }
            Err(err) => Err(err.into()),
        }
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

    /// Calls a function on one key (loading the library again when Redis
    /// lost it).
    pub(crate) async fn run(
        &self,
        function: &Function,
        key: &str,
        args: &[String],
    ) -> StoreResult<Value> {
        let build = || {
            let mut pipe = redis::pipe();
            function.add_call(&mut pipe, key, args);
            pipe
        };
        let (reply,): (Value,) = self.query_loading_library(build).await?;
        Ok(reply)
    }

    /// Runs one transition for many operations, each `(key, root, its own
    /// arguments)`, and gives each its result, in one round trip. On one
    /// server the operations go through the transition's batch script,
    /// [`BATCH_LIMIT`] per call, so the script's fixed cost is paid once per
    /// call while no call holds Redis (single-threaded) for long; on a
    /// cluster, whose operations live in different slots, one call each.
    pub(crate) async fn run_batch(
        &self,
        single: &Function,
        batch: &Function,
        items: &[(String, String, Vec<String>)],
    ) -> StoreResult<Vec<StoreResult<Value>>> {
        if self.is_cluster() || items.len() < 2 {
            let calls: Vec<_> = items
                .iter()
                .map(|(key, root, own)| {
                    let mut args = self.base_args(root);
                    args.extend(own.iter().cloned());
                    (single, key.clone(), args)
                })
                .collect();
            return self.run_many(&calls).await;
        }
        let chunks: Vec<&[(String, String, Vec<String>)]> = items.chunks(BATCH_LIMIT).collect();
        let build = || {
            let mut pipe = redis::pipe();
            for chunk in &chunks {
                let per = chunk[0].2.len();
                let command = pipe.cmd("FCALL").arg(batch.name()).arg(chunk.len());
                for (key, _, _) in *chunk {
                    command.arg(key);
                }
                command.arg(self.base_args(&chunk[0].1)).arg(per);
                for (_, root, own) in *chunk {
                    debug_assert_eq!(
                        own.len(),
                        per,
                        "operations of a batch have as many arguments"
                    );
                    command.arg(root).arg(own);
                }
            }
            pipe
        };
        let mut replies: Vec<Value> = self.query_loading_library(build).await?;
        let mut results = Vec::with_capacity(items.len());
        for (chunk, reply) in chunks.iter().zip(replies.drain(..)) {
            let Value::Array(each) = reply else {
                return Err(StoreError::data("a batch script answered no array"));
            };
            if each.len() != chunk.len() {
                return Err(StoreError::data(
                    "a batch script answered a reply per operation too few or many",
                ));
            }
            results.extend(each.into_iter().map(batch_item));
        }
        Ok(results)
    }

    /// Sends the pipeline `build` makes; after a "Function not found" (Redis
    /// lost the library: a restart, a failover) loads it and sends
    /// it again. Only for pipelines that may be sent twice.
    pub(crate) async fn query_loading_library<T: redis::FromRedisValue>(
        &self,
        build: impl Fn() -> redis::Pipeline,
    ) -> StoreResult<T> {
        self.send_loading_library(
            build,
            |sent: &redis::RedisResult<T>| matches!(sent, Err(err) if is_missing_function(err)),
        )
        .await
    }

    /// Sends the pipeline `build` makes; when `lost` finds that Redis lost
    /// the library, loads it and sends the pipeline again.
    async fn send_loading_library<T: redis::FromRedisValue>(
        &self,
        build: impl Fn() -> redis::Pipeline,
        lost: impl Fn(&redis::RedisResult<T>) -> bool,
    ) -> StoreResult<T> {
        let mut conn = self.conn();
        let sent = build().query_async(&mut conn).await;
        if !lost(&sent) {
            return Ok(sent?);
        }
        self.load_library().await?;
        Ok(build().query_async(&mut conn).await?)
    }

    /// Runs many script calls in one round trip; each gets its own result.
    pub(crate) async fn run_many(
        &self,
        calls: &[(&Function, String, Vec<String>)],
    ) -> StoreResult<Vec<StoreResult<Value>>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let build = || {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (function, key, args) in calls {
                function.add_call(&mut pipe, key, args);
            }
            pipe
        };
        // Errors are per call (`ignore_errors`): any call may be the one
        // that found the library missing.
        let lost = |sent: &redis::RedisResult<Vec<redis::RedisResult<Value>>>| match sent {
            Ok(results) => results
                .iter()
                .any(|result| matches!(result, Err(err) if is_missing_function(err))),
            Err(err) => is_missing_function(err),
        };
        let results = self.send_loading_library(build, lost).await?;
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
