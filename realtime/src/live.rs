//! Event frames as the gateway hands them out: live ones as the relay
//! receives them (decoded once per process, shared by every subscriber),
//! and logged ones as a replay reads them (the same bytes, stored).
//!
//! The transition scripts publish the exact `event` frame clients receive,
//! so the gateway never re-serialises a live event: it reads the few head
//! fields it routes and orders by, checks the bytes are UTF-8 once, and
//! every subscriber queues a clone of the same [`Utf8Bytes`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use longrun_shared::model::EventType;
use serde::Deserialize;

/// One published event, decoded.
#[derive(Debug)]
pub struct LiveEvent {
    pub operation_id: Arc<str>,
    pub seq: u64,
    pub event: EventType,
    /// When the transition script ran (its `at`), for the latency metric.
    pub emitted_at: Option<SystemTime>,
    /// The frame as published, ready to send.
    pub text: Utf8Bytes,
}

/// What subscribers share.
pub type Live = Arc<LiveEvent>;

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    operation_id: Cow<'a, str>,
    seq: u64,
    event: EventType,
    #[serde(borrow)]
    at: Cow<'a, str>,
}

/// Decodes a published payload; `None` for anything that is not an event frame.
pub fn decode(payload: &[u8]) -> Option<Live> {
    let text = std::str::from_utf8(payload).ok()?;
    event_of(text.to_owned(), true).map(Arc::new)
}

/// Decodes a frame read from the log (the same bytes that were published),
/// keeping the string it was read into. No emit time: a replayed event's
/// delay is not delivery latency.
pub fn decode_logged(frame: String) -> Option<LiveEvent> {
    event_of(frame, false)
}

/// An event frame's head fields, with its text; the emit time (its `at`)
/// only when `emit_time`.
fn event_of(text: String, emit_time: bool) -> Option<LiveEvent> {
    let head: Head<'_> = serde_json::from_str(&text).ok()?;
    let emitted_at = if emit_time {
        humantime::parse_rfc3339(&head.at).ok()
    } else {
        None
    };
    let (operation_id, seq, event) = (Arc::from(head.operation_id.as_ref()), head.seq, head.event);
    Some(LiveEvent {
        operation_id,
        seq,
        event,
        emitted_at,
        text: Utf8Bytes::from(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_frame_decodes_and_keeps_its_bytes() {
        let frame = r#"{"type":"event","operation_id":"x","seq":7,"event":"progress","at":"2026-01-02T03:04:05.000006Z","data":{"percent":5}}"#;
        let live = decode(frame.as_bytes()).expect("decodes");
        assert_eq!(&*live.operation_id, "x");
        assert_eq!(live.seq, 7);
        assert_eq!(live.event, EventType::Progress);
        assert!(live.emitted_at.is_some());
        assert_eq!(live.text.as_str(), frame);
    }

    #[test]
    fn a_logged_frame_decodes_without_an_emit_time() {
        let frame = r#"{"type":"event","operation_id":"x","seq":3,"event":"succeeded","at":"2026-01-02T03:04:05Z","data":{}}"#;
        let logged = decode_logged(frame.to_owned()).expect("decodes");
        assert_eq!((logged.seq, logged.event), (3, EventType::Succeeded));
        assert_eq!(logged.emitted_at, None);
        assert_eq!(logged.text.as_str(), frame);
        assert!(decode_logged("[]".to_owned()).is_none());
    }

    #[test]
    fn other_payloads_are_dropped() {
        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"seq":1}"#).is_none());
        assert!(decode(&[0xff, 0xfe]).is_none());
    }
}
