//! Following one operation (or one owner) for one connection.
//!
//! The gap-free recipe for an operation: subscribe to its channel first,
//! then read its log after the last seq the client has, send that, then
//! forward live frames whose seq is exactly one more than the last sent.
//! A live seq that jumps ahead, a lagging receiver or a pub/sub reconnect
//! all mean "read the log again from the last seq sent", so every seq is
//! sent once, in order, with none missing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use longrun_shared::Store;
use longrun_shared::model::{EventType, FrameHead};
use longrun_shared::relay::{Message, Relay};
use longrun_shared::store::connection::retry_delay;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::outbox::{Outbox, Outgoing, Pushed};
use crate::protocol::{ServerFrame, error_frame};

/// Events read from the log per round trip while catching up.
const REPLAY_PAGE: usize = 1_000;

/// Longest pause between catch-up reads while Redis is away.
const CATCH_UP_RETRY_CEILING: Duration = Duration::from_secs(2);

/// Where a connection's frames go.
#[derive(Clone)]
pub struct Sink {
    pub outbox: Arc<Outbox>,
    /// Fired when the outbox overflowed: the connection closes with 4008.
    pub overflow: CancellationToken,
}

impl Sink {
    /// Queues a frame; `false` once the connection must close.
    pub fn send(&self, text: Utf8Bytes, progress_of: Option<&Arc<str>>) -> bool {
        let pushed = self.outbox.push(Outgoing {
            text,
            progress_of: progress_of.cloned(),
        });
        match pushed {
            Pushed::Queued => true,
            Pushed::Coalesced => {
                metrics::counter!("longrun_ws_events_coalesced_total").increment(1);
                true
            }
            Pushed::Overflow => {
                self.overflow.cancel();
                false
            }
        }
    }

    pub fn send_text(&self, text: String) -> bool {
        self.send(Utf8Bytes::from(text), None)
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

/// The head of a published frame plus its emit time, for the latency metric.
#[derive(Deserialize)]
struct LiveHead {
    #[serde(flatten)]
    head: FrameHead,
    at: String,
}

/// Follows one operation until its terminal event was sent.
pub async fn follow_operation(
    store: Store,
    relay: Relay,
    root: String,
    id: String,
    start: Start,
    sink: Sink,
) {
    let op: Arc<str> = Arc::from(id.as_str());
    let Ok(mut subscription) = relay.subscribe(&store.keys().op_channel(&root, &id)).await else {
        return;
    };
    let mut last = match start {
        Start::AfterSeq(seq) => seq,
        Start::Current => {
            let Ok(Some(stored)) = store.get_in(&root, &id).await else {
                sink.send_text(error_frame("not_found", "no such operation", Some(&id)));
                return;
            };
            let frame = ServerFrame::Subscribed {
                operation_id: &id,
                operation: &stored.operation,
            };
            if !sink.send_text(frame.to_json()) || stored.operation.done {
                return;
            }
            stored.operation.seq
        }
    };
    if catch_up(&store, &root, &id, &mut last, &sink, &op).await {
        return;
    }
    loop {
        let message = subscription.receiver.recv().await;
        let needs_catch_up = match message {
            Ok(Message::Payload(payload)) => match forward(&payload, &mut last, &sink, &op) {
                Forwarded::Sent { terminal: true } | Forwarded::Closed => return,
                Forwarded::Sent { terminal: false } | Forwarded::Old => false,
                Forwarded::Gap => true,
            },
            Ok(Message::Resync) | Err(RecvError::Lagged(_)) => true,
            Err(RecvError::Closed) => return,
        };
        if needs_catch_up && catch_up(&store, &root, &id, &mut last, &sink, &op).await {
            return;
        }
    }
}

enum Forwarded {
    Sent { terminal: bool },
    Old,
    Gap,
    Closed,
}

fn forward(payload: &Bytes, last: &mut u64, sink: &Sink, op: &Arc<str>) -> Forwarded {
    let Ok(live) = serde_json::from_slice::<LiveHead>(payload) else {
        return Forwarded::Old;
    };
    let seq = live.head.seq;
    if seq <= *last {
        return Forwarded::Old;
    }
    if seq != *last + 1 {
        return Forwarded::Gap;
    }
    let Ok(text) = Utf8Bytes::try_from(payload.clone()) else {
        return Forwarded::Old;
    };
    let progress = live.head.event == EventType::Progress;
    if !sink.send(text, progress.then_some(op)) {
        return Forwarded::Closed;
    }
    *last = seq;
    record_delivery(&live.at);
    Forwarded::Sent {
        terminal: live.head.event.is_terminal(),
    }
}

fn record_delivery(at: &str) {
    metrics::counter!("longrun_ws_events_delivered_total").increment(1);
    if let Ok(emitted) = humantime::parse_rfc3339(at)
        && let Ok(elapsed) = SystemTime::now().duration_since(emitted)
    {
        metrics::histogram!("longrun_ws_delivery_latency_seconds").record(elapsed.as_secs_f64());
    }
}

/// Sends every logged event after `last`. Returns true once the terminal
/// event was sent (or the connection must close).
async fn catch_up(
    store: &Store,
    root: &str,
    id: &str,
    last: &mut u64,
    sink: &Sink,
    op: &Arc<str>,
) -> bool {
    let mut failures: u32 = 0;
    loop {
        let events = match store.events(root, id, *last, REPLAY_PAGE).await {
            Ok(events) => events,
            Err(err) if err.is_transient() && !sink.overflow.is_cancelled() => {
                // Redis is away or coming back (its first commands after a
                // restart may fail): the events logged meanwhile may have
                // no live message left to announce them, so read again.
                failures += 1;
                debug!(operation_id = %id, error = %err, "catch-up read failed; retrying");
                tokio::time::sleep(retry_delay(failures, CATCH_UP_RETRY_CEILING)).await;
                continue;
            }
            Err(err) => {
                debug!(operation_id = %id, error = %err, "catch-up read failed");
                return false;
            }
        };
        failures = 0;
        let full = events.len() == REPLAY_PAGE;
        for event in events {
            if event.seq != *last + 1 {
                // Only the first read after `last` can start anywhere else,
                // when the log was trimmed by retention: say so, go on.
                sink.send_text(error_frame(
                    "gap",
                    &format!(
                        "events {} to {} are no longer kept",
                        *last + 1,
                        event.seq - 1
                    ),
                    Some(id),
                ));
            }
            let terminal = event.event_type.is_terminal();
            let progress = event.event_type == EventType::Progress;
            let text = serde_json::to_string(&event.to_frame()).unwrap_or_default();
            if !sink.send(Utf8Bytes::from(text), progress.then_some(op)) {
                return true;
            }
            *last = event.seq;
            metrics::counter!("longrun_ws_events_delivered_total").increment(1);
            if terminal {
                return true;
            }
        }
        if !full {
            return false;
        }
    }
}

/// Follows every event of an owner's operations, from now on.
pub async fn follow_owner(store: Store, relay: Relay, owner: String, sink: Sink) {
    let Ok(mut subscription) = relay.subscribe(&store.keys().owner_channel(&owner)).await else {
        return;
    };
    loop {
        match subscription.receiver.recv().await {
            Ok(Message::Payload(payload)) => {
                let Ok(live) = serde_json::from_slice::<LiveHead>(&payload) else {
                    continue;
                };
                let Ok(text) = Utf8Bytes::try_from(payload) else {
                    continue;
                };
                let op: Arc<str> = Arc::from(live.head.operation_id.as_str());
                let progress = live.head.event == EventType::Progress;
                if !sink.send(text, progress.then_some(&op)) {
                    return;
                }
                record_delivery(&live.at);
            }
            Ok(Message::Resync) | Err(RecvError::Lagged(_)) => {
                // There is no per-owner log to replay: tell the client, who
                // re-reads the operations it shows (GET, or subscribe with after_seq).
                sink.send_text(error_frame(
                    "resync",
                    "events of this owner may have been missed; re-read the operations you show",
                    None,
                ));
            }
            Err(RecvError::Closed) => return,
        }
    }
}
