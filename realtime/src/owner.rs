//! `{"type": "subscribe", "owner": "self"}`: every event of every
//! operation of the caller, from the moment it subscribed — including
//! operations started later and their children.
//!
//! Events arrive on the owner's channel. Per operation the subscription
//! keeps a [`Cursor`], so each operation's events are sent in seq order,
//! without duplicate or gap, exactly as an operation subscription sends
//! them: a seq that jumps ahead re-reads that operation's log. The first
//! event seen of an operation created after the subscription started must
//! be its seq 1; if it is not, the earlier ones were missed and are read
//! from the log.
//!
//! Root operations started between the client's frame and the moment the
//! channel subscription took effect are found through the owner's index
//! and sent from their start, so "from now on" has no hole.
//!
//! When the relay reconnected or this subscriber lagged, events of any
//! operation may have been missed: every operation being followed is
//! caught up from its log, and the owner's root operations created since
//! the subscription started are found through the owner's index and
//! caught up from their start. A child operation first created during the
//! outage is picked up (from its seq 1) with its next event.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use longrun_shared::Store;
use longrun_shared::relay::Message;
use tokio::sync::broadcast::error::RecvError;

use crate::Gateway;
use crate::follow::{Caught, Cursor, Offered, Sink, pause};
use crate::live::LiveEvent;
use crate::meter::{self, CatchUp};

/// Finished operations remembered, so late duplicates of their events are
/// recognised.
const FINISHED_REMEMBERED: usize = 4_096;
/// Operations caught up at once after a reconnect.
const RECOVERY_CONCURRENCY: usize = 16;
/// Most root operations looked for after a reconnect (the newest).
const DISCOVERY_LIMIT: usize = 10_000;

/// Follows every operation of `owner` created or changed from `since_ms`
/// (ms since the epoch: when the client's frame was read) until the
/// connection ends.
pub async fn follow_owner(gateway: Gateway, owner: String, since_ms: u64, sink: Sink) {
    let _gauge = meter::SubscriptionGauge::open();
    let channel = gateway.store.keys().owner_channel(&owner);
    let Ok(mut subscription) = gateway.relay.subscribe(&channel).await else {
        return;
    };
    let mut follower = OwnerFollower {
        store: gateway.store.clone(),
        owner,
        since_ms,
        sink,
        cursors: HashMap::new(),
        finished: Finished::default(),
    };
    // Operations started between the client's frame and the channel
    // subscription: found in the index, sent from their start.
    if !follower.catch_up_all().await {
        return;
    }
    loop {
        let open = match subscription.recv().await {
            Ok(Message::Payload(event)) => follower.on_live(&event).await,
            Ok(Message::Resync) => follower.recover(CatchUp::Resync).await,
            Err(RecvError::Lagged(_)) => follower.recover(CatchUp::Lagged).await,
            Err(RecvError::Closed) => return,
        };
        if !open {
            return;
        }
    }
}

struct OwnerFollower {
    store: Store,
    owner: String,
    /// When the subscription started (ms since the epoch).
    since_ms: u64,
    sink: Sink,
    /// Operations seen and not finished yet.
    cursors: HashMap<Arc<str>, Cursor>,
    finished: Finished,
}

impl OwnerFollower {
    /// Handles one live event; `false` once the connection is closing.
    async fn on_live(&mut self, event: &LiveEvent) -> bool {
        let id = &event.operation_id;
        if self.finished.contains(id) {
            return true;
        }
        let mut cursor = match self.cursors.remove(id) {
            Some(cursor) => cursor,
            None if event.seq > 1 && created_after(id, self.since_ms) => {
                // Started after we subscribed, yet its first events were missed.
                Cursor::new(id.clone(), None, 0)
            }
            None => Cursor::new(id.clone(), None, event.seq - 1),
        };
        let caught = match cursor.offer(event, &self.sink) {
            Offered::Sent | Offered::Old => Caught::Open { replayed: 0 },
            Offered::Terminal => Caught::Finished,
            Offered::Closed => Caught::Closed,
            Offered::Gap => {
                meter::catch_up(CatchUp::Gap);
                cursor.catch_up(&self.store, &self.sink).await
            }
        };
        self.settle(cursor, caught)
    }

    /// Puts a cursor back (or remembers it finished); `false` once closing.
    fn settle(&mut self, cursor: Cursor, caught: Caught) -> bool {
        match caught {
            Caught::Open { .. } => {
                self.cursors.insert(cursor.id.clone(), cursor);
                true
            }
            Caught::Finished => {
                self.finished.insert(cursor.id);
                true
            }
            Caught::Closed => false,
        }
    }

    /// Events may have been missed: re-read every followed operation's log
    /// and find the root operations started meanwhile.
    async fn recover(&mut self, reason: CatchUp) -> bool {
        meter::catch_up(reason);
        self.catch_up_all().await
    }

    /// Catches up every followed operation and every root operation
    /// started since the subscription began; `false` once closing.
    async fn catch_up_all(&mut self) -> bool {
        let started = self.started_since().await;
        let mut pending: Vec<Cursor> = self.cursors.drain().map(|(_, cursor)| cursor).collect();
        let known: HashSet<Arc<str>> = pending.iter().map(|cursor| cursor.id.clone()).collect();
        pending.extend(
            started
                .into_iter()
                .filter(|id| !self.finished.contains(id) && !known.contains(id))
                .map(|id| Cursor::new(id.clone(), Some(id.to_string()), 0)),
        );
        let store = &self.store;
        let sink = &self.sink;
        let outcomes: Vec<(Cursor, Caught)> = futures_util::stream::iter(pending)
            .map(|mut cursor| async move {
                let caught = cursor.catch_up(store, sink).await;
                (cursor, caught)
            })
            .buffer_unordered(RECOVERY_CONCURRENCY)
            .collect()
            .await;
        let mut open = true;
        for (cursor, caught) in outcomes {
            open &= self.settle(cursor, caught);
        }
        open
    }

    /// Ids of the owner's root operations created since the subscription
    /// started: the owner's index holds them by id, and a UUIDv7 id sorts
    /// by creation time, so one range read from the newest down to the
    /// first id of `since_ms` finds them.
    async fn started_since(&self) -> Vec<Arc<str>> {
        let index = self.store.keys().owner_index(&self.owner);
        let lowest = format!("[{}", id_prefix(self.since_ms));
        let mut failures = 0;
        loop {
            let found: redis::RedisResult<Vec<String>> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg("+")
                .arg(&lowest)
                .arg("BYLEX")
                .arg("REV")
                .arg("LIMIT")
                .arg(0)
                .arg(DISCOVERY_LIMIT)
                .query_async(&mut self.store.conn())
                .await;
            match found {
                Ok(ids) => return ids.iter().map(|id| Arc::from(id.as_str())).collect(),
                Err(err) => {
                    failures += 1;
                    pause(failures, &self.owner, &err.into()).await;
                }
            }
        }
    }
}

/// A bounded memory of finished operations.
#[derive(Default)]
struct Finished {
    ids: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl Finished {
    fn contains(&self, id: &Arc<str>) -> bool {
        self.ids.contains(id)
    }

    fn insert(&mut self, id: Arc<str>) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > FINISHED_REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }
}

/// Now, in ms since the epoch.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// The creation time a UUIDv7 id carries (its first 48 bits, ms since the epoch).
fn created_ms(id: &str) -> Option<u64> {
    let hex: String = id.get(..13)?.chars().filter(|c| *c != '-').collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// The first 13 characters of any UUIDv7 created at `ms` (`xxxxxxxx-xxxx`).
fn id_prefix(ms: u64) -> String {
    let hex = format!("{:012x}", ms & 0xffff_ffff_ffff);
    format!("{}-{}", &hex[..8], &hex[8..])
}

/// True when the id says it was created at or after `since_ms`.
fn created_after(id: &str, since_ms: u64) -> bool {
    created_ms(id).is_some_and(|created| created >= since_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuidv7_tells_its_creation_time() {
        let id = longrun_shared::store::transitions::new_id();
        let created = created_ms(&id).expect("a UUIDv7");
        let now = unix_ms_now();
        assert!(
            created <= now && now - created < 5_000,
            "{created} vs {now}"
        );
        assert!(created_after(&id, created));
        assert!(!created_after(&id, created + 1));
        assert!(!created_after("nonsense", 0));
        assert!(id.as_str() >= id_prefix(created).as_str());
        assert!(id.as_str() < id_prefix(created + 1).as_str());
    }

    #[test]
    fn finished_operations_are_remembered_up_to_a_bound() {
        let mut finished = Finished::default();
        for n in 0..FINISHED_REMEMBERED + 10 {
            finished.insert(Arc::from(n.to_string().as_str()));
        }
        assert!(!finished.contains(&Arc::from("0")));
        assert!(finished.contains(&Arc::from((FINISHED_REMEMBERED + 9).to_string().as_str())));
        assert_eq!(finished.ids.len(), FINISHED_REMEMBERED);
    }
}
