//! Following one operation for one connection: the delivery guarantee.
//!
//! The gap-free recipe: subscribe to the operation's channel first (the
//! relay answers once Redis confirmed it), then read its log after the last
//! seq the client has and send that, then forward live events whose seq is
//! exactly one more than the last sent. Every published event is already
//! in the log (one script appends and publishes), so an event is either in
//! that read or arrives live after it; live events at or below the last seq
//! sent are the overlap and are skipped. A live seq that jumps ahead, a
//! subscriber that lagged behind the relay, or a relay that reconnected to
//! Redis all mean "read the log again from the last seq sent". So every
//! seq is sent once, in order, with none missing — and the seq a client
//! saw last is all it needs to resume on any gateway (`after_seq`).
//!
//! Replays pull from the log at the pace the client reads (they wait for
//! room in the outbox), so they are never coalesced; live events are
//! pushed and may be coalesced for a client that fell behind.

use std::sync::Arc;
use std::time::Duration;

use longrun_shared::Store;
use longrun_shared::auth::Principal;
use longrun_shared::model::EventType;
use longrun_shared::relay::Message;
use longrun_shared::store::StoreError;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

use crate::Gateway;
use crate::live::{self, LiveEvent};
use crate::meter::{self, CatchUp};
use crate::outbox::{Outbox, Outgoing, Pushed, Source};
use crate::protocol::{ServerFrame, code, error_frame};

/// Events read from the log per round trip while catching up.
const REPLAY_PAGE: usize = 500;

/// Where one subscription's frames go.
#[derive(Debug, Clone)]
pub struct Sink {
    pub outbox: Arc<Outbox>,
    pub source: Source,
}

impl Sink {
    /// Queues a live event (coalesced past the soft bound). `false` once
    /// the connection is closing.
    pub fn live(&self, event: &LiveEvent) -> bool {
        self.push(Outgoing {
            text: event.text.clone(),
            source: self.source,
            progress_of: (event.event == EventType::Progress).then(|| event.operation_id.clone()),
            emitted_at: event.emitted_at,
            event: true,
        })
    }

    /// Queues an event read from the log (its frame as published), once
    /// there is room for it.
    pub async fn replayed(&self, event: &LiveEvent) -> bool {
        self.outbox.wait_for_room().await;
        self.push(Outgoing {
            text: event.text.clone(),
            source: self.source,
            progress_of: (event.event == EventType::Progress).then(|| event.operation_id.clone()),
            emitted_at: None,
            event: true,
        })
    }

    /// Queues a frame that is not an event (never coalesced).
    pub fn notice(&self, text: String) -> bool {
        self.push(Outgoing::notice(text, self.source))
    }

    pub fn error(&self, code: &str, message: &str, operation_id: Option<&str>) -> bool {
        self.notice(error_frame(code, message, operation_id))
    }

    fn push(&self, frame: Outgoing) -> bool {
        match self.outbox.push(frame) {
            Pushed::Queued => true,
            Pushed::Coalesced => {
                meter::coalesced();
                true
            }
            Pushed::Overflow | Pushed::Closed => false,
        }
    }
}

/// Where an operation subscription starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Replay every logged event with a greater seq, then live ones.
    AfterSeq(u64),
    /// Send a `subscribed` frame with the current resource, then live events.
    Current,
}

/// How far one operation's events were sent on one subscription.
#[derive(Debug)]
pub struct Cursor {
    pub id: Arc<str>,
    /// The root of its tree (where its keys live), once known.
    pub root: Option<String>,
    /// The last seq sent.
    pub last: u64,
}

/// What became of a live event offered to a cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    Sent,
    /// Sent, and it was the terminal event: nothing follows.
    Terminal,
    /// At or below the last seq sent: the overlap with a replay.
    Old,
    /// Ahead of the next seq: read the log.
    Gap,
    /// The connection is closing.
    Closed,
}

/// How a catch-up ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Caught {
    /// Up to date; `replayed` events were sent.
    Open { replayed: usize },
    /// The terminal event was sent (now or before), or the operation is gone.
    Finished,
    /// The connection is closing.
    Closed,
}

impl Cursor {
    pub fn new(id: Arc<str>, root: Option<String>, last: u64) -> Self {
        Cursor { id, root, last }
    }

    pub fn offer(&mut self, event: &LiveEvent, sink: &Sink) -> Offered {
        if event.seq <= self.last {
            return Offered::Old;
        }
        if event.seq != self.last + 1 {
            return Offered::Gap;
        }
        if !sink.live(event) {
            return Offered::Closed;
        }
        self.last = event.seq;
        if event.event.is_terminal() {
            Offered::Terminal
        } else {
            Offered::Sent
        }
    }

    /// Sends every logged event after `last`, retrying while Redis is away.
    pub async fn catch_up(&mut self, store: &Store, sink: &Sink) -> Caught {
        let Some(root) = self.root(store).await else {
            return Caught::Finished;
        };
        let mut replayed = 0;
        let mut failures = 0;
        loop {
            let frames = match store
                .event_frames(&root, &self.id, self.last, REPLAY_PAGE)
                .await
            {
                Ok(frames) => frames,
                Err(err) => {
                    failures += 1;
                    pause(failures, &self.id, &err).await;
                    continue;
                }
            };
            failures = 0;
            let full = frames.len() == REPLAY_PAGE;
            for frame in frames {
                let Some(event) = live::decode_logged(frame) else {
                    warn!(operation_id = %self.id, "skipping an unreadable entry of the log");
                    continue;
                };
                if event.seq <= self.last {
                    continue;
                }
                if event.seq != self.last + 1 && !self.report_trimmed(event.seq, sink) {
                    return Caught::Closed;
                }
                if !sink.replayed(&event).await {
                    return Caught::Closed;
                }
                self.last = event.seq;
                replayed += 1;
                if event.event.is_terminal() {
                    return Caught::Finished;
                }
            }
            if !full {
                return Caught::Open { replayed };
            }
        }
    }

    /// The log starts past `last`: its beginning expired with retention.
    fn report_trimmed(&self, first: u64, sink: &Sink) -> bool {
        sink.error(
            code::GAP,
            &format!(
                "events {} to {} are no longer kept",
                self.last + 1,
                first - 1
            ),
            Some(&self.id),
        )
    }

    /// The root of the operation's tree, looked up once; `None` when the
    /// operation no longer exists.
    async fn root(&mut self, store: &Store) -> Option<String> {
        if self.root.is_none() {
            let mut failures = 0;
            self.root = loop {
                match store.get(&self.id).await {
                    Ok(found) => break Some(found?.root),
                    Err(err) => {
                        failures += 1;
                        pause(failures, &self.id, &err).await;
                    }
                }
            };
        }
        self.root.clone()
    }
}

/// Backs off after a failed Redis read (it reconnects by itself).
pub async fn pause(failures: u32, id: &str, err: &StoreError) {
    if failures == 1 {
        debug!(operation_id = %id, error = %err, "reading the operation failed; retrying");
    } else if failures.is_multiple_of(30) {
        warn!(operation_id = %id, error = %err, "still cannot read the operation; retrying");
    }
    let delay = 25u64.saturating_mul(1 << failures.min(7)).min(2_000);
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

/// Follows one operation for `viewer` until its terminal event was sent.
pub async fn follow_operation(
    gateway: Gateway,
    viewer: Principal,
    id: String,
    start: Start,
    sink: Sink,
) {
    let _gauge = meter::SubscriptionGauge::open();
    let Some(root) = visible_root(&gateway.store, &viewer, &id).await else {
        sink.error(code::NOT_FOUND, "no such operation", Some(&id));
        return;
    };
    let channel = gateway.store.keys().op_channel(&root, &id);
    let Ok(mut subscription) = gateway.relay.subscribe(&channel).await else {
        return;
    };
    let mut cursor = Cursor::new(Arc::from(id.as_str()), Some(root), 0);
    match start {
        Start::AfterSeq(seq) => cursor.last = seq,
        Start::Current => match send_current(&gateway.store, &mut cursor, &sink).await {
            Some(last) => cursor.last = last,
            None => return,
        },
    }
    match cursor.catch_up(&gateway.store, &sink).await {
        Caught::Open { replayed: 0 } if already_finished(&gateway.store, &cursor).await => return,
        Caught::Open { .. } => {}
        Caught::Finished | Caught::Closed => return,
    }
    loop {
        let reason = match subscription.recv().await {
            Ok(Message::Payload(event)) => match cursor.offer(&event, &sink) {
                Offered::Sent | Offered::Old => continue,
                Offered::Terminal | Offered::Closed => return,
                Offered::Gap => CatchUp::Gap,
            },
            Ok(Message::Resync) => CatchUp::Resync,
            Err(RecvError::Lagged(_)) => CatchUp::Lagged,
            Err(RecvError::Closed) => return,
        };
        meter::catch_up(reason);
        match cursor.catch_up(&gateway.store, &sink).await {
            Caught::Open { .. } => {}
            Caught::Finished | Caught::Closed => return,
        }
    }
}

/// The operation's root when `viewer` may see it; `None` when it does not
/// exist or belongs to another owner (the same answer, so existence does
/// not leak).
async fn visible_root(store: &Store, viewer: &Principal, id: &str) -> Option<String> {
    let mut failures = 0;
    loop {
        match store.get(id).await {
            Ok(Some(stored)) if viewer.may_access(&stored.operation.owner) => {
                return Some(stored.root);
            }
            Ok(_) => return None,
            Err(err) => {
                failures += 1;
                pause(failures, id, &err).await;
            }
        }
    }
}

/// Sends the `subscribed` frame; the seq live events follow, or `None`
/// when nothing follows (the operation is done or gone, or the connection
/// is closing).
async fn send_current(store: &Store, cursor: &mut Cursor, sink: &Sink) -> Option<u64> {
    let root = cursor.root.clone()?;
    let mut failures = 0;
    let stored = loop {
        match store.get_in(&root, &cursor.id).await {
            Ok(stored) => break stored,
            Err(err) => {
                failures += 1;
                pause(failures, &cursor.id, &err).await;
            }
        }
    };
    let Some(stored) = stored else {
        sink.error(code::NOT_FOUND, "no such operation", Some(&cursor.id));
        return None;
    };
    let frame = ServerFrame::Subscribed {
        operation_id: &cursor.id,
        operation: &stored.operation,
    };
    if !sink.notice(frame.to_json()) || stored.operation.done {
        return None;
    }
    Some(stored.operation.seq)
}

/// True when the operation is done and its last event is at or below the
/// cursor (the client asked for events after the end): nothing will come.
async fn already_finished(store: &Store, cursor: &Cursor) -> bool {
    let Some(root) = &cursor.root else {
        return true;
    };
    match store.get_in(root, &cursor.id).await {
        Ok(Some(stored)) => stored.operation.done && stored.operation.seq <= cursor.last,
        Ok(None) => true,
        // Unknown: keep following; live events or a resync settle it.
        Err(_) => false,
    }
}
