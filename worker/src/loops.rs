//! The background tasks of a worker process (see [`crate::engine`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use longrun_shared::Store;
use rand::Rng;
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::engine::{Engine, MAX_BATCH, READ_BLOCK_MS, job_error};

const ACK_BATCH: usize = 512;

/// Sleeps for an exponential, jittered delay after the `failures`-th error in a row.
async fn backoff(failures: u32) {
    let ceiling = 50u64.saturating_mul(1 << failures.min(6)).min(3_000);
    let delay = rand::rng().random_range(ceiling / 2..=ceiling);
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

/// Creates the consumer group and advertises the kinds, retrying until Redis answers.
pub(crate) async fn prepare(engine: &Arc<Engine>) {
    let mut failures: u32 = 0;
    loop {
        let ready = async {
            engine.store().ensure_group(0).await?;
            engine.store().load_scripts().await?;
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

/// Reads new entries while there are free slots.
pub(crate) async fn intake(engine: Arc<Engine>, stop: CancellationToken) {
    let mut failures: u32 = 0;
    let mut conn = None;
    while !stop.is_cancelled() {
        // Wait for a free slot before asking for work.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = engine.slots().clone().acquire_owned() => permit,
        };
        drop(permit);
        if conn.is_none() {
            let config = AsyncConnectionConfig::new()
                .set_response_timeout(None)
                .set_connection_timeout(Some(Duration::from_secs(2)));
            match engine
                .store()
                .client()
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    failures += 1;
                    debug!(error = %err, "intake cannot connect");
                    backoff(failures).await;
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let count = engine.slots().available_permits().clamp(1, MAX_BATCH);
        // Not raced against `stop`: a read cut short could leave entries
        // delivered to this consumer and never claimed.
        match engine
            .store()
            .read_new(connection, engine.consumer(), count, READ_BLOCK_MS)
            .await
        {
            Ok(entries) => {
                failures = 0;
                if stop.is_cancelled() {
                    release(&engine, entries).await;
                    break;
                }
                engine.dispatch(entries).await;
            }
            Err(err) => {
                failures += 1;
                conn = None;
                if err.to_string().contains("NOGROUP") {
                    let _ = engine.store().ensure_group(0).await;
                } else {
                    warn!(error = %err, "reading the queue failed");
                }
                backoff(failures).await;
            }
        }
    }
}

/// Puts entries read during shutdown back on the queue, unclaimed.
async fn release(engine: &Arc<Engine>, entries: Vec<longrun_shared::store::queue::QueueEntry>) {
    if entries.is_empty() {
        return;
    }
    let items: Vec<(&str, &str, u64)> = entries
        .iter()
        .map(|e| (e.root.as_str(), e.op_id.as_str(), e.generation))
        .collect();
    if engine.store().enqueue(&items).await.is_ok() {
        let ids: Vec<String> = entries.iter().map(|e| e.entry_id.clone()).collect();
        let _ = engine.store().ack(&ids).await;
    }
}

/// Takes over entries whose worker stopped renewing its lease.
pub(crate) async fn reaper(engine: Arc<Engine>, stop: CancellationToken) {
    let lease = engine.config().lease;
    let period = (lease / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let lease_ms = lease.as_millis() as u64;
    loop {
        let jitter = rand::rng().random_range(0..=period.as_millis() as u64 / 4);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period + Duration::from_millis(jitter)) => {}
        }
        let free = engine.slots().available_permits();
        if free == 0 {
            continue;
        }
        match engine
            .store()
            .take_over_idle(engine.consumer(), lease_ms, free.min(100))
            .await
        {
            Ok(entries) if !entries.is_empty() => {
                debug!(count = entries.len(), "took over idle entries");
                engine.dispatch(entries).await;
            }
            Ok(_) => {}
            Err(err) => debug!(error = %err, "reaper pass failed"),
        }
    }
}

/// Moves retries whose backoff is over onto the queue.
pub(crate) async fn scheduler(engine: Arc<Engine>, stop: CancellationToken) {
    const IDLE_CHECK: Duration = Duration::from_secs(1);
    let mut failures: u32 = 0;
    loop {
        let wait = match engine.store().promote_due(500).await {
            Ok((moved, next)) => {
                failures = 0;
                if moved > 0 {
                    debug!(moved, "retries due");
                    Duration::ZERO
                } else {
                    next.map_or(IDLE_CHECK, |ms| Duration::from_millis(ms).min(IDLE_CHECK))
                }
            }
            Err(err) => {
                failures += 1;
                debug!(error = %err, "promoting retries failed");
                Duration::from_millis(200 * u64::from(failures.min(10)))
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = engine.wait_for_due_retry(wait) => {}
        }
    }
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
pub(crate) async fn cancel_listener(engine: Arc<Engine>, stop: CancellationToken) {
    let channel = engine.store().keys().cancel_channel();
    let mut failures: u32 = 0;
    while !stop.is_cancelled() {
        let subscribed = async {
            let mut pubsub = engine.store().client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match subscribed.await {
            Ok(pubsub) => {
                failures = 0;
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

/// Acknowledges handled entries in batches.
pub(crate) async fn acker(store: Store, mut entries: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    let mut failures: u32 = 0;
    while let Some(first) = entries.recv().await {
        batch.push(first);
        while batch.len() < ACK_BATCH {
            match entries.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        loop {
            match store.ack(&batch).await {
                Ok(()) => {
                    failures = 0;
                    batch.clear();
                    break;
                }
                Err(err) => {
                    failures += 1;
                    let err = job_error(err);
                    warn!(error = %err.message, "acknowledging failed; retrying");
                    backoff(failures).await;
                }
            }
        }
    }
}
