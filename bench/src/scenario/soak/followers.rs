//! The soak's WebSocket clients, connected for the whole run. Half follow
//! their owner (`owner: "self"`); the other half follow one fresh operation
//! of their owner after another (subscribe with `after_seq: 0`, read to the
//! terminal event). Now and then each client drops its connection and
//! reconnects: an operation follower resubscribes with `after_seq` set to
//! the last seq it got, an owner follower subscribes again (owner events
//! are "from now on", so it starts a new session).
//!
//! Every seq is checked per operation: each must be the last one plus one,
//! so a jump counts the skipped seqs as lost and a repeat as a duplicate.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::load::{Feed, get};
use crate::platform::Target;
use crate::ws::{Delivery, Incoming, WsClient};

/// What the clients saw so far.
#[derive(Debug, Default)]
pub struct WsCounters {
    pub connected: AtomicI64,
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub events: AtomicU64,
    pub lost: AtomicU64,
    pub duplicates: AtomicU64,
    /// Operations a per-operation follower read to their terminal event.
    pub operations_followed: AtomicU64,
    /// `error` frames by code, and server closes by code.
    errors: Mutex<BTreeMap<String, u64>>,
    closes: Mutex<BTreeMap<String, u64>>,
}

impl WsCounters {
    fn note(map: &Mutex<BTreeMap<String, u64>>, what: String) {
        if let Ok(mut map) = map.lock() {
            *map.entry(what).or_default() += 1;
        }
    }

    pub fn json(&self) -> Value {
        let map =
            |m: &Mutex<BTreeMap<String, u64>>| m.lock().map(|m| m.clone()).unwrap_or_default();
        json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "reconnects": get(&self.reconnects),
            "connect_failures": get(&self.connect_failures),
            "events": get(&self.events),
            "lost": get(&self.lost),
            "duplicates": get(&self.duplicates),
            "operations_followed": get(&self.operations_followed),
            "errors": map(&self.errors),
            "server_closes": map(&self.closes),
        })
    }
}

/// Where a seq stands against the last one seen of its operation.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Next,
    /// This many seqs were skipped.
    Gap(u64),
    Repeat,
}

/// `last`: the last seq seen (`None`: the first sight of the operation, any seq goes).
pub fn step(last: Option<u64>, seq: u64) -> Step {
    match last {
        None => Step::Next,
        Some(last) if seq == last + 1 => Step::Next,
        Some(last) if seq > last => Step::Gap(seq - last - 1),
        Some(_) => Step::Repeat,
    }
}

/// What every client shares.
pub struct Fleet {
    pub target: Target,
    pub url: String,
    /// One token per owner.
    pub tokens: Vec<String>,
    pub feed: Arc<Feed>,
    pub counters: Arc<WsCounters>,
    /// Mean time between two reconnects of one client.
    pub churn_every: Duration,
    pub stop: watch::Receiver<bool>,
}

/// Starts `clients` clients: even ones follow their owner, odd ones operations.
pub fn spawn(fleet: Arc<Fleet>, clients: usize) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let owners = fleet.tokens.len();
    for index in 0..clients {
        let owner = (index / 2) % owners;
        if index % 2 == 0 {
            tasks.spawn(follow_owner(fleet.clone(), owner));
        } else {
            tasks.spawn(follow_operations(fleet.clone(), owner));
        }
    }
    tasks
}

/// Waits until `count` clients are connected (at most `within`).
pub async fn wait_connected(counters: &WsCounters, count: usize, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while counters.connected.load(Ordering::Relaxed) < count as i64 {
        if Instant::now() >= deadline {
            anyhow::bail!(
                "only {} of {count} WebSocket clients connected within {within:?}",
                counters.connected.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Why a session ended.
enum End {
    Churn,
    Stop,
    /// The server closed the connection, or reading it failed.
    Dropped,
}

impl Fleet {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Connects (and with `owner_events` subscribes to the owner), retrying every second.
    async fn connect(&self, owner: usize, owner_events: bool) -> Option<WsClient> {
        while !self.stopped() {
            let attempt = async {
                let mut client =
                    WsClient::connect(self.target, &self.url, &self.tokens[owner]).await?;
                if owner_events {
                    client.subscribe_owner().await?;
                }
                anyhow::Ok(client)
            };
            match tokio::time::timeout(Duration::from_secs(30), attempt).await {
                Ok(Ok(client)) => {
                    self.counters.connected.fetch_add(1, Ordering::Relaxed);
                    return Some(client);
                }
                _ => {
                    self.counters
                        .connect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        None
    }

    async fn disconnect(&self, client: WsClient, end: &End) {
        self.counters.connected.fetch_sub(1, Ordering::Relaxed);
        if matches!(end, End::Churn) {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        client.close().await;
    }

    /// When this client drops its connection next: uniform in 0..2× the mean.
    fn next_churn(&self) -> tokio::time::Instant {
        let mean = self.churn_every.as_secs_f64();
        let after = rand::rng().random_range(0.0..=2.0 * mean);
        tokio::time::Instant::now() + Duration::from_secs_f64(after)
    }

    /// Counts one event against `last`; returns the seq to remember.
    fn check(&self, last: Option<u64>, event: &Delivery) -> u64 {
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        match step(last, event.seq) {
            Step::Next => event.seq,
            Step::Gap(skipped) => {
                self.counters.lost.fetch_add(skipped, Ordering::Relaxed);
                event.seq
            }
            Step::Repeat => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                last.unwrap_or(event.seq)
            }
        }
    }

    /// Counts what is not an event; `Some` when the connection is gone.
    fn other(&self, incoming: Result<Incoming>) -> Option<End> {
        match incoming {
            Ok(Incoming::Error(message)) => {
                let code = message.split(':').next().unwrap_or("").to_owned();
                WsCounters::note(&self.counters.errors, code);
                None
            }
            Ok(Incoming::Closed(code)) => {
                let code = code.map_or("no code".into(), |c| c.to_string());
                WsCounters::note(&self.counters.closes, code);
                Some(End::Dropped)
            }
            Err(err) => {
                WsCounters::note(&self.counters.closes, format!("read error: {err}"));
                Some(End::Dropped)
            }
            Ok(_) => None,
        }
    }
}

/// An `owner: "self"` client: every event of every operation of its owner.
async fn follow_owner(fleet: Arc<Fleet>, owner: usize) {
    let mut stop = fleet.stop.clone();
    while let Some(mut client) = fleet.connect(owner, true).await {
        let mut last: HashMap<String, u64> = HashMap::new();
        let churn = fleet.next_churn();
        let end = loop {
            let incoming = tokio::select! {
                incoming = client.next() => incoming,
                _ = tokio::time::sleep_until(churn) => break End::Churn,
                _ = stop.changed() => break End::Stop,
            };
            if let Ok(Incoming::Event(event)) = &incoming {
                let seq = fleet.check(last.get(&event.operation_id).copied(), event);
                if event.is_terminal() {
                    last.remove(&event.operation_id);
                } else {
                    last.insert(event.operation_id.clone(), seq);
                }
            } else if let Some(end) = fleet.other(incoming) {
                break end;
            }
        };
        fleet.disconnect(client, &end).await;
        if matches!(end, End::Stop) {
            return;
        }
    }
}

/// The operation a per-operation client follows, and the last seq it got.
struct Following {
    id: String,
    last: u64,
}

/// A client following its owner's newest operations one after the other.
async fn follow_operations(fleet: Arc<Fleet>, owner: usize) {
    let mut stop = fleet.stop.clone();
    let mut following: Option<Following> = None;
    let mut next_number = 0;
    while let Some(mut client) = fleet.connect(owner, false).await {
        if let Some(op) = &following {
            // Back after a reconnect: the rest of the log, from where it stopped.
            let _ = client.subscribe_operation(&op.id, Some(op.last)).await;
        }
        let churn = fleet.next_churn();
        let end = loop {
            if following.is_none() {
                match fleet.feed.newest_from(owner, next_number) {
                    Some((number, id)) => {
                        next_number = number + 1;
                        let _ = client.subscribe_operation(&id, Some(0)).await;
                        following = Some(Following { id, last: 0 });
                    }
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                            _ = tokio::time::sleep_until(churn) => break End::Churn,
                            _ = stop.changed() => break End::Stop,
                        }
                    }
                }
            }
            let incoming = tokio::select! {
                incoming = client.next() => incoming,
                _ = tokio::time::sleep_until(churn) => break End::Churn,
                _ = stop.changed() => break End::Stop,
            };
            match incoming {
                Ok(Incoming::Event(event)) => fleet.operation_event(&mut following, &event),
                Ok(Incoming::Error(message)) if message.starts_with("not_found") => {
                    following = None;
                    let _ = fleet.other(Ok(Incoming::Error(message)));
                }
                other => {
                    if let Some(end) = fleet.other(other) {
                        break end;
                    }
                }
            }
        };
        fleet.disconnect(client, &end).await;
        if matches!(end, End::Stop) {
            return;
        }
    }
}

impl Fleet {
    fn operation_event(&self, following: &mut Option<Following>, event: &Delivery) {
        let Some(op) = following.as_mut().filter(|op| op.id == event.operation_id) else {
            WsCounters::note(&self.counters.errors, "event of another operation".into());
            return;
        };
        op.last = self.check(Some(op.last), event);
        if event.is_terminal() {
            self.counters
                .operations_followed
                .fetch_add(1, Ordering::Relaxed);
            *following = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_are_checked_against_the_last_one() {
        assert_eq!(step(None, 7), Step::Next);
        assert_eq!(step(Some(0), 1), Step::Next);
        assert_eq!(step(Some(3), 4), Step::Next);
        assert_eq!(step(Some(3), 6), Step::Gap(2));
        assert_eq!(step(Some(3), 3), Step::Repeat);
        assert_eq!(step(Some(3), 1), Step::Repeat);
    }
}
