//! The frames of the WebSocket protocol (contract v1), client to server and
//! server to client.

use longrun_shared::model::Operation;
use serde::{Deserialize, Serialize};

/// Largest client frame the gateway reads; bigger ones get `bad_request`.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;

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

/// A frame to the client (event frames are forwarded as published).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Subscribed {
        operation_id: &'a str,
        operation: &'a Operation,
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        operation_id: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        owner: Option<&'a str>,
    },
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        operation_id: Option<&'a str>,
    },
    Pong {},
    Authenticated {
        sub: &'a str,
        expires_at: u64,
    },
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

/// WebSocket close codes the gateway uses.
pub mod close {
    /// The gateway is shutting down: reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the WebSocket protocol (e.g. a reserved opcode).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message over the socket's size bound.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
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
    fn error_frames_carry_code_and_operation() {
        let json: serde_json::Value =
            serde_json::from_str(&error_frame("not_found", "no such operation", Some("x")))
                .expect("json");
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "not_found");
        assert_eq!(json["operation_id"], "x");
    }
}
