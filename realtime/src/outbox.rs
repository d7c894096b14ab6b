//! A connection's bounded outgoing queue, with progress coalescing.
//!
//! Up to the soft bound every frame is queued. Past it, a new `progress`
//! event of an operation that already has a `progress` event waiting
//! replaces it (the older one is dropped, the newer is queued at the back,
//! so the operation's seqs still increase); other events are always kept.
//! Past the hard bound the connection is closed with 4008: a client that
//! slow is better off reconnecting with `after_seq`. One slow connection
//! never holds up another: publishers only ever push here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;

/// One queued frame.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub text: Utf8Bytes,
    /// Set for `progress` events: the operation they belong to.
    pub progress_of: Option<Arc<str>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    Coalesced,
    /// Past the hard bound: close the connection.
    Overflow,
}

#[derive(Default)]
struct Queue {
    /// Slot number of `items[0]`.
    first_slot: u64,
    items: VecDeque<Option<Outgoing>>,
    live: usize,
    /// Operation → slot of its queued progress event.
    progress_slot: HashMap<Arc<str>, u64>,
    closed: bool,
}

pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    soft: usize,
    hard: usize,
}

impl Outbox {
    pub fn new(soft: usize, hard: usize) -> Arc<Outbox> {
        Arc::new(Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            soft,
            hard: hard.max(soft + 1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, frame: Outgoing) -> Pushed {
        let mut queue = self.lock();
        if queue.closed {
            return Pushed::Queued;
        }
        let mut outcome = Pushed::Queued;
        if queue.live >= self.soft {
            if let Some(op) = &frame.progress_of
                && let Some(slot) = queue.progress_slot.get(op).copied()
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
                queue.closed = true;
                return Pushed::Overflow;
            }
        }
        let slot = queue.first_slot + queue.items.len() as u64;
        if let Some(op) = &frame.progress_of {
            queue.progress_slot.insert(op.clone(), slot);
        }
        queue.items.push_back(Some(frame));
        queue.live += 1;
        drop(queue);
        self.ready.notify_one();
        outcome
    }

    /// Takes the next frame, waiting for one. `None` once closed.
    pub async fn pop(&self) -> Option<Outgoing> {
        loop {
            {
                let mut queue = self.lock();
                if queue.closed {
                    return None;
                }
                while let Some(item) = queue.items.pop_front() {
                    let slot = queue.first_slot;
                    queue.first_slot += 1;
                    if let Some(frame) = item {
                        queue.live -= 1;
                        if let Some(op) = &frame.progress_of
                            && queue.progress_slot.get(op) == Some(&slot)
                        {
                            queue.progress_slot.remove(op);
                        }
                        return Some(frame);
                    }
                }
            }
            self.ready.notified().await;
        }
    }

    /// Frames waiting to be sent.
    pub fn len(&self) -> usize {
        self.lock().live
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(op: &str, seq: u32) -> Outgoing {
        Outgoing {
            text: Utf8Bytes::from(format!("{op}:{seq}")),
            progress_of: Some(Arc::from(op)),
        }
    }

    fn other(op: &str, seq: u32) -> Outgoing {
        Outgoing {
            text: Utf8Bytes::from(format!("{op}:{seq}")),
            progress_of: None,
        }
    }

    async fn drain(outbox: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while !outbox.is_empty() {
            out.push(outbox.pop().await.expect("open").text.to_string());
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
    async fn non_progress_frames_are_never_dropped_and_overflow_closes() {
        let outbox = Outbox::new(1, 3);
        assert_eq!(outbox.push(other("a", 1)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 2)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 3)), Pushed::Queued);
        assert_eq!(outbox.push(other("a", 4)), Pushed::Overflow);
        assert!(outbox.pop().await.is_none());
    }
}
