//! The background tasks of a worker process (see [`crate::engine`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use longrun_shared::store::connection::retry_delay;
use longrun_shared::store::queue::{EntryRef, QueueEntry};
use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::engine::{Engine, MAX_BATCH, READ_BLOCK_MS};

/// How long finished jobs' housekeeping waits for a queue read to carry it
/// before it is sent on its own.
const HOUSEKEEPING_LINGER: Duration = Duration::from_millis(25);
/// Deadlines, retries and index expiries handled per scheduler tick.
const TICK_BATCH: usize = 500;
/// How often the scheduler looks for consumers of workers that are gone.
const FORGET_CONSUMERS_EVERY: Duration = Duration::from_secs(60);

/// How often the intake looks whether the deployment added queue shards.
const SHARD_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Sleeps for an exponential, jittered delay after the `failures`-th error in a row.
async fn backoff(failures: u32) {
    tokio::time::sleep(retry_delay(failures, Duration::from_secs(3))).await;
}

/// Creates the consumer groups, agrees on the queue shards and advertises
/// the kinds, retrying until Redis answers.
pub(crate) async fn prepare(engine: &Arc<Engine>) {
    let mut failures: u32 = 0;
    loop {
        let ready = async {
            engine.store().agree_on_queue_shards().await?;
            engine.store().ensure_groups().await?;
            engine.advertise_kinds().await
        };
        match ready.await {
            Ok(()) => return,
            Err(err) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(error = %err, "waiting for redis");
                }
                backoff(failures).await;
            }
        }
    }
}

/// Runs one [`reader`] per queue shard, and more when the deployment
/// grows its shard count; returns once every reader stopped.
pub(crate) async fn intake(engine: Arc<Engine>) {
    engine.wait_listening(Duration::from_secs(2)).await;
    let stop = engine.stopping().clone();
    let mut readers = JoinSet::new();
    let mut started = 0;
    loop {
        let shards = engine.store().queue_shards();
        for shard in started..shards {
            readers.spawn(reader(engine.clone(), shard));
        }
        if shards > started && started > 0 {
            info!(
                shards,
                "the deployment added queue shards; reading them too"
            );
        }
        started = started.max(shards);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(SHARD_CHECK_EVERY) => {
                if let Err(err) = engine.store().agree_on_queue_shards().await {
                    debug!(error = %err, "could not read the queue shard count");
                }
            }
        }
    }
    while readers.join_next().await.is_some() {}
}

/// Takes work from one queue shard while there are free slots, holding
/// them: now and then (every quarter lease) entries whose worker stopped
/// renewing its lease (the reaper's part, `XAUTOCLAIM`, going round the
/// whole pending list pass after pass), else new entries. Each read
/// carries the housekeeping of the jobs that finished since the last one.
/// When the shard has nothing new, the reader lets its slots go (to the
/// readers of other shards) and waits on a connection of its own until
/// an entry arrives.
async fn reader(engine: Arc<Engine>, shard: u32) {
    let stop = engine.stopping().clone();
    let lease = engine.config().lease;
    let reap_every = (lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let block_ms = (reap_every.as_millis() as u64).min(READ_BLOCK_MS);
    let mut waiting = engine.store().dedicated(Some(
        Duration::from_millis(block_ms) + Duration::from_secs(5),
    ));
    // Readers of different shards reap at different moments.
    let mut next_reap = tokio::time::Instant::now()
        + Duration::from_millis(rand::rng().random_range(0..=reap_every.as_millis() as u64));
    let mut cursor = "0-0".to_owned();
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        // Ask for as much work as there are free slots, holding them.
        let mut slots = engine.take_slots(MAX_BATCH).await;
        if slots.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= next_reap {
            let jitter = rand::rng().random_range(0..=reap_every.as_millis() as u64 / 4);
            next_reap = tokio::time::Instant::now() + reap_every + Duration::from_millis(jitter);
            let reaping: Vec<_> = slots.drain(..slots.len().min(100)).collect();
            cursor = reap(&engine, shard, reaping, &cursor).await;
            if slots.is_empty() {
                continue;
            }
        }
        let count = slots.len();
        let housekeeping = engine.take_housekeeping();
        // Not raced against `stop`: a read cut short could leave entries
        // delivered to this consumer and never claimed.
        match engine
            .store()
            .read_new(shard, &housekeeping, engine.consumer(), count)
            .await
        {
            Ok(read) => {
                failures = 0;
                if stop.is_cancelled() {
                    release(&engine, read.entries).await;
                    break;
                }
                if !read.entries.is_empty() {
                    engine.dispatch(read.entries, slots).await;
                    continue;
                }
                drop(slots);
                let until = next_reap.saturating_duration_since(tokio::time::Instant::now());
                let block = (until.as_millis() as u64).clamp(1, block_ms);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    waited = engine.store().wait_for_entries(&mut waiting, shard, &read.last_id, block) => {
                        if let Err(err) = waited {
                            failures += 1;
                            debug!(shard, error = %err, "waiting for queue entries failed");
                            backoff(failures).await;
                        }
                    }
                }
            }
            Err(err) => {
                engine.return_housekeeping(housekeeping);
                drop(slots);
                failures += 1;
                if err.to_string().contains("NOGROUP") {
                    let _ = engine.store().ensure_group(shard).await;
                } else if failures == 1 || failures.is_multiple_of(20) {
                    warn!(shard, error = %err, "reading the queue failed; retrying");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = backoff(failures) => {}
                }
            }
        }
    }
}

/// Puts entries read during shutdown back on the queue, unclaimed.
async fn release(engine: &Arc<Engine>, entries: Vec<QueueEntry>) {
    if entries.is_empty() {
        return;
    }
    let items: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|e| (e.root.as_str(), e.op_id.as_str(), e.generation))
        .collect();
    if engine.store().enqueue(&items).await.is_ok() {
        let refs: Vec<EntryRef> = entries.iter().map(QueueEntry::reference).collect();
        let _ = engine.store().ack(&refs).await;
    }
}

/// Takes over entries of `shard` idle longer than a lease (their worker
/// stopped renewing it), as many as `slots`; returns where the next pass
/// goes on.
async fn reap(
    engine: &Arc<Engine>,
    shard: u32,
    slots: Vec<tokio::sync::OwnedSemaphorePermit>,
    cursor: &str,
) -> String {
    let lease_ms = engine.config().lease.as_millis() as u64;
    match engine
        .store()
        .take_over_idle(shard, engine.consumer(), lease_ms, slots.len(), cursor)
        .await
    {
        Ok((entries, next)) => {
            if !entries.is_empty() {
                debug!(shard, count = entries.len(), "took over idle entries");
                engine.dispatch(entries, slots).await;
            }
            next
        }
        Err(err) => {
            debug!(shard, error = %err, "reaper pass failed");
            "0-0".to_owned()
        }
    }
}

/// Removes, now and then, the consumers of workers that are gone.
async fn forget_stopped_workers(engine: &Arc<Engine>) {
    let idle = (engine.config().lease.as_millis() as u64 * 10).max(300_000);
    match engine
        .store()
        .forget_idle_consumers(engine.consumer(), idle)
        .await
    {
        Ok(0) => {}
        Ok(count) => debug!(count, "removed consumers of stopped workers"),
        Err(err) => debug!(error = %err, "could not list consumers"),
    }
}

/// Moves retries whose backoff is over onto the queue, enforces overall
/// deadlines, removes expired roots from the list indexes and, now and
/// then, the consumers of stopped workers; sleeps until
/// the earliest of them is due (at most a second, for the ones other
/// processes add).
pub(crate) async fn scheduler(engine: Arc<Engine>) {
    const IDLE_CHECK: Duration = Duration::from_secs(1);
    let stop = engine.stopping().clone();
    let mut failures: u32 = 0;
    let mut last_forget = tokio::time::Instant::now();
    loop {
        if last_forget.elapsed() >= FORGET_CONSUMERS_EVERY {
            last_forget = tokio::time::Instant::now();
            forget_stopped_workers(&engine).await;
        }
        let wait = match tick(&engine).await {
            Ok(busy) => {
                failures = 0;
                busy.unwrap_or(IDLE_CHECK).min(IDLE_CHECK)
            }
            Err(err) => {
                failures += 1;
                debug!(error = %err, "scheduler tick failed");
                Duration::from_millis(200 * u64::from(failures.min(10)))
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = engine.wait_for_due(wait) => {}
        }
    }
}

/// One scheduler pass over every shard; returns how long to sleep (zero
/// when there is more).
async fn tick(engine: &Arc<Engine>) -> longrun_shared::store::StoreResult<Option<Duration>> {
    let store = engine.store();
    let mut more = false;
    let mut next: Option<u64> = None;
    for due in store.tick(TICK_BATCH).await? {
        if due.promoted > 0 {
            debug!(shard = due.shard, moved = due.promoted, "retries due");
        }
        if !due.deadlines.is_empty() {
            let housekeeping = store.enforce_deadlines(due.shard, &due.deadlines).await?;
            store.housekeep(&housekeeping).await?;
        }
        if !due.expiring.is_empty() {
            let removed = store.sweep_index(due.shard, &due.expiring).await?;
            debug!(removed, "expired operations left the list indexes");
        }
        more |= due.promoted as usize == TICK_BATCH
            || due.deadlines.len() == TICK_BATCH
            || due.expiring.len() == TICK_BATCH;
        if let Some(wait) = due.next_in_ms {
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
    }
    Ok(if more {
        Some(Duration::ZERO)
    } else {
        next.map(Duration::from_millis)
    })
}

/// Renews leases every third of the lease time.
pub(crate) async fn heartbeat(engine: Arc<Engine>, stop: CancellationToken) {
    let period = engine.config().lease / 3;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        if let Err(err) = engine.renew_leases().await {
            warn!(error = %err, "renewing leases failed");
        }
    }
}

/// Listens on the cancel channel and stops the named running handlers.
/// (Classic pub/sub reaches every node of a cluster, so any node will do:
/// after a lost connection it tries the next `REDIS_URL` node.)
pub(crate) async fn cancel_listener(engine: Arc<Engine>, stop: CancellationToken) {
    let channel = engine.store().keys().cancel_channel();
    let clients = engine.store().clients();
    let mut failures: u32 = 0;
    let mut attempt: usize = 0;
    while !stop.is_cancelled() {
        let client = &clients[attempt % clients.len()];
        attempt = attempt.wrapping_add(1);
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match subscribed.await {
            Ok(pubsub) => {
                failures = 0;
                engine.mark_listening();
                pubsub
            }
            Err(err) => {
                failures += 1;
                debug!(error = %err, "cancel listener cannot subscribe");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = backoff(failures) => continue,
                }
            }
        };
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                message = messages.next() => match message {
                    Some(message) => {
                        if let Ok(ids) = message.get_payload::<String>() {
                            engine.cancel_running(&ids);
                        }
                    }
                    None => break,
                },
            }
        }
        warn!("cancel channel connection lost; resubscribing");
    }
}

/// Sends the housekeeping batch of finished jobs when no queue read
/// carried it within a moment; flushes what is left when stopping.
pub(crate) async fn housekeeper(engine: Arc<Engine>, stop: CancellationToken) {
    let mut failures: u32 = 0;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = engine.housekeeping_due() => false,
        };
        if !stopping {
            tokio::time::sleep(HOUSEKEEPING_LINGER).await;
        }
        let batch = engine.take_housekeeping();
        if !batch.is_empty()
            && let Err(err) = engine.store().housekeep(&batch).await
        {
            engine.return_housekeeping(batch);
            failures += 1;
            warn!(error = %err, "housekeeping failed; retrying");
            if stopping && failures > 5 {
                return;
            }
            backoff(failures).await;
            continue;
        }
        failures = 0;
        if stopping {
            return;
        }
    }
}
