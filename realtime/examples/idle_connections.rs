//! Opens many idle WebSocket connections to a gateway and holds them, to
//! measure the gateway's memory per connection (read its RSS before and
//! after, e.g. `grep VmRSS /proc/PID/status`).
//!
//! ```text
//! cargo run -p longrun-realtime --example idle_connections -- \
//!     ws://127.0.0.1:8081 2000 "$LONGRUN_JWT_SECRET" [none|self|OPERATION_ID]
//! ```
//!
//! `none` only connects; `self` subscribes each connection to `owner: "self"`
//! (one Redis channel for all); an operation id subscribes each to it. Each
//! connection uses its own owner (`idle-N`), so per-owner limits do not apply.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use longrun_shared::auth::{TokenRequest, mint};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(count), Some(secret)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: idle_connections WS_URL COUNT SECRET [none|self|OPERATION_ID]");
        std::process::exit(2);
    };
    let count: usize = count.parse()?;
    let mode = args.get(4).map_or("none", String::as_str);
    let mut sockets = Vec::with_capacity(count);
    for n in 0..count {
        let sub = format!("idle-{n}");
        let token = mint(
            secret,
            &TokenRequest {
                sub: &sub,
                roles: vec!["admin".into()],
                ttl: Duration::from_secs(3600),
                issuer: None,
                audience: None,
            },
        )?;
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("{url}/v1/ws?access_token={token}")).await?;
        let subscribe = match mode {
            "none" => None,
            "self" => Some(r#"{"type":"subscribe","owner":"self"}"#.to_owned()),
            id => Some(format!(r#"{{"type":"subscribe","operation_id":"{id}"}}"#)),
        };
        if let Some(frame) = subscribe {
            socket.send(Message::text(frame)).await?;
        }
        sockets.push(socket);
    }
    println!("{count} connections open ({mode}); Ctrl-C to close them");
    // Answer pings now and then so the gateway keeps the connections.
    loop {
        for socket in &mut sockets {
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), socket.next()).await
            {}
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
