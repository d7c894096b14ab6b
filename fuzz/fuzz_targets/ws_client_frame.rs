//! The gateway's reading of a client text frame: size bound, then
//! `ClientFrame::parse`. Never panics; a refusal is always a well-formed `error`
//! frame; an accepted frame is one the gateway can act on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longrun_realtime::protocol::{ClientFrame, MAX_CLIENT_FRAME, error_frame};
use longrun_shared::store::transitions::is_valid_id;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 by the time the gateway sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > MAX_CLIENT_FRAME {
        return;
    }
    match ClientFrame::parse(text) {
        Ok(frame) => {
            let value: Value = serde_json::from_str(text).expect("a parsed frame is JSON");
            assert!(value.is_object(), "frames are JSON objects: {text}");
            match frame {
                ClientFrame::Subscribe { operation_id, .. }
                | ClientFrame::Unsubscribe { operation_id, .. } => {
                    if let Some(id) = operation_id {
                        let _ = is_valid_id(&id);
                    }
                }
                ClientFrame::Auth { token } => assert!(value["token"] == token),
                ClientFrame::Ping {} => assert_eq!(value["type"], "ping"),
            }
        }
        Err(err) => {
            let frame = error_frame(
                "bad_request",
                &format!("not a frame of the protocol: {err}"),
                None,
            );
            let parsed: Value = serde_json::from_str(&frame).expect("error frames are JSON");
            assert_eq!(parsed["type"], "error");
            assert_eq!(parsed["code"], "bad_request");
        }
    }
});
