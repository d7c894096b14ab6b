//! A real Redis Cluster for tests: three masters started from
//! `redis-server --cluster-enabled yes` and joined with
//! `redis-cli --cluster create`, on free ports, removed when dropped.
//! [`shared_cluster`] is the one every cluster test of a binary shares
//! (platforms on it keep apart by key prefix).

use std::io;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use longrun_shared::redis_server::{RedisOptions, RedisServer};

/// The cluster every test of this binary shares, started on first use.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        RedisCluster::start(3).unwrap_or_else(|err| {
            panic!("the cluster tests need redis-server and redis-cli on PATH (Debian: redis-server, redis-tools): {err}")
        })
    })
}

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes and creates the cluster (slots split evenly).
    pub fn start(masters: usize) -> io::Result<RedisCluster> {
        let mut nodes = Vec::with_capacity(masters);
        for _ in 0..masters {
            nodes.push(RedisServer::start(RedisOptions {
                extra_args: vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    "nodes.conf".into(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ],
                ..RedisOptions::default()
            })?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
            )));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_ok()?;
        Ok(cluster)
    }

    fn wait_ok(&self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = self.nodes.iter().all(|node| {
                Command::new("redis-cli")
                    .args(["-p", &node.port().to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(
            "the cluster did not reach cluster_state:ok",
        ))
    }

    /// Every node's URL, comma-separated (the form `REDIS_URL` takes for a cluster).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// A plain (non-cluster) connection to one node.
    async fn node(&self, index: usize) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.nodes[index].url())
            .expect("a node URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the node answers")
    }

    /// The hash slot of `key`.
    pub async fn slot_of(&self, key: &str) -> i64 {
        redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut self.node(0).await)
            .await
            .expect("CLUSTER KEYSLOT")
    }

    /// The port of the master that owns `key`'s slot.
    pub async fn owner_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key).await;
        let mut conn = self.node(0).await;
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .expect("CLUSTER SLOTS");
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let number = |value: Option<&redis::Value>| match value {
                Some(redis::Value::Int(n)) => *n,
                _ => -1,
            };
            if !(number(parts.first())..=number(parts.get(1))).contains(&slot) {
                continue;
            }
            if let Some(redis::Value::Array(master)) = parts.get(2) {
                return u16::try_from(number(master.get(1))).expect("a port");
            }
        }
        panic!("no master owns the slot {slot} of {key}");
    }

    /// Every key on every node matching `pattern`, sorted.
    pub async fn keys(&self, pattern: &str) -> Vec<String> {
        let mut all = Vec::new();
        for index in 0..self.nodes.len() {
            let mut conn = self.node(index).await;
            let mut cursor: u64 = 0;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1_000)
                    .query_async(&mut conn)
                    .await
                    .expect("SCAN");
                all.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        all.sort();
        all
    }

    /// How many times each master ran `command` so far (`INFO commandstats`).
    pub async fn calls(&self, command: &str) -> Vec<u64> {
        let mut counts = Vec::new();
        for index in 0..self.nodes.len() {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut self.node(index).await)
                .await
                .expect("INFO");
            let prefix = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
            let calls = info
                .lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|rest| rest.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            counts.push(calls);
        }
        counts
    }
}
