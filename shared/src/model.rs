//! The operation resource and its event log, exactly as the public contract
//! shows them on the wire.
//!
//! An operation is stored in Redis as a flat hash (see [`crate::keys`]); this
//! module owns the conversion from that hash into the JSON resource, so every
//! service renders an operation the same way.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where an operation is in its life. Moves only forward, except `running →
/// queued` on a retry; the three terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// True for `succeeded`, `failed` and `cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}`; expected queued, running, succeeded, failed or cancelled"
                )
            })
    }
}

/// The latest progress report of an operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// 0 to 100; never decreases within one attempt.
    pub percent: f64,
    pub message: Option<String>,
    /// Partial results or any JSON the handler chose to report.
    #[schema(value_type = Object, nullable = true)]
    pub data: Value,
}

/// Counts of an operation's children by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChildCounts {
    pub total: u64,
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl ChildCounts {
    /// Children that reached a terminal state.
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OperationError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
}

/// The operation resource (AIP-151 / Azure LRO style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// UUIDv7.
    pub id: String,
    /// `<module>.<operation>`, e.g. `demo.sleep`.
    pub kind: String,
    pub status: Status,
    /// True exactly when `status` is terminal.
    pub done: bool,
    pub progress: Progress,
    pub attempt: u32,
    pub max_attempts: u32,
    pub parent_id: Option<String>,
    pub children: ChildCounts,
    #[schema(value_type = Object, nullable = true)]
    pub result: Value,
    pub error: Option<OperationError>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
    /// Sequence number of the latest event of this operation.
    pub seq: u64,
    /// Who started it (the token's `sub`). Shown to everyone who may read
    /// the operation, which is only its owner and admins.
    pub owner: String,
}

/// Fields of the stored hash that are internal and never rendered.
pub struct StoredOperation {
    pub operation: Operation,
    pub root: String,
    pub generation: u64,
}

impl Operation {
    /// Builds the resource from the fields of its Redis hash. Returns `None`
    /// when the hash is empty or lacks the identifying fields (the operation
    /// does not exist or is being deleted).
    pub fn from_hash(fields: &HashMap<String, String>) -> Option<StoredOperation> {
        let get = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
        let id = fields.get("id")?.clone();
        let status: Status = get("status").parse().ok()?;
        let number = |name: &str| get(name).parse::<u64>().unwrap_or(0);
        let json = |name: &str| -> Value {
            fields
                .get(name)
                .and_then(|raw| serde_json::from_str(raw).ok())
                .unwrap_or(Value::Null)
        };
        let optional = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let progress = serde_json::from_value(json("progress")).unwrap_or_default();
        let error = serde_json::from_value(json("error")).ok();
        let operation = Operation {
            id,
            kind: get("kind").to_owned(),
            status,
            done: status.is_terminal(),
            progress,
            attempt: number("attempt") as u32,
            max_attempts: number("max_attempts") as u32,
            parent_id: optional("parent"),
            children: ChildCounts {
                total: number("c_total"),
                queued: number("c_queued"),
                running: number("c_running"),
                succeeded: number("c_succeeded"),
                failed: number("c_failed"),
                cancelled: number("c_cancelled"),
            },
            result: json("result"),
            error,
            created_at: get("created_at").to_owned(),
            started_at: optional("started_at"),
            finished_at: optional("finished_at"),
            updated_at: get("updated_at").to_owned(),
            seq: number("seq"),
            owner: get("owner").to_owned(),
        };
        Some(StoredOperation {
            operation,
            root: get("root").to_owned(),
            generation: number("gen"),
        })
    }
}

/// The kinds of events an operation's log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Created,
    Started,
    Progress,
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
    ChildFinished,
}

impl EventType {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventType::Succeeded | EventType::Failed | EventType::Cancelled
        )
    }
}

/// One entry of an operation's event log, as `GET …/events` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub operation_id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub at: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

impl Event {
    /// The WebSocket `event` frame carrying this event.
    pub fn to_frame(&self) -> EventFrame {
        EventFrame {
            frame_type: FrameTag::Event,
            operation_id: self.operation_id.clone(),
            seq: self.seq,
            event: self.event_type,
            at: self.at.clone(),
            data: self.data.clone(),
        }
    }
}

/// Marker for the `"type": "event"` field of an event frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameTag {
    Event,
}

/// The WebSocket frame `{"type":"event", "operation_id", "seq", "event", "at", "data"}`.
/// The transition scripts publish exactly this JSON, so the gateway forwards
/// the bytes it receives from Redis without re-serialising them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    #[serde(rename = "type")]
    pub frame_type: FrameTag,
    pub operation_id: String,
    pub seq: u64,
    pub event: EventType,
    pub at: String,
    pub data: Value,
}

impl EventFrame {
    pub fn into_event(self) -> Event {
        Event {
            operation_id: self.operation_id,
            seq: self.seq,
            event_type: self.event,
            at: self.at,
            data: self.data,
        }
    }
}

/// The head of a published event frame: enough to route and order it
/// without parsing its data.
#[derive(Debug, Clone, Deserialize)]
pub struct FrameHead {
    pub operation_id: String,
    pub seq: u64,
    pub event: EventType,
}

/// A page of operations (`list` and `children`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationPage {
    pub operations: Vec<Operation>,
    pub next_cursor: Option<String>,
}

/// A page of events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `after_seq` to read on.
    pub next_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_name() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert!("done".parse::<Status>().is_err());
    }

    #[test]
    fn resource_renders_from_a_stored_hash() {
        let fields: HashMap<String, String> = [
            ("id", "0193a3f6-0000-7000-8000-000000000001"),
            ("kind", "demo.sleep"),
            ("status", "succeeded"),
            ("seq", "4"),
            ("attempt", "1"),
            ("max_attempts", "3"),
            (
                "progress",
                r#"{"percent":100,"message":"step 2/2","data":null}"#,
            ),
            ("result", r#"{"slept_ms":20}"#),
            ("created_at", "2026-11-24T10:00:00Z"),
            ("updated_at", "2026-11-24T10:00:01Z"),
            ("finished_at", "2026-11-24T10:00:01Z"),
            ("parent", ""),
            ("owner", "alice"),
            ("root", "0193a3f6-0000-7000-8000-000000000001"),
            ("gen", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let stored = Operation::from_hash(&fields).expect("a complete hash renders");
        let op = stored.operation;
        assert!(op.done);
        assert_eq!(op.parent_id, None);
        assert_eq!(op.result["slept_ms"], 20);
        assert_eq!(op.progress.percent, 100.0);
        assert_eq!(op.started_at, None);
        let json = serde_json::to_value(&op).expect("serialises");
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["error"], Value::Null);
        assert_eq!(json["children"]["total"], 0);
    }

    #[test]
    fn a_new_operation_renders_no_progress_and_no_children_from_absent_fields() {
        // create.lua and spawn.lua write neither `progress` nor the child
        // counts: a queued operation renders their zero values.
        let fields: HashMap<String, String> = [
            ("id", "0193a3f6-0000-7000-8000-000000000002"),
            ("kind", "demo.sleep"),
            ("status", "queued"),
            ("seq", "1"),
            ("attempt", "0"),
            ("max_attempts", "3"),
            ("created_at", "2026-11-24T10:00:00Z"),
            ("updated_at", "2026-11-24T10:00:00Z"),
            ("owner", "alice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let op = Operation::from_hash(&fields).expect("renders").operation;
        let json = serde_json::to_value(&op).expect("serialises");
        assert_eq!(
            json["progress"],
            serde_json::json!({"percent": 0.0, "message": null, "data": null})
        );
        assert_eq!(
            json["children"],
            serde_json::json!({"total": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0})
        );
    }

    #[test]
    fn an_empty_hash_is_no_operation() {
        assert!(Operation::from_hash(&HashMap::new()).is_none());
    }
}
