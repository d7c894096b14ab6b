//! The frames of the WebSocket protocol (contract v1), client to server and
//! server to client, with the error codes and close codes the gateway uses.
//! docs/websocket.md describes them for users.

use longrun_shared::model::Operation;
use serde::{Deserialize, Serialize};

/// Largest client frame the gateway reads; bigger ones get `bad_request`.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

/// Largest message the socket takes at all: a bigger one is abuse, and the
/// connection is closed with 1009 (it cannot be skipped without reading it).
pub const MAX_SOCKET_MESSAGE: usize = 16 * 1024 * 1024;

/// A frame from the client.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    Subscribe {
        #[serde(default)]
        operation_id: Option<String>,
        #[serde(default)]
        owner: Option<String>,
        #[serde(default)]
        after_seq: Option<u64>,
    },
    Unsubscribe {
        #[serde(default)]
        operation_id: Option<String>,
        #[serde(default)]
        owner: Option<String>,
    },
    Auth {
        token: String,
    },
    Ping {},
}

impl ClientFrame {
    /// Reads a text frame. Only a JSON object is a frame: serde would also
    /// read an internally tagged enum from an array (`["ping"]`), which the
    /// protocol does not allow.
    pub fn parse(text: &str) -> Result<ClientFrame, String> {
        let opening = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .chars()
            .next();
        if opening != Some('{') {
            return Err("frames are JSON objects with a `type`".to_owned());
        }
        serde_json::from_str(text).map_err(|err| err.to_string())
    }
}

/// The `operation_id` of a frame that did not parse, if it has one, so the
/// `bad_request` answer names the subscription it is about.
pub fn operation_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Loose {
        operation_id: String,
    }
    serde_json::from_str::<Loose>(text)
        .ok()
        .map(|loose| loose.operation_id)
        .filter(|id| id.len() <= 64)
}

/// A frame to the client (event frames are forwarded as published).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Subscribed {
        operation_id: &'a str,
        operation: &'a Operation,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        operation_id: Option<&'a str>,
    },
    Pong {},
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Builds an `error` frame.
pub fn error_frame(code: &str, message: &str, operation_id: Option<&str>) -> String {
    ServerFrame::Error {
        code,
        message,
        operation_id,
    }
    .to_json()
}

/// The `code`s of `error` frames.
pub mod code {
    /// Another owner's operation, or none with that id.
    pub const NOT_FOUND: &str = "not_found";
    /// A frame that is not JSON text of the protocol, or too big.
    pub const BAD_REQUEST: &str = "bad_request";
    /// Too many subscriptions on this connection.
    pub const LIMIT: &str = "limit";
    /// A subscribe or unsubscribe before the connection authenticated.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// Events of a replay are no longer kept (the log expired with retention).
    pub const GAP: &str = "gap";
}

/// WebSocket close codes the gateway uses.
pub mod close {
    /// The client closed, or a normal end.
    pub const NORMAL: u16 = 1000;
    /// The gateway is shutting down, or the peer stopped answering pings:
    /// reconnect (elsewhere) and resubscribe with `after_seq`.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket protocol (e.g. a reserved opcode).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message over [`super::MAX_SOCKET_MESSAGE`].
    pub const TOO_BIG: u16 = 1009;
    /// Bad, expired or missing token.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client fell too far behind.
    pub const TOO_SLOW: u16 = 4008;
    /// Too many connections for this owner.
    pub const TOO_MANY: u16 = 4029;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"type":"subscribe","operation_id":"x","after_seq":3}"#)
                .expect("parses");
        assert_eq!(
            frame,
            ClientFrame::Subscribe {
                operation_id: Some("x".into()),
                owner: None,
                after_seq: Some(3)
            }
        );
        let ping: ClientFrame = serde_json::from_str(r#"{"type":"ping"}"#).expect("parses");
        assert_eq!(ping, ClientFrame::Ping {});
        assert!(
            serde_json::from_str::<ClientFrame>(r#"{"type":"subscribe","after_seq":"x"}"#).is_err()
        );
        assert!(serde_json::from_str::<ClientFrame>(r#"{"type":"launch"}"#).is_err());
    }

    #[test]
    fn only_json_objects_are_frames() {
        assert_eq!(
            ClientFrame::parse(" \n{\"type\":\"ping\"}"),
            Ok(ClientFrame::Ping {})
        );
        for text in [
            r#"["ping"]"#,
            r#"["unsubscribe"]"#,
            r#"["subscribe","x",null,3]"#,
            "null",
            "",
        ] {
            assert!(ClientFrame::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_malformed_frame_still_names_its_operation() {
        let text = r#"{"type":"subscribe","operation_id":"x","after_seq":-1}"#;
        assert!(serde_json::from_str::<ClientFrame>(text).is_err());
        assert_eq!(operation_id_of(text).as_deref(), Some("x"));
        assert_eq!(operation_id_of("nonsense"), None);
    }

    #[test]
    fn error_frames_carry_code_and_operation() {
        let json: serde_json::Value =
            serde_json::from_str(&error_frame("not_found", "no such operation", Some("x")))
                .expect("json");
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["operation_id"], "x");
    }
}
