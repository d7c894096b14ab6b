//! Connections to Redis: one server or a Redis Cluster, behind one type.
//!
//! [`RedisConn`] is the shared, multiplexed connection every command goes
//! through. On one server it is a [`ConnectionManager`] (reconnects by
//! itself, with exponential backoff and jitter); on a cluster it is the
//! redis crate's async [`ClusterConnection`] (routes each command to the
//! node that owns its key's slot, follows `MOVED`/`ASK`, reconnects nodes)
//! created on first use and, while the cluster cannot be reached, retried
//! with exponential backoff and jitter — a command meanwhile fails at once
//! instead of waiting, so the api can answer 503. Both implement
//! [`ConnectionLike`], so every caller works unchanged on either.
//!
//! A pipeline on a cluster may name keys of many slots (a worker's
//! acknowledgements next to its queue read, claims of many trees): it is
//! split by slot, the parts are sent concurrently (each in order), and the
//! replies are put back in the pipeline's order.
//!
//! [`Dedicated`] is a connection of its own for a blocking command (a
//! worker waiting for queue entries): on a cluster it follows the `MOVED`
//! redirection to the node that owns the key and stays there.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::join_all;
use rand::Rng;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{
    Arg, AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, RetryMethod, Value,
};

/// How long connecting to a node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a (non-blocking) command may take to answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

/// The delay before reconnect attempt number `failures` (from 1):
/// exponential from 50 ms up to `ceiling`, with full jitter over its upper
/// half so that many processes losing Redis at once do not come back in
/// lockstep.
pub fn retry_delay(failures: u32, ceiling: Duration) -> Duration {
    let ceiling_ms = ceiling.as_millis().max(2) as u64;
    let top = 50u64
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(ceiling_ms);
    Duration::from_millis(rand::rng().random_range(top / 2..=top))
}

/// True for errors that say Redis is (momentarily) unreachable, restarting
/// or failing over — worth retrying after a pause — rather than that the
/// command itself is wrong.
pub fn is_transient(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || !matches!(err.retry_method(), RetryMethod::NoRetry)
}

/// The nodes `REDIS_URL` names (comma-separated) and whether they form a cluster.
#[derive(Debug, Clone)]
pub struct Topology {
    pub seeds: Vec<ConnectionInfo>,
    pub cluster: bool,
}

impl Topology {
    /// Reads `REDIS_URL`; `cluster` forces the mode (`None`: a cluster when
    /// several nodes are listed).
    pub fn parse(url: &str, cluster: Option<bool>) -> RedisResult<Topology> {
        let seeds = url
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<RedisResult<Vec<_>>>()?;
        if seeds.is_empty() {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "REDIS_URL names no server",
            )));
        }
        let cluster = cluster.unwrap_or(seeds.len() > 1);
        if !cluster && seeds.len() > 1 {
            return Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "REDIS_URL lists several servers but LONGRUN_REDIS_CLUSTER is false",
            )));
        }
        Ok(Topology { seeds, cluster })
    }
}

/// The shared connection: one server or a cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterHandle),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(_) => f.write_str("RedisConn::Cluster"),
        }
    }
}

impl RedisConn {
    /// Prepares the connection; connects lazily (a Redis that is down now
    /// is not an error: commands fail until it is up).
    pub fn open(topology: &Topology) -> RedisResult<RedisConn> {
        if topology.cluster {
            return Ok(RedisConn::Cluster(ClusterHandle::new(&topology.seeds)?));
        }
        let client = redis::Client::open(topology.seeds[0].clone())?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        Ok(RedisConn::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(handle) => async move {
                let mut conn = handle.connection().await?;
                conn.req_packed_command(cmd).await
            }
            .boxed(),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(handle) => async move {
                let mut conn = handle.connection().await?;
                if pipeline.is_transaction() {
                    // MULTI/EXEC must stay whole (and on one slot).
                    return conn.req_packed_commands(pipeline, offset, count).await;
                }
                across_slots(conn, pipeline).await
            }
            .boxed(),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(_) => 0,
        }
    }
}

/// The cluster connection, created on first use and then shared.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<ClusterInner>,
}

struct ClusterInner {
    client: ClusterClient,
    current: RwLock<Option<ClusterConnection>>,
    /// Held while connecting; counts failed attempts and when the next may start.
    connecting: tokio::sync::Mutex<(u32, Option<Instant>)>,
}

impl ClusterHandle {
    fn new(seeds: &[ConnectionInfo]) -> RedisResult<ClusterHandle> {
        let client = ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(1_000)
            .build()?;
        Ok(ClusterHandle {
            inner: Arc::new(ClusterInner {
                client,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new((0, None)),
            }),
        })
    }

    fn current(&self) -> Option<ClusterConnection> {
        self.inner
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The connection, connecting first if need be. While the cluster is
    /// unreachable, attempts are spaced out (exponential backoff with
    /// jitter) and callers in between fail at once.
    async fn connection(&self) -> RedisResult<ClusterConnection> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let mut attempts = self.inner.connecting.lock().await;
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        if let Some(next) = attempts.1
            && Instant::now() < next
        {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the Redis Cluster is unreachable; reconnecting",
            )));
        }
        let connected = tokio::time::timeout(
            CONNECT_TIMEOUT * 2,
            self.inner.client.get_async_connection(),
        )
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to the Redis Cluster timed out",
            )))
        });
        match connected {
            Ok(conn) => {
                *attempts = (0, None);
                *self
                    .inner
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(conn.clone());
                Ok(conn)
            }
            Err(err) => {
                attempts.0 += 1;
                attempts.1 = Some(Instant::now() + retry_delay(attempts.0, Duration::from_secs(2)));
                Err(err)
            }
        }
    }

    /// Sends `cmd` to every master and returns each one's answer by address.
    pub async fn on_every_master(&self, cmd: Cmd) -> RedisResult<Vec<(String, Value)>> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
        let mut conn = self.connection().await?;
        let reply = conn
            .route_command(
                cmd,
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await?;
        let Value::Map(pairs) = reply else {
            return Ok(vec![(String::new(), reply)]);
        };
        Ok(pairs
            .into_iter()
            .map(|(node, value)| {
                let node = match node {
                    Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Value::SimpleString(text) => text,
                    other => format!("{other:?}"),
                };
                (node, value)
            })
            .collect())
    }
}

/// The marker [`add_barrier`] puts in a pipeline.
const BARRIER: &str = "longrun:barrier";

/// Keeps the order of a pipeline across slots at this point: on a cluster
/// every command before the barrier has been answered before any after it
/// is sent. (A pipeline on one server runs in order anyway; there the
/// barrier is a harmless `ECHO`, ignored.)
pub fn add_barrier(pipe: &mut Pipeline) {
    pipe.cmd("ECHO").arg(BARRIER).ignore();
}

fn is_barrier(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter();
    matches!(args.next(), Some(Arg::Simple(name)) if name.eq_ignore_ascii_case(b"ECHO"))
        && matches!(args.next(), Some(Arg::Simple(arg)) if arg == BARRIER.as_bytes())
        && args.next().is_none()
}

/// Runs a pipeline whose commands may live in different slots. Between
/// barriers, one sub-pipeline per slot (in the pipeline's order), sent
/// concurrently; the replies come back in the pipeline's order.
async fn across_slots(conn: ClusterConnection, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut phases: Vec<Vec<(Option<Slot>, Vec<usize>)>> = vec![Vec::new()];
    let mut by_slot: HashMap<Slot, usize> = HashMap::new();
    let mut values = vec![Value::Nil; commands.len()];
    for (index, cmd) in commands.iter().enumerate() {
        if is_barrier(cmd) {
            values[index] = Value::BulkString(BARRIER.as_bytes().to_vec());
            phases.push(Vec::new());
            by_slot.clear();
            continue;
        }
        let groups = phases.last_mut().expect("one phase at least");
        match command_key(cmd).map(Slot::for_key) {
            Some(slot) => match by_slot.get(&slot) {
                Some(&group) => groups[group].1.push(index),
                None => {
                    by_slot.insert(slot, groups.len());
                    groups.push((Some(slot), vec![index]));
                }
            },
            // Keyless: on its own, routed by the cluster connection.
            None => groups.push((None, vec![index])),
        }
    }
    if let [groups] = phases.as_slice()
        && let [(Some(_), _)] = groups.as_slice()
    {
        let mut conn = conn;
        return conn.req_packed_commands(pipeline, 0, commands.len()).await;
    }
    for groups in &phases {
        let sends = groups.iter().map(|(slot, indexes)| {
            let mut conn = conn.clone();
            let mut part = redis::pipe();
            for &index in indexes {
                part.add_command(commands[index].clone());
            }
            let single = slot.is_none();
            async move {
                if single {
                    let cmd = part
                        .cmd_iter()
                        .next()
                        .cloned()
                        .unwrap_or_else(|| redis::cmd("PING"));
                    conn.req_packed_command(&cmd).await.map(|value| vec![value])
                } else {
                    conn.req_packed_commands(&part, 0, part.len()).await
                }
            }
        });
        let replies = join_all(sends).await;
        for ((_, indexes), reply) in groups.iter().zip(replies) {
            for (&index, value) in indexes.iter().zip(reply?) {
                values[index] = value;
            }
        }
    }
    Ok(values)
}

/// The key that decides where a command runs, for the commands longrun
/// sends in pipelines; `None` for keyless ones.
pub fn command_key(cmd: &Cmd) -> Option<&[u8]> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|arg| match arg {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let name = args.first()?.to_ascii_uppercase();
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                None
            } else {
                args.get(3).copied()
            }
        }
        b"XREAD" | b"XREADGROUP" => {
            let streams = args
                .iter()
                .position(|arg| arg.eq_ignore_ascii_case(b"STREAMS"))?;
            args.get(streams + 1).copied()
        }
        b"XGROUP" | b"XINFO" | b"OBJECT" | b"MEMORY" => args.get(2).copied(),
        b"PING" | b"CONFIG" | b"SCRIPT" | b"CLIENT" | b"INFO" | b"CLUSTER" | b"TIME"
        | b"PUBLISH" | b"ECHO" | b"DBSIZE" | b"FLUSHALL" | b"FLUSHDB" | b"COMMAND" | b"MULTI"
        | b"EXEC" | b"WAIT" | b"SCAN" | b"KEYS" | b"RANDOMKEY" => None,
        _ => args.get(1).copied(),
    }
}

/// A connection of its own for blocking commands. On a cluster it starts
/// at a seed node and follows `MOVED`/`ASK` to the node that owns the key;
/// after a connection error it starts over from the next seed.
pub struct Dedicated {
    seeds: Vec<ConnectionInfo>,
    next_seed: usize,
    target: Option<ConnectionInfo>,
    conn: Option<MultiplexedConnection>,
    response_timeout: Option<Duration>,
}

impl std::fmt::Debug for Dedicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedicated")
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Dedicated {
    /// `response_timeout` must exceed the longest block the caller asks for.
    pub fn new(topology: &Topology, response_timeout: Option<Duration>) -> Dedicated {
        Dedicated {
            seeds: topology.seeds.clone(),
            next_seed: rand::rng().random_range(0..topology.seeds.len().max(1)),
            target: None,
            conn: None,
            response_timeout,
        }
    }

    async fn connect(&mut self) -> RedisResult<MultiplexedConnection> {
        let info = match self.target.clone() {
            Some(info) => info,
            None => {
                let info = self.seeds[self.next_seed % self.seeds.len()].clone();
                self.next_seed = self.next_seed.wrapping_add(1);
                info
            }
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(self.response_timeout);
        let conn = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one command, following redirections.
    pub async fn query(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        for _ in 0..5 {
            let mut conn = match self.conn.clone() {
                Some(conn) => conn,
                None => self.connect().await?,
            };
            match cmd.query_async::<Value>(&mut conn).await {
                Err(err) if err.redirect_node().is_some() => {
                    let node = err.redirect_node().map(|(node, _)| node.to_owned());
                    self.conn = None;
                    self.target = node.and_then(|node| self.redirected(&node));
                }
                Err(err) => {
                    if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError)
                    {
                        return Err(err);
                    }
                    // The node went away (or fails over): start over.
                    self.conn = None;
                    self.target = None;
                    return Err(err);
                }
                Ok(value) => return Ok(value),
            }
        }
        Err(RedisError::from((
            redis::ErrorKind::Client,
            "too many cluster redirections",
        )))
    }

    /// The connection info of `host:port`, with the seeds' credentials and TLS.
    fn redirected(&self, node: &str) -> Option<ConnectionInfo> {
        let (host, port) = node.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let seed = self.seeds.first()?.clone();
        let addr = match seed.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        Some(seed.set_addr(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_keys_follow_each_commands_layout() {
        let key = |cmd: &Cmd| command_key(cmd).map(|k| String::from_utf8_lossy(k).into_owned());
        assert_eq!(
            key(redis::cmd("HGETALL").arg("lr:{a}:op:a")).as_deref(),
            Some("lr:{a}:op:a")
        );
        assert_eq!(
            key(redis::cmd("EVALSHA")
                .arg("abc")
                .arg(1)
                .arg("lr:{r}:op:x")
                .arg("p"))
            .as_deref(),
            Some("lr:{r}:op:x")
        );
        assert_eq!(key(redis::cmd("EVALSHA").arg("abc").arg(0).arg("p")), None);
        assert_eq!(
            key(redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("workers")
                .arg("me")
                .arg("COUNT")
                .arg(5)
                .arg("STREAMS")
                .arg("lr:{q3}:ready")
                .arg(">"))
            .as_deref(),
            Some("lr:{q3}:ready")
        );
        assert_eq!(
            key(redis::cmd("XGROUP").arg("CREATE").arg("lr:{q1}:ready")).as_deref(),
            Some("lr:{q1}:ready")
        );
        assert_eq!(key(redis::cmd("CONFIG").arg("GET").arg("save")), None);
        assert_eq!(key(&redis::cmd("PING")), None);
    }

    #[test]
    fn a_barrier_is_recognised_and_nothing_else_is() {
        let mut pipe = redis::pipe();
        pipe.cmd("ECHO").arg("hello");
        add_barrier(&mut pipe);
        let flags: Vec<bool> = pipe.cmd_iter().map(is_barrier).collect();
        assert_eq!(flags, vec![false, true]);
    }

    #[test]
    fn several_urls_make_a_cluster_unless_told_otherwise() {
        let one = Topology::parse("redis://127.0.0.1:7000/", None).expect("parses");
        assert!(!one.cluster);
        let forced = Topology::parse("redis://127.0.0.1:7000/", Some(true)).expect("parses");
        assert!(forced.cluster);
        let many =
            Topology::parse("redis://127.0.0.1:7000/, redis://127.0.0.1:7001/", None).expect("ok");
        assert!(many.cluster);
        assert_eq!(many.seeds.len(), 2);
        assert!(Topology::parse("redis://a:1/,redis://b:2/", Some(false)).is_err());
        assert!(Topology::parse(" , ", None).is_err());
    }

    #[test]
    fn reconnect_delays_grow_with_jitter_up_to_the_ceiling() {
        let ceiling = Duration::from_secs(2);
        for failures in 1..40 {
            let delay = retry_delay(failures, ceiling);
            assert!(delay <= ceiling, "{failures}: {delay:?}");
        }
        assert!(retry_delay(1, ceiling) <= Duration::from_millis(50));
        assert!(retry_delay(20, ceiling) >= Duration::from_secs(1));
    }
}
