//! Auditing runs that went through faults: a WebSocket [`Subscriber`] that
//! reconnects like a real client and records every seq it got, a check
//! that an operation's log is gap-free with one terminal event
//! ([`logged_once`]), and [`settled`], which retries a call while the api
//! answers 503 or cannot be reached.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use longrun_client::Client;
use longrun_shared::model::{Event, EventType};
use longrun_shared::problem::Code;

use crate::tree::events;
use crate::ws::Received;
use crate::{WsClient, token};

/// How long a subscriber waits for all its terminal events.
const WITHIN: Duration = Duration::from_secs(60);

/// Retries a call while the api answers 503 or cannot be reached (right
/// after a fault its connection to Redis may be the one that was cut).
pub async fn settled<T, F, Fut>(mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = longrun_client::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(err) => {
                let transient = err.code().is_none_or(|code| code == Code::Unavailable);
                assert!(
                    transient && tokio::time::Instant::now() < deadline,
                    "the api recovers: {err}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A WebSocket subscriber of many operations that, like a real client,
/// reconnects and resubscribes with `after_seq` when its connection ends.
pub struct Subscriber {
    url: String,
    ws: WsClient,
    seen: HashMap<String, Vec<u64>>,
    done: HashSet<String>,
}

impl Subscriber {
    /// Connects to the gateway at `ws_url` as `sub` and subscribes to
    /// every one of `ids` from its first event.
    pub async fn subscribe_all(ws_url: &str, sub: &str, ids: &[String]) -> Subscriber {
        let url = format!("{ws_url}/v1/ws?access_token={}", token(sub));
        let mut subscriber = Subscriber {
            ws: WsClient::connect(&url).await.expect("gateway accepts"),
            url,
            seen: ids.iter().map(|id| (id.clone(), Vec::new())).collect(),
            done: HashSet::new(),
        };
        for id in ids {
            subscriber.ws.subscribe(id, Some(0)).await;
        }
        subscriber
    }

    async fn reconnect(&mut self) {
        let ws = loop {
            match WsClient::connect(&self.url).await {
                Ok(ws) => break ws,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        self.ws = ws;
        let pending: Vec<(String, u64)> = self
            .seen
            .iter()
            .filter(|(id, _)| !self.done.contains(*id))
            .map(|(id, seqs)| (id.clone(), seqs.last().copied().unwrap_or(0)))
            .collect();
        for (id, last) in pending {
            self.ws.subscribe(&id, Some(last)).await;
        }
    }

    /// Reads frames until every operation's terminal event arrived.
    pub async fn until_all_done(&mut self) {
        let deadline = tokio::time::Instant::now() + WITHIN;
        while self.done.len() < self.seen.len() {
            let received = tokio::time::timeout_at(deadline, self.ws.receive(WITHIN)).await;
            let Ok(received) = received else {
                let missing: Vec<_> = self
                    .seen
                    .iter()
                    .filter(|(id, _)| !self.done.contains(*id))
                    .collect();
                panic!("subscribers get every terminal event; still waiting for {missing:?}");
            };
            let frame = match received {
                Received::Frame(frame) => frame,
                Received::Closed(_) => {
                    self.reconnect().await;
                    continue;
                }
            };
            let Some(id) = frame["operation_id"].as_str().map(str::to_owned) else {
                continue;
            };
            match frame["type"].as_str() {
                Some("event") => {
                    let seq = frame["seq"].as_u64().expect("a seq");
                    if let Some(seqs) = self.seen.get_mut(&id) {
                        seqs.push(seq);
                    }
                    if matches!(
                        frame["event"].as_str(),
                        Some("succeeded" | "failed" | "cancelled")
                    ) {
                        self.done.insert(id);
                    }
                }
                // Refused while Redis was away: subscribe again.
                Some("error") => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let last = self
                        .seen
                        .get(&id)
                        .and_then(|s| s.last().copied())
                        .unwrap_or(0);
                    self.ws.subscribe(&id, Some(last)).await;
                }
                _ => {}
            }
        }
    }

    /// Each operation's frames were exactly seq 1..n.
    pub async fn verify(&self, client: &Client) {
        for (id, seqs) in &self.seen {
            let op = settled(|| client.get(id)).await;
            assert_eq!(
                seqs,
                &(1..=op.seq).collect::<Vec<_>>(),
                "every event once, in order: {id}"
            );
        }
    }
}

/// The operation's whole log, after checking it is seq 1..n with exactly
/// one terminal event (retrying reads while the api recovers).
pub async fn logged_once(client: &Client, id: &str) -> Vec<Event> {
    let op = settled(|| client.get(id)).await;
    // `events` panics on an error; a fault is over by now, and reads retry.
    let log = settled(|| async { Ok(events(client, id).await) }).await;
    let seqs: Vec<u64> = log.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        (1..=op.seq).collect::<Vec<_>>(),
        "gap-free log of {id}"
    );
    let terminal = log
        .iter()
        .filter(|event| {
            matches!(
                event.event_type,
                EventType::Succeeded | EventType::Failed | EventType::Cancelled
            )
        })
        .count();
    assert_eq!(terminal, 1, "one terminal event for {id}: {log:?}");
    log
}
