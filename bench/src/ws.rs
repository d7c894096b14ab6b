//! One WebSocket client for both targets, so both get the same client-side
//! cost: longrun's JSON frames (contract v1), or Socket.IO v4 over its
//! WebSocket transport (Engine.IO v4 text packets: `0` open, `2`/`3`
//! ping/pong, `40` connect with the token in the auth payload, `42` event,
//! `43` ack). Only what the benchmark uses is implemented.
//!
//! Every event's delivery latency is taken when its frame is read: now
//! minus the worker's emit time (`data.t` when the event carries it, else
//! its RFC 3339 `at`, which longrun writes with microseconds).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::platform::Target;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One event as the client saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub operation_id: String,
    pub seq: u64,
    pub event: String,
    /// Receive time minus emit time, ms (`None` when the event has no usable emit time).
    pub latency_ms: Option<f64>,
    /// The emit time, ms since the epoch (`None` as for the latency).
    pub emitted_ms: Option<f64>,
}

impl Delivery {
    pub fn is_terminal(&self) -> bool {
        matches!(self.event.as_str(), "succeeded" | "failed" | "cancelled")
    }
}

/// What the client read.
#[derive(Debug)]
pub enum Incoming {
    Event(Delivery),
    /// The answer to a subscribe: the resource's `done` when it carries one.
    Subscribed {
        done: bool,
    },
    /// An `error` frame (longrun) or a refused subscribe (Socket.IO).
    Error(String),
    /// The server closed the connection (with its close code when there was one).
    Closed(Option<u16>),
}

/// A connected, authenticated client.
pub struct WsClient {
    target: Target,
    socket: Socket,
    next_ack: u64,
    /// Frames read while waiting for something else.
    pending: VecDeque<Incoming>,
}

/// Small buffers: the load generator holds up to 10,000 of these.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

impl WsClient {
    /// Connects and authenticates with `token`.
    pub async fn connect(target: Target, url: &str, token: &str) -> Result<WsClient> {
        let url = match target {
            Target::Longrun => format!("{url}?access_token={token}"),
            Target::Peer => url.to_owned(),
        };
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config()), true)
                .await
                .with_context(|| {
                    format!("connecting to {}", url.split('?').next().unwrap_or(""))
                })?;
        let mut client = WsClient {
            target,
            socket,
            next_ack: 0,
            pending: VecDeque::new(),
        };
        if target == Target::Peer {
            client.socketio_handshake(token).await?;
        }
        Ok(client)
    }

    async fn socketio_handshake(&mut self, token: &str) -> Result<()> {
        let open = self.read_text().await?;
        if !open.starts_with('0') {
            bail!("expected an Engine.IO open packet, got {open}");
        }
        self.send(format!("40{}", json!({ "token": token })))
            .await?;
        loop {
            let packet = self.read_text().await?;
            if packet.starts_with("40") {
                return Ok(());
            }
            if packet.starts_with("44") {
                bail!("Socket.IO refused the connection: {packet}");
            }
            if packet == "2" {
                self.send("3".into()).await?;
            }
        }
    }

    async fn send(&mut self, text: String) -> Result<()> {
        self.socket.send(Message::text(text)).await?;
        Ok(())
    }

    async fn read_text(&mut self) -> Result<String> {
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    bail!("closed by the server: {frame:?}")
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => bail!("connection closed"),
            }
        }
    }

    /// Subscribes to every event of the caller's operations and waits until
    /// the server answered: a Socket.IO ack, or (longrun, whose owner
    /// subscription has no answer frame) the pong to a ping sent after it.
    pub async fn subscribe_owner(&mut self) -> Result<()> {
        match self.target {
            Target::Longrun => {
                self.send(json!({"type": "subscribe", "owner": "self"}).to_string())
                    .await?;
                self.send(json!({"type": "ping"}).to_string()).await?;
            }
            Target::Peer => {
                let id = self.ack_id();
                self.send(format!("42{id}{}", json!(["subscribe", {"owner": "self"}])))
                    .await?;
            }
        }
        loop {
            match self.read_frame().await? {
                Frame::Barrier | Frame::Incoming(Incoming::Subscribed { .. }) => return Ok(()),
                Frame::Incoming(Incoming::Error(message)) => bail!("subscribe refused: {message}"),
                Frame::Incoming(Incoming::Closed(code)) => {
                    bail!("closed while subscribing ({code:?})")
                }
                Frame::Incoming(other) => self.pending.push_back(other),
                Frame::Nothing => {}
            }
        }
    }

    /// Subscribes to one operation (longrun: replaying the log after
    /// `after_seq`); the answer comes through [`next`](Self::next).
    pub async fn subscribe_operation(&mut self, id: &str, after_seq: Option<u64>) -> Result<()> {
        match self.target {
            Target::Longrun => {
                let frame = match after_seq {
                    Some(seq) => {
                        json!({"type": "subscribe", "operation_id": id, "after_seq": seq})
                    }
                    None => json!({"type": "subscribe", "operation_id": id}),
                };
                self.send(frame.to_string()).await
            }
            Target::Peer => {
                let ack = self.ack_id();
                self.send(format!(
                    "42{ack}{}",
                    json!(["subscribe", {"operation_id": id}])
                ))
                .await
            }
        }
    }

    fn ack_id(&mut self) -> u64 {
        self.next_ack += 1;
        self.next_ack
    }

    /// The next event, answer or error; `Closed` once the server closed.
    pub async fn next(&mut self) -> Result<Incoming> {
        if let Some(incoming) = self.pending.pop_front() {
            return Ok(incoming);
        }
        loop {
            match self.read_frame().await? {
                Frame::Incoming(incoming) => return Ok(incoming),
                Frame::Barrier | Frame::Nothing => {}
            }
        }
    }

    /// [`next`](Self::next), or `None` when nothing came for `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Incoming>> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_frame(&mut self) -> Result<Frame> {
        let text = match self.socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                return Ok(Frame::Incoming(Incoming::Closed(
                    frame.map(|f| u16::from(f.code)),
                )));
            }
            Some(Ok(_)) => return Ok(Frame::Nothing),
            Some(Err(err)) => return Err(anyhow!("reading the socket: {err}")),
            None => return Ok(Frame::Incoming(Incoming::Closed(None))),
        };
        let received = unix_ms();
        match self.target {
            Target::Longrun => Ok(longrun_frame(text.as_str(), received)),
            Target::Peer => {
                let text = text.as_str();
                if text == "2" {
                    self.send("3".into()).await?;
                    return Ok(Frame::Nothing);
                }
                Ok(socketio_frame(text, received))
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.socket.close(None)).await;
    }
}

enum Frame {
    Incoming(Incoming),
    /// A pong (longrun): every frame sent before the ping was handled.
    Barrier,
    Nothing,
}

/// The fields of every frame the benchmark reads (longrun's and the peer's events share them).
#[derive(Deserialize)]
struct Wire {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    operation_id: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    event: String,
    #[serde(default)]
    at: String,
    #[serde(default)]
    data: Option<WireData>,
    #[serde(default)]
    operation: Option<WireOperation>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
}

#[derive(Deserialize)]
struct WireData {
    /// Emit time, ms since the epoch (the peer stack's events carry it).
    #[serde(default)]
    t: Option<f64>,
}

#[derive(Deserialize)]
struct WireOperation {
    #[serde(default)]
    done: bool,
}

fn longrun_frame(text: &str, received: f64) -> Frame {
    let Ok(wire) = serde_json::from_str::<Wire>(text) else {
        return Frame::Incoming(Incoming::Error(format!("unreadable frame: {text}")));
    };
    match wire.kind.as_str() {
        "event" => Frame::Incoming(Incoming::Event(delivery(wire, received))),
        "subscribed" => Frame::Incoming(Incoming::Subscribed {
            done: wire.operation.is_some_and(|op| op.done),
        }),
        "pong" => Frame::Barrier,
        "error" => Frame::Incoming(Incoming::Error(format!(
            "{}: {}",
            wire.code.unwrap_or_default(),
            wire.message.unwrap_or_default()
        ))),
        _ => Frame::Nothing,
    }
}

fn socketio_frame(text: &str, received: f64) -> Frame {
    if let Some(body) = text.strip_prefix("42") {
        let Ok((name, wire)) = serde_json::from_str::<(String, Wire)>(body) else {
            return Frame::Nothing;
        };
        if name == "event" {
            return Frame::Incoming(Incoming::Event(delivery(wire, received)));
        }
        return Frame::Nothing;
    }
    if let Some(rest) = text.strip_prefix("43") {
        let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        return match serde_json::from_str::<(Wire,)>(body) {
            Ok((wire,)) if wire.ok == Some(true) => Frame::Incoming(Incoming::Subscribed {
                done: wire.operation.is_some_and(|op| op.done),
            }),
            Ok((wire,)) => Frame::Incoming(Incoming::Error(wire.code.unwrap_or_default())),
            Err(_) => Frame::Incoming(Incoming::Error(format!("unreadable ack: {text}"))),
        };
    }
    if text.starts_with("41") {
        return Frame::Incoming(Incoming::Closed(None));
    }
    Frame::Nothing
}

fn delivery(wire: Wire, received: f64) -> Delivery {
    let emitted = wire
        .data
        .as_ref()
        .and_then(|data| data.t)
        .or_else(|| rfc3339_ms(&wire.at));
    Delivery {
        operation_id: wire.operation_id,
        seq: wire.seq,
        event: wire.event,
        latency_ms: emitted.map(|t| received - t),
        emitted_ms: emitted,
    }
}

/// Milliseconds since the epoch, with sub-millisecond precision.
pub fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn rfc3339_ms(at: &str) -> Option<f64> {
    let time = humantime::parse_rfc3339(at).ok()?;
    Some(time.duration_since(UNIX_EPOCH).ok()?.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longrun_events_take_their_emit_time_from_at() {
        let frame = r#"{"type":"event","operation_id":"a","seq":3,"event":"progress","at":"2026-01-01T00:00:00.000250Z","data":{"percent":5,"message":null,"data":null}}"#;
        let emitted = rfc3339_ms("2026-01-01T00:00:00.000250Z").expect("parses");
        let Frame::Incoming(Incoming::Event(event)) = longrun_frame(frame, emitted + 1.5) else {
            panic!("an event");
        };
        assert_eq!((event.seq, event.event.as_str()), (3, "progress"));
        let latency = event.latency_ms.expect("has a latency");
        assert!((latency - 1.5).abs() < 1e-6, "{latency}");
    }

    #[test]
    fn socketio_events_and_acks_are_read() {
        let Frame::Incoming(Incoming::Event(event)) = socketio_frame(
            r#"42["event",{"type":"event","operation_id":"b","seq":2,"event":"succeeded","at":"x","data":{"t":1000.5}}]"#,
            1002.0,
        ) else {
            panic!("an event");
        };
        assert!(event.is_terminal());
        assert_eq!(event.latency_ms, Some(1.5));
        assert!(matches!(
            socketio_frame(r#"437[{"ok":true}]"#, 0.0),
            Frame::Incoming(Incoming::Subscribed { done: false })
        ));
        assert!(matches!(
            socketio_frame(r#"431[{"ok":false,"code":"not_found"}]"#, 0.0),
            Frame::Incoming(Incoming::Error(code)) if code == "not_found"
        ));
    }

    #[test]
    fn pongs_are_barriers() {
        assert!(matches!(
            longrun_frame(r#"{"type":"pong"}"#, 0.0),
            Frame::Barrier
        ));
    }
}
