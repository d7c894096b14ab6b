//! A stand-in worker: claims an operation from the real queue and drives
//! it through the real transition scripts ([`Store::progress`],
//! [`Store::complete`]) at whatever rate a test needs.
//!
//! The real worker coalesces progress to one write per 50 ms per
//! operation, which is right for production and useless for testing the
//! gateway under a fast stream of events (1,000 events would take a
//! minute). The stand-in runs exactly the scripts the worker runs, so
//! every event is logged and published as in production; only the pace
//! differs. Calls retry while Redis is away (a retried call may log one
//! more event, which is fine: tests compare against the final log).

use std::time::Duration;

use longrun_shared::Store;
use longrun_shared::keys::WORKER_GROUP;
use longrun_shared::store::queue::QueueEntry;
use longrun_shared::store::transitions::{Claim, ClaimedJob};
use redis::streams::StreamReadReply;
use serde_json::Value;

const CONSUMER: &str = "stand-in";
/// Long enough that a test never loses its claim.
const LEASE_MS: u64 = 600_000;

/// One claimed operation.
#[derive(Debug, Clone)]
pub struct StandIn {
    store: Store,
    job: ClaimedJob,
}

impl StandIn {
    /// Claims operation `id` (queued by the api of a platform that runs no
    /// worker). Panics when it does not show up within 10 s.
    pub async fn claim(store: &Store, id: &str) -> StandIn {
        store.ensure_group(0).await.expect("queue group");
        let mut conn = store
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis connects");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Entries this consumer read before (for other ids), then new ones.
            for from in ["0", ">"] {
                let entries = read(store, &mut conn, from).await;
                if let Some(entry) = entries.into_iter().find(|entry| entry.op_id == id) {
                    return StandIn::claim_entry(store, entry).await;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "operation {id} never reached the queue"
            );
        }
    }

    async fn claim_entry(store: &Store, entry: QueueEntry) -> StandIn {
        let claims = store
            .claim_batch(std::slice::from_ref(&entry), CONSUMER, LEASE_MS)
            .await
            .expect("claim runs");
        match claims.into_iter().next() {
            Some(Ok((Claim::Run(job), _))) => StandIn {
                store: store.clone(),
                job,
            },
            other => panic!("could not claim {}: {other:?}", entry.op_id),
        }
    }

    pub fn id(&self) -> &str {
        &self.job.entry.op_id
    }

    /// Records a progress report; returns its seq.
    pub async fn progress(&self, percent: f64, data: &Value) -> u64 {
        let message = format!("{percent}%");
        self.retrying(|| {
            self.store
                .progress(&self.job, percent, Some(&message), data)
        })
        .await
        .expect("the stand-in keeps its claim")
    }

    /// Finishes the operation with `result`.
    pub async fn complete(&self, result: &Value) {
        let outcome = self
            .retrying(|| self.store.complete(&self.job, result, None))
            .await;
        assert_eq!(outcome.word, "ok", "completion was fenced");
        let _ = self
            .store
            .ack(std::slice::from_ref(&self.job.entry.reference()))
            .await;
    }

    /// Emits `count` progress events as fast as Redis takes them, then
    /// completes. Returns the operation's last seq.
    pub async fn run_fast(&self, count: u64, data: &Value) {
        for step in 1..=count {
            self.progress(step as f64 * 100.0 / count as f64, data)
                .await;
        }
        self.complete(&serde_json::json!({"steps": count})).await;
    }

    async fn retrying<T, F, Fut>(&self, call: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = longrun_shared::store::StoreResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match call().await {
                Ok(value) => return value,
                Err(err) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "redis stayed away: {err}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Reads up to 1,000 new entries of queue shard 0 for the stand-in's
/// consumer (waiting at most 200 ms for the first).
pub async fn read_new(store: &Store) -> Vec<QueueEntry> {
    store.ensure_group(0).await.expect("queue group");
    let mut conn = store
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    read(store, &mut conn, ">").await
}

async fn read(
    store: &Store,
    conn: &mut redis::aio::MultiplexedConnection,
    from: &str,
) -> Vec<QueueEntry> {
    let mut command = redis::cmd("XREADGROUP");
    command
        .arg("GROUP")
        .arg(WORKER_GROUP)
        .arg(CONSUMER)
        .arg("COUNT")
        .arg(1000);
    if from == ">" {
        command.arg("BLOCK").arg(200);
    }
    let reply: Option<StreamReadReply> = command
        .arg("STREAMS")
        .arg(store.keys().ready(0))
        .arg(from)
        .query_async(conn)
        .await
        .expect("the queue reads");
    let field = |entry: &redis::streams::StreamId, name: &str| -> Option<String> {
        entry.get::<String>(name)
    };
    reply
        .map(|reply| {
            reply
                .keys
                .iter()
                .flat_map(|key| key.ids.iter())
                .filter_map(|entry| {
                    Some(QueueEntry {
                        shard: 0,
                        entry_id: entry.id.clone(),
                        op_id: field(entry, "o")?,
                        root: field(entry, "r")?,
                        generation: field(entry, "g")?.parse().ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}
