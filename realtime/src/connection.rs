//! One WebSocket connection: authentication, the client's frames, its
//! subscriptions, keepalive and closing.
//!
//! The connection task reads the client's frames; a writer task drains the
//! connection's [`Outbox`]; each subscription runs in a task of its own
//! (see [`crate::follow`]). Nothing the client sends — malformed JSON, an
//! unknown frame, an oversized message — ends the connection or touches
//! its other subscriptions: it gets an `error` frame.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use longrun_shared::auth::{AuthError, Principal, unix_now};
use longrun_shared::store::transitions::is_valid_id;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::follow::{self, Sink, Start};
use crate::outbox::Outbox;
use crate::protocol::{ClientFrame, MAX_CLIENT_FRAME, ServerFrame, close, error_frame};
use crate::{Gateway, OwnerSlot};

/// How long a connection without a token may wait before its `auth` frame.
const AUTH_WINDOW: Duration = Duration::from_secs(10);
/// Keys of subscriptions in the connection's table.
const OWNER_SELF: &str = "owner:self";
/// Longest a token is taken to live (100 years): far enough to never matter,
/// near enough that `now + it` cannot overflow an `Instant`.
const MAX_TOKEN_LIFE_S: u64 = 100 * 365 * 86_400;

enum Control {
    Ping,
    Close(u16, &'static str),
}

struct Connection {
    gateway: Gateway,
    principal: Option<Principal>,
    slot: Option<OwnerSlot>,
    sink: Sink,
    control: mpsc::UnboundedSender<Control>,
    subscriptions: HashMap<String, JoinHandle<()>>,
}

/// Serves one upgraded connection until it closes.
pub async fn serve(
    socket: WebSocket,
    gateway: Gateway,
    principal: Option<Principal>,
    slot: Option<OwnerSlot>,
) {
    let config = &gateway.config.realtime;
    let outbox = Outbox::new(config.queue_soft, config.queue_hard);
    let overflow = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (sender, mut receiver) = socket.split();
    let writer = tokio::spawn(write_loop(sender, outbox.clone(), control_rx));
    metrics::gauge!("longrun_ws_connections").increment(1.0);
    let mut connection = Connection {
        principal,
        slot,
        sink: Sink {
            outbox: outbox.clone(),
            overflow: overflow.clone(),
        },
        control: control_tx,
        subscriptions: HashMap::new(),
        gateway: gateway.clone(),
    };
    let ping_every = config.ping_interval;
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let auth_deadline = Instant::now() + AUTH_WINDOW;
    let reason: (u16, &'static str) = loop {
        let expiry = connection.expiry();
        tokio::select! {
            _ = gateway.shutdown.cancelled() => break (close::GOING_AWAY, "the gateway is restarting; reconnect"),
            _ = overflow.cancelled() => break (close::TOO_SLOW, "the client fell too far behind"),
            _ = tokio::time::sleep_until(expiry.unwrap_or(auth_deadline)) => {
                break (close::UNAUTHORIZED, if expiry.is_some() { "the token expired" } else { "no auth frame within 10 s" });
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    break (close::GOING_AWAY, "no answer to pings");
                }
                let _ = connection.control.send(Control::Ping);
            }
            message = receiver.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(code) = connection.on_text(&text).await {
                            break code;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        connection.sink.send_text(error_frame("bad_request", "frames are JSON text", None));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break (1000, ""),
                    Some(Err(err)) => {
                        debug!(error = %err, "connection read failed");
                        break read_error_close(&err);
                    }
                }
            }
        }
    };
    for (_, task) in connection.subscriptions.drain() {
        task.abort();
    }
    if reason.0 != 1000 {
        metrics::counter!("longrun_ws_closed_total", "code" => reason.0.to_string()).increment(1);
        // Frames still queued are dropped: the close must not wait behind them.
        outbox.close();
        let _ = connection.control.send(Control::Close(reason.0, reason.1));
    } else {
        outbox.close();
    }
    drop(connection);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    metrics::gauge!("longrun_ws_connections").decrement(1.0);
}

/// The close code for a message the socket could not read (RFC 6455 §7.4.1):
/// 1009 past the size bound, 1007 for a text frame that is not UTF-8, 1002
/// for other protocol violations; a plain close when the peer just went away.
/// axum exposes tungstenite's error only as text, whose prefixes are stable.
fn read_error_close(err: &axum::Error) -> (u16, &'static str) {
    let text = err.to_string();
    if text.starts_with("Space limit exceeded") {
        (
            close::MESSAGE_TOO_BIG,
            "the message is larger than the gateway accepts",
        )
    } else if text.starts_with("UTF-8 encoding error") {
        (close::INVALID_DATA, "text frames must be UTF-8")
    } else if text.starts_with("WebSocket protocol error") {
        (close::PROTOCOL_ERROR, "WebSocket protocol violation")
    } else {
        (1000, "")
    }
}

async fn write_loop(
    mut sender: futures_util::stream::SplitSink<WebSocket, Message>,
    outbox: std::sync::Arc<Outbox>,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    loop {
        let message = tokio::select! {
            biased;
            command = control.recv() => match command {
                Some(Control::Ping) => Message::Ping(Default::default()),
                Some(Control::Close(code, reason)) => {
                    let _ = sender
                        .send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) })))
                        .await;
                    let _ = sender.close().await;
                    return;
                }
                None => {
                    let _ = sender.close().await;
                    return;
                }
            },
            frame = outbox.pop() => match frame {
                Some(frame) => Message::Text(frame.text),
                None => {
                    // Closed: wait for the close frame (if any) from control.
                    if let Some(Control::Close(code, reason)) = control.recv().await {
                        let _ = sender
                            .send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) })))
                            .await;
                    }
                    let _ = sender.close().await;
                    return;
                }
            },
        };
        if sender.send(message).await.is_err() {
            outbox.close();
            return;
        }
    }
}

impl Connection {
    /// When the token stops being valid. A token may be signed to expire in
    /// billions of years: the instant is capped instead of overflowing.
    fn expiry(&self) -> Option<Instant> {
        let principal = self.principal.as_ref()?;
        let left = principal
            .expires_at
            .saturating_sub(unix_now())
            .min(MAX_TOKEN_LIFE_S);
        Some(Instant::now() + Duration::from_secs(left))
    }

    fn error(&self, code: &str, message: &str, operation_id: Option<&str>) {
        self.sink
            .send_text(error_frame(code, message, operation_id));
    }

    /// Handles one text frame; `Some(close code)` ends the connection.
    async fn on_text(&mut self, text: &str) -> Option<(u16, &'static str)> {
        if text.len() > MAX_CLIENT_FRAME {
            self.error(
                "bad_request",
                &format!("frames are limited to {MAX_CLIENT_FRAME} bytes"),
                None,
            );
            return None;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(err) => {
                self.error(
                    "bad_request",
                    &format!("not a frame of the protocol: {err}"),
                    None,
                );
                return None;
            }
        };
        match frame {
            ClientFrame::Auth { token } => return self.authenticate(&token),
            ClientFrame::Ping {} => {
                self.sink.send_text(ServerFrame::Pong {}.to_json());
            }
            _ if self.principal.is_none() => {
                self.error(
                    "unauthorized",
                    "send an auth frame with a token first",
                    None,
                );
            }
            ClientFrame::Subscribe {
                operation_id: Some(id),
                owner: None,
                after_seq,
            } => self.subscribe_operation(id, after_seq).await,
            ClientFrame::Subscribe {
                operation_id: None,
                owner: Some(owner),
                after_seq: None,
            } => self.subscribe_owner(&owner),
            ClientFrame::Unsubscribe {
                operation_id: Some(id),
                owner: None,
            } => self.unsubscribe(&id),
            ClientFrame::Unsubscribe {
                operation_id: None,
                owner: Some(owner),
            } if owner == "self" => self.unsubscribe(OWNER_SELF),
            _ => self.error(
                "bad_request",
                "give either operation_id (optionally with after_seq) or owner: \"self\"",
                None,
            ),
        }
        None
    }

    fn authenticate(&mut self, token: &str) -> Option<(u16, &'static str)> {
        match self.gateway.verifier.verify(token) {
            Ok(principal) => {
                if let Some(current) = &self.principal {
                    if current.owner != principal.owner {
                        return Some((
                            close::UNAUTHORIZED,
                            "a refreshed token must keep the same sub",
                        ));
                    }
                } else {
                    match self.gateway.claim_owner_slot(&principal.owner) {
                        Some(slot) => self.slot = Some(slot),
                        None => {
                            return Some((close::TOO_MANY, "too many connections for this owner"));
                        }
                    }
                }
                self.principal = Some(principal);
                None
            }
            Err(AuthError::Expired) => Some((close::UNAUTHORIZED, "the token expired")),
            Err(_) => Some((close::UNAUTHORIZED, "the token is invalid")),
        }
    }

    fn at_limit(&self, key: &str) -> bool {
        !self.subscriptions.contains_key(key)
            && self.subscriptions.len() >= self.gateway.config.realtime.max_subscriptions
    }

    async fn subscribe_operation(&mut self, id: String, after_seq: Option<u64>) {
        self.subscriptions.retain(|_, task| !task.is_finished());
        if self.at_limit(&id) {
            self.error(
                "limit",
                "too many subscriptions on this connection",
                Some(&id),
            );
            return;
        }
        let Some(principal) = &self.principal else {
            return;
        };
        let visible = if is_valid_id(&id) {
            match self.gateway.store.get(&id).await {
                Ok(Some(stored)) if principal.may_access(&stored.operation.owner) => {
                    Some(stored.root)
                }
                Ok(_) => None,
                Err(_) => {
                    self.error(
                        "unavailable",
                        "the operation store is unreachable; retry",
                        Some(&id),
                    );
                    return;
                }
            }
        } else {
            None
        };
        let Some(root) = visible else {
            self.error("not_found", "no such operation", Some(&id));
            return;
        };
        let start = after_seq.map_or(Start::Current, Start::AfterSeq);
        let task = spawn_counted(follow::follow_operation(
            self.gateway.store.clone(),
            self.gateway.relay.clone(),
            root,
            id.clone(),
            start,
            self.sink.clone(),
        ));
        if let Some(previous) = self.subscriptions.insert(id, task) {
            previous.abort();
        }
    }

    fn subscribe_owner(&mut self, owner: &str) {
        if owner != "self" {
            self.error("bad_request", "owner must be \"self\"", None);
            return;
        }
        let Some(principal) = &self.principal else {
            return;
        };
        if self.subscriptions.contains_key(OWNER_SELF) {
            return;
        }
        if self.at_limit(OWNER_SELF) {
            self.error("limit", "too many subscriptions on this connection", None);
            return;
        }
        let task = spawn_counted(follow::follow_owner(
            self.gateway.store.clone(),
            self.gateway.relay.clone(),
            principal.owner.clone(),
            self.sink.clone(),
        ));
        self.subscriptions.insert(OWNER_SELF.to_owned(), task);
    }

    fn unsubscribe(&mut self, key: &str) {
        if let Some(task) = self.subscriptions.remove(key) {
            task.abort();
        }
    }
}

/// Counts a subscription in the gauge for as long as its task lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        metrics::gauge!("longrun_ws_subscriptions").increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("longrun_ws_subscriptions").decrement(1.0);
    }
}

fn spawn_counted(task: impl std::future::Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    let counted = Counted::new();
    tokio::spawn(async move {
        let _counted = counted;
        task.await;
    })
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
    }
}
