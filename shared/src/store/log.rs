//! Reading an operation's event log.
//!
//! The log is a Redis list of the `event` frames exactly as the transition
//! functions published them (`P:{root}:log:ID`). An operation's seqs are
//! dense — every event is appended by `emit` in the very transition that
//! bumps the seq — so the entry at index i holds seq i + 1 and a page after
//! `after_seq` is one `LRANGE` from index `after_seq`.
//!
//! Versions before the list kept the log in a stream (`P:{root}:ev:ID`,
//! entry id `SEQ-0`, fields `t`, `at`, `d`); an operation that lived through
//! an upgrade has its first events there and the rest in the list. Every
//! page read checks that the entries' seqs are where density puts them;
//! when they are not (such an operation, or a log that is not dense for any
//! other reason), the page is assembled from both logs by seq instead,
//! each read a page's worth from where `after_seq` falls in it.

use std::collections::{BTreeMap, HashMap};

use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Value};
use serde::Deserialize;
use serde_json::Value as Json;

use super::{Store, StoreError, StoreResult, scripts};
use crate::model::{Event, EventFrame, EventType};

impl Store {
    /// Up to `limit` events with seq greater than `after_seq`, in order.
    pub async fn events(
        &self,
        root: &str,
        id: &str,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<Event>> {
        self.event_frames(root, id, after_seq, limit)
            .await?
            .iter()
            .map(|frame| parse_frame(frame))
            .collect()
    }

    /// The same page as [`events`](Self::events), as the `event` frames
    /// subscribers receive (the bytes that were published), so a replay
    /// forwards them without decoding their data.
    pub async fn event_frames(
        &self,
        root: &str,
        id: &str,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let limit = limit.max(1);
        let key = self.keys().log(root, id);
        let frames = self.log_page(&key, after_seq, limit).await?;
        let seqs = frames
            .iter()
            .map(|frame| seq_of(frame))
            .collect::<StoreResult<Vec<_>>>()?;
        if is_dense_after(&seqs, after_seq) {
            return Ok(frames);
        }
        if frames.is_empty() {
            // Nothing at that index: either the log ends before it (nothing
            // new) or it does not start at seq 1. Its last entry tells.
            let tail: Option<String> = self.conn().lindex(&key, -1).await?;
            if let Some(tail) = tail
                && seq_of(&tail)? <= after_seq
            {
                return Ok(frames);
            }
        }
        self.frames_by_seq(&key, root, id, after_seq, limit).await
    }

    /// Up to `limit` entries of the list `key` from index `start`.
    async fn log_page(&self, key: &str, start: u64, limit: usize) -> StoreResult<Vec<String>> {
        let first = isize::try_from(start).unwrap_or(isize::MAX);
        let last = first.saturating_add(isize::try_from(limit.max(1) - 1).unwrap_or(isize::MAX));
        Ok(self.conn().lrange(key, first, last).await?)
    }

    /// The page assembled by seq from the legacy stream and the list `key`. The
    /// list's first seq says how many events came before it (in the
    /// stream), so the list is read from where `after_seq` falls in it, a
    /// page's worth, however long the log is.
    async fn frames_by_seq(
        &self,
        key: &str,
        root: &str,
        id: &str,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let (head, legacy): (Option<String>, StreamRangeReply) = redis::pipe()
            .lindex(key, 0)
            .cmd("XRANGE")
            .arg(self.keys().legacy_log(root, id))
            .arg(format!("({after_seq}-0"))
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        let mut by_seq = BTreeMap::new();
        for entry in &legacy.ids {
            let event = event_from_entry(id, &entry.id, &entry.map)?;
            let frame = serde_json::to_string(&event.to_frame())
                .map_err(|err| StoreError::data(format!("event {}: {err}", entry.id)))?;
            by_seq.insert(event.seq, frame);
        }
        if let Some(head) = head {
            let before_list = seq_of(&head)?.saturating_sub(1);
            let start = after_seq.saturating_sub(before_list);
            for frame in self.log_page(key, start, limit).await? {
                by_seq.insert(seq_of(&frame)?, frame);
            }
        }
        Ok(by_seq
            .into_iter()
            .filter(|(seq, _)| *seq > after_seq)
            .take(limit)
            .map(|(_, frame)| frame)
            .collect())
    }
}

/// Whether a page read from index `after_seq` holds seqs `after_seq + 1`,
/// `after_seq + 2`, … — where a dense log has them. An empty page is not
/// known to be either.
fn is_dense_after(seqs: &[u64], after_seq: u64) -> bool {
    !seqs.is_empty() && seqs.iter().zip(after_seq + 1..).all(|(seq, at)| *seq == at)
}

/// The seq of a logged frame, read without decoding the rest.
fn seq_of(frame: &str) -> StoreResult<u64> {
    #[derive(Deserialize)]
    struct Head {
        seq: u64,
    }
    serde_json::from_str::<Head>(frame)
        .map(|head| head.seq)
        .map_err(|err| StoreError::data(format!("bad event frame in the log: {err}")))
}

fn parse_frame(frame: &str) -> StoreResult<Event> {
    serde_json::from_str::<EventFrame>(frame)
        .map(EventFrame::into_event)
        .map_err(|err| StoreError::data(format!("bad event frame in the log: {err}")))
}

/// One entry of a legacy stream log.
fn event_from_entry(id: &str, entry_id: &str, map: &HashMap<String, Value>) -> StoreResult<Event> {
    let field = |name: &str| -> StoreResult<String> {
        map.get(name)
            .cloned()
            .map(scripts::string)
            .transpose()?
            .ok_or_else(|| StoreError::data(format!("event {entry_id} lacks `{name}`")))
    };
    let seq = entry_id
        .split('-')
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::data(format!("bad event id {entry_id}")))?;
    let event_type: EventType = serde_json::from_value(Json::String(field("t")?))
        .map_err(|_| StoreError::data(format!("event {entry_id} has an unknown type")))?;
    let data = serde_json::from_str(&field("d")?)
        .map_err(|_| StoreError::data(format!("event {entry_id} has bad data")))?;
    Ok(Event {
        operation_id: id.to_owned(),
        seq,
        event_type,
        at: field("at")?,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_dense_when_its_seqs_follow_after_seq() {
        assert!(is_dense_after(&[4, 5], 3));
        assert!(!is_dense_after(&[5, 6], 3), "a hole before");
        assert!(!is_dense_after(&[4, 6], 3), "a hole within");
        assert!(!is_dense_after(&[], 3), "nothing read proves nothing");
    }

    #[test]
    fn a_published_frame_reads_back_as_its_event() {
        let frame = r#"{"type":"event","operation_id":"op","seq":2,"event":"progress","at":"2026-11-25T00:00:00Z","data":{"percent":5}}"#;
        let read = parse_frame(frame).expect("parses");
        assert_eq!(read.seq, 2);
        assert_eq!(read.event_type, EventType::Progress);
        assert_eq!(read.data["percent"], 5);
        assert_eq!(seq_of(frame).expect("a seq"), 2);
        assert!(parse_frame("{}").is_err());
        assert!(seq_of("{}").is_err());
    }
}
