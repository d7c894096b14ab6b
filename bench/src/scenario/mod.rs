//! The scenarios. Each one starts its own platform (a private Redis and the
//! target's services), drives it, and returns a [`Report`]: one JSON object
//! (printed as one line on stdout) and a human table (printed on stderr).
//!
//! - [`initiate`]: C keep-alive HTTP clients starting `demo.sleep` for T s.
//! - [`throughput`]: N pre-queued jobs drained by W worker processes.
//! - [`fanout`]: a parent with N children (longrun's `demo.fanout`).
//! - [`stream`]: C WebSocket clients following operations that emit progress.
//! - [`e2e`]: POST until the terminal event is seen on the WebSocket.
//! - [`replay`]: C WebSocket clients replaying whole logs at once (longrun).
//! - [`limit`]: `redis-benchmark` against the same Redis settings.
//! - [`transitions`]: Redis's own µs per operation for create, claim, complete.
//! - [`bullmq`]: BullMQ's queue-level benchmarks (bench/peers/queue-bench.mjs).
//! - [`soak`]: minutes of mixed load with memory recorded every minute.

pub mod bullmq;
pub mod e2e;
pub mod fanout;
pub mod initiate;
pub mod limit;
pub mod replay;
pub mod soak;
pub mod stream;
pub mod throughput;
pub mod transitions;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use longrun_shared::Store;
use longrun_shared::store::queue::{Housekeeping, QueueEntry};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::platform::Target;
use crate::ws::WsClient;

/// C WebSocket clients spread over O operations, each of its own owner:
/// client i follows operation i mod O (`stream`, `replay`).
#[derive(Debug, Clone, clap::Args)]
pub struct Audience {
    /// WebSocket clients (spread over the operations).
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    /// Operations, each of its own owner.
    #[arg(long, default_value_t = 10)]
    pub ops: usize,
}

impl Audience {
    /// Refuses a spread that leaves an operation without a client.
    pub fn check(&self) -> Result<()> {
        if self.ops == 0 || self.clients < self.ops {
            bail!("need at least one operation and one client per operation");
        }
        Ok(())
    }
}

/// Reads `n` new entries of queue shard 0 as consumer `consumer`, which
/// the operations created just before put there (their creation adds
/// them before it answers).
pub async fn read_entries(store: &Store, consumer: &str, n: usize) -> Result<Vec<QueueEntry>> {
    let mut entries = Vec::with_capacity(n);
    while entries.len() < n {
        let read = store
            .read_new(0, &Housekeeping::default(), consumer, n - entries.len())
            .await?;
        if read.entries.is_empty() {
            bail!("only {} of {n} queue entries were there", entries.len());
        }
        entries.extend(read.entries);
    }
    Ok(entries)
}

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Report {
    pub json: Map<String, Value>,
    /// (what, value) rows for people.
    pub table: Vec<(String, String)>,
}

impl Report {
    pub fn new(scenario: &str, target: Target) -> Report {
        let mut json = Map::new();
        json.insert("scenario".into(), json!(scenario));
        json.insert("target".into(), json!(target.as_str()));
        json.insert(
            "at".into(),
            json!(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        );
        Report {
            json,
            table: Vec::new(),
        }
    }

    pub fn set(&mut self, key: &str, value: impl serde::Serialize) {
        self.json.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }

    pub fn row(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.table.push((what.into(), value.into()));
    }

    /// The JSON line, then the table on stderr.
    pub fn print(&self) {
        println!("{}", Value::Object(self.json.clone()));
        let title = format!(
            "{} ({})",
            self.json["scenario"].as_str().unwrap_or("?"),
            self.json["target"].as_str().unwrap_or("?")
        );
        let width = self.table.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        eprintln!("\n{title}\n{}", "-".repeat(title.len()));
        for (what, value) in &self.table {
            eprintln!("  {what:<width$}  {value}");
        }
    }
}

/// Connects `count` clients, at most 100 handshakes at a time, each with
/// `token_of(i)` and (with `owner_events`) subscribed to its owner's
/// events. Fails on the first client that cannot connect.
pub async fn connect_many(
    target: Target,
    url: &str,
    count: usize,
    owner_events: bool,
    token_of: impl Fn(usize) -> Result<String>,
) -> Result<Vec<WsClient>> {
    let gate = Arc::new(Semaphore::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let token = token_of(index)?;
        let url = url.to_owned();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut client = tokio::time::timeout(
                Duration::from_secs(30),
                WsClient::connect(target, &url, &token),
            )
            .await
            .map_err(|_| anyhow::anyhow!("client {index}: no connection within 30 s"))??;
            if owner_events {
                tokio::time::timeout(Duration::from_secs(30), client.subscribe_owner())
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("client {index}: no subscribe answer within 30 s")
                    })??;
            }
            anyhow::Ok((index, client))
        });
    }
    let mut clients: Vec<Option<WsClient>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (index, client) = joined??;
        clients[index] = Some(client);
    }
    Ok(clients.into_iter().flatten().collect())
}

/// MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `api 1.2, worker-0 3.4, ...` from [`crate::platform::cpu_between`].
pub fn cpu_line(cpu: &Map<String, Value>) -> String {
    cpu.iter()
        .map(|(name, seconds)| format!("{name} {seconds}"))
        .collect::<Vec<_>>()
        .join(", ")
}
