//! A real Redis Cluster for tests: three masters started from
//! `redis-server --cluster-enabled yes` and joined with
//! `redis-cli --cluster create`, on free ports, removed when dropped.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use longrun_shared::redis_server::{RedisOptions, RedisServer};

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
}
