//! A connection's bounded outgoing queue, with progress coalescing, and
//! the signals between the connection's reader, its writer and its
//! subscriptions.
//!
//! Up to the soft bound every frame is queued. Past it, a new `progress`
//! event of a subscription's operation that already has a `progress` event
//! waiting replaces it (the older one is dropped, the newer one is queued
//! at the back, so that operation's seqs still increase); other events are
//! always kept. Past the hard bound the connection is closed with 4008: a
//! client that slow is better off reconnecting with `after_seq`.
//!
//! Live events are pushed (they must never wait for a slow client); log
//! replays pull, waiting for the queue to be below half the soft bound
//! first ([`Outbox::wait_for_room`]). So a replay is never coalesced just
//! because it is fast, and when it hands over to live delivery the other
//! half is free for the live events that piled up meanwhile: a client that
//! keeps up is never coalesced on that switch either. Publishers only ever push here, so one slow connection never
//! holds up another.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// Which subscription of a connection queued a frame (0: the connection itself).
pub type Source = u32;

/// One queued frame.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub text: Utf8Bytes,
    pub source: Source,
    /// Set for `progress` events: the operation they belong to.
    pub progress_of: Option<Arc<str>>,
    /// When a live event was emitted (for the latency metric).
    pub emitted_at: Option<SystemTime>,
    /// An `event` frame (counted as delivered once written).
    pub event: bool,
}

impl Outgoing {
    /// A frame that is never coalesced (errors, `subscribed`, `pong`).
    pub fn notice(text: String, source: Source) -> Self {
        Outgoing {
            text: Utf8Bytes::from(text),
            source,
            progress_of: None,
            emitted_at: None,
            event: false,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued in place of an older progress event of the same operation.
    Coalesced,
    /// Past the hard bound: the connection must close with 4008.
    Overflow,
    /// The connection is closing; nothing is queued any more.
    Closed,
}

/// What the writer does next.
#[derive(Debug)]
pub enum Next {
    Frame(Outgoing),
    Ping,
    End(End),
}

/// How the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Send a close frame with this code and reason.
    Close(u16, &'static str),
    /// The peer closed or vanished: just finish the close handshake.
    Finish,
}

/// Why the reader must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Past the hard bound.
    Overflow,
    /// The writer could not hand a frame to the socket for too long.
    Stalled,
    /// The socket is gone.
    WriterGone,
}

#[derive(Default)]
struct Queue {
    /// Slot number of `items[0]`.
    first_slot: u64,
    items: VecDeque<Option<Outgoing>>,
    live: usize,
    /// (subscription, operation) → slot of its queued progress event.
    progress_slot: HashMap<(Source, Arc<str>), u64>,
    ping: bool,
    end: Option<End>,
    /// The writer took `end`: it is gone.
    ended: bool,
    trouble: Option<Trouble>,
}

impl Queue {
    fn closed(&self) -> bool {
        self.end.is_some() || self.ended || self.trouble.is_some()
    }

    fn clear(&mut self) {
        self.first_slot += self.items.len() as u64;
        self.items = VecDeque::new();
        self.progress_slot = HashMap::new();
        self.live = 0;
    }
}

pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the writer: a frame, a ping or the end.
    writer: Notify,
    /// Wakes replays waiting for room.
    room: Notify,
    /// Wakes the reader: trouble.
    reader: Notify,
    soft: usize,
    hard: usize,
    /// Replays queue only below this many frames.
    replay_mark: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("soft", &self.soft)
            .field("hard", &self.hard)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    pub fn new(soft: usize, hard: usize) -> Arc<Outbox> {
        let soft = soft.max(1);
        Arc::new(Outbox {
            queue: Mutex::new(Queue::default()),
            writer: Notify::new(),
            room: Notify::new(),
            reader: Notify::new(),
            soft,
            hard: hard.max(soft + 1),
            replay_mark: (soft / 2).max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, frame: Outgoing) -> Pushed {
        let mut queue = self.lock();
        if queue.closed() {
            return Pushed::Closed;
        }
        let mut outcome = Pushed::Queued;
        let key = frame.progress_of.clone().map(|op| (frame.source, op));
        if queue.live >= self.soft {
            if let Some(key) = &key
                && let Some(slot) = queue.progress_slot.get(key).copied()
            {
                let index = (slot - queue.first_slot) as usize;
                if let Some(item) = queue.items.get_mut(index)
                    && item.take().is_some()
                {
                    queue.live -= 1;
                    outcome = Pushed::Coalesced;
                }
            }
            if queue.live >= self.hard {
                queue.trouble = Some(Trouble::Overflow);
                queue.clear();
                drop(queue);
                self.wake_all();
                return Pushed::Overflow;
            }
        }
        let slot = queue.first_slot + queue.items.len() as u64;
        if let Some(key) = key {
            queue.progress_slot.insert(key, slot);
        }
        queue.items.push_back(Some(frame));
        queue.live += 1;
        drop(queue);
        self.writer.notify_one();
        outcome
    }

    /// Waits until the queue is below half the soft bound (or the
    /// connection is closing): where a replay waits before each frame it queues.
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let queue = self.lock();
                if queue.live < self.replay_mark || queue.closed() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Drops every queued frame of one subscription (it was replaced or ended).
    pub fn purge(&self, source: Source) {
        let mut queue = self.lock();
        let mut dropped = 0;
        for item in queue.items.iter_mut() {
            if item.as_ref().is_some_and(|frame| frame.source == source) {
                *item = None;
                dropped += 1;
            }
        }
        queue.live -= dropped;
        queue.progress_slot.retain(|(from, _), _| *from != source);
        drop(queue);
        if dropped > 0 {
            self.room.notify_waiters();
        }
    }

    /// Asks the writer to send a ping.
    pub fn request_ping(&self) {
        self.lock().ping = true;
        self.writer.notify_one();
    }

    /// Ends the connection: queued frames are dropped, the writer sends the
    /// close frame (if any) and stops.
    pub fn end(&self, end: End) {
        {
            let mut queue = self.lock();
            if queue.ended || queue.end.is_some() {
                return;
            }
            queue.end = Some(end);
            queue.clear();
        }
        self.wake_all();
    }

    /// The writer's next job, waiting for one.
    pub async fn next(&self) -> Next {
        loop {
            let notified = self.writer.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(next) = self.take_next() {
                return next;
            }
            notified.await;
        }
    }

    fn take_next(&self) -> Option<Next> {
        let mut queue = self.lock();
        if let Some(end) = queue.end.take() {
            queue.ended = true;
            return Some(Next::End(end));
        }
        if queue.ended || queue.trouble.is_some() {
            queue.ended = true;
            return Some(Next::End(End::Finish));
        }
        if std::mem::take(&mut queue.ping) {
            return Some(Next::Ping);
        }
        while let Some(item) = queue.items.pop_front() {
            let slot = queue.first_slot;
            queue.first_slot += 1;
            let Some(frame) = item else { continue };
            queue.live -= 1;
            if let Some(op) = &frame.progress_of {
                let key = (frame.source, op.clone());
                if queue.progress_slot.get(&key) == Some(&slot) {
                    queue.progress_slot.remove(&key);
                }
            }
            let has_room = queue.live + 1 == self.replay_mark;
            if queue.items.is_empty() && queue.items.capacity() > 64 {
                // A burst is over: give its memory back.
                queue.items = VecDeque::new();
                queue.progress_slot = HashMap::new();
            }
            drop(queue);
            if has_room {
                self.room.notify_waiters();
            }
            return Some(Next::Frame(frame));
        }
        None
    }

    /// The writer reports why it stopped.
    pub fn report(&self, trouble: Trouble) {
        {
            let mut queue = self.lock();
            queue.trouble.get_or_insert(trouble);
            queue.clear();
        }
        self.wake_all();
    }

    /// Resolves once there is trouble the reader must act on.
    pub async fn trouble(&self) -> Trouble {
        loop {
            let notified = self.reader.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(trouble) = self.lock().trouble {
                return trouble;
            }
            notified.await;
        }
    }

    /// Frames waiting to be sent.
    pub fn len(&self) -> usize {
        self.lock().live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wake_all(&self) {
        self.writer.notify_one();
        self.reader.notify_one();
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn progress(op: &str, seq: u32) -> Outgoing {
        Outgoing {
            text: Utf8Bytes::from(format!("{op}:{seq}")),
            source: 1,
            progress_of: Some(Arc::from(op)),
            emitted_at: None,
            event: true,
        }
    }

    fn other(op: &str, seq: u32) -> Outgoing {
        Outgoing::notice(format!("{op}:{seq}"), 1)
    }

    async fn drain(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while !outbox.is_empty() {
            match outbox.next().await {
                Next::Frame(frame) => out.push(frame.text.to_string()),
                other => panic!("expected a frame, got {other:?}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn below_the_soft_bound_everything_is_kept() {
        let outbox = Outbox::new(10, 20);
        for seq in 1..=5 {
            assert_eq!(outbox.push(progress("a", seq)), Pushed::Queued);
        }
        assert_eq!(drain(&outbox).await, ["a:1", "a:2", "a:3", "a:4", "a:5"]);
    }

    #[tokio::test]
    async fn past_the_soft_bound_progress_coalesces_in_seq_order() {
        let outbox = Outbox::new(2, 10);
        outbox.push(progress("a", 1));
        outbox.push(progress("b", 1));
        assert_eq!(outbox.push(progress("a", 2)), Pushed::Coalesced);
        outbox.push(other("a", 3));
        assert_eq!(outbox.push(progress("a", 4)), Pushed::Coalesced);
        // a:1 and then a:2 were dropped; a:4 is queued after a:3, so a's
        // seqs still increase.
        assert_eq!(drain(&outbox).await, ["b:1", "a:3", "a:4"]);
    }

    #[tokio::test]
    async fn progress_of_different_subscriptions_never_coalesces() {
        let outbox = Outbox::new(1, 10);
        outbox.push(progress("a", 1));
        let mut from_owner = progress("a", 1);
        from_owner.source = 2;
        assert_eq!(outbox.push(from_owner), Pushed::Queued);
        assert_eq!(drain(&outbox).await, ["a:1", "a:1"]);
    }

    #[tokio::test]
    async fn non_progress_frames_are_never_dropped_and_overflow_closes() {
        let outbox = Outbox::new(1, 3);
        assert_eq!(outbox.push(other("a", 1)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 2)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 3)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 4)), Pushed::Overflow);
        assert_eq!(outbox.trouble().await, Trouble::Overflow);
        assert_eq!(outbox.push(other("a", 5)), Pushed::Closed);
        assert!(matches!(outbox.next().await, Next::End(End::Finish)));
    }

    #[tokio::test]
    async fn purging_a_subscription_drops_only_its_frames() {
        let outbox = Outbox::new(10, 20);
        outbox.push(progress("a", 1));
        let mut mine = other("b", 1);
        mine.source = 2;
        outbox.push(mine);
        outbox.push(progress("a", 2));
        outbox.purge(1);
        assert_eq!(drain(&outbox).await, ["b:1"]);
    }

    #[tokio::test]
    async fn a_replay_waits_for_room_below_half_the_soft_bound() {
        let outbox = Outbox::new(4, 10);
        outbox.push(other("a", 1));
        outbox.push(other("a", 2));
        outbox.push(other("a", 3));
        let waiting = outbox.wait_for_room();
        tokio::pin!(waiting);
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "full: the replay waits"
        );
        assert!(matches!(outbox.next().await, Next::Frame(_)));
        assert!(
            waiting.as_mut().now_or_never().is_none(),
            "at half the soft bound: still waiting"
        );
        assert!(matches!(outbox.next().await, Next::Frame(_)));
        waiting.await;
    }

    #[tokio::test]
    async fn the_end_comes_before_queued_frames_and_ping_before_frames() {
        let outbox = Outbox::new(10, 20);
        outbox.push(other("a", 1));
        outbox.request_ping();
        assert!(matches!(outbox.next().await, Next::Ping));
        outbox.end(End::Close(4001, "expired"));
        assert!(matches!(
            outbox.next().await,
            Next::End(End::Close(4001, _))
        ));
        assert_eq!(outbox.push(other("a", 2)), Pushed::Closed);
    }
}
