//! One WebSocket connection: authentication, the client's frames, its
//! subscriptions, keepalive and closing.
//!
//! The connection task reads the client's frames and never waits on Redis
//! or on the client's socket: a writer task drains the connection's
//! [`Outbox`] ([`crate::writer`]), and each subscription runs in a task of
//! its own ([`crate::follow`], [`crate::owner`]). Nothing the client sends
//! — malformed JSON, an unknown frame, an oversized frame — ends the
//! connection or touches its other subscriptions: it gets an `error`
//! frame. Only a message too big to read at all (over
//! [`MAX_SOCKET_MESSAGE`](crate::protocol::MAX_SOCKET_MESSAGE)) closes it, with 1009.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use longrun_shared::auth::{AuthError, Principal};
use longrun_shared::store::transitions::is_valid_id;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::debug;

use crate::admission::Slot;
use crate::follow::{self, Sink, Start};
use crate::meter;
use crate::outbox::{End, Outbox, Outgoing, Source, Trouble};
use crate::owner;
use crate::protocol::{
    ClientFrame, MAX_CLIENT_FRAME, ServerFrame, close, code, error_frame, operation_id_of,
};
use crate::{Gateway, writer};

/// How long a connection without a token may wait for its `auth` frame.
const AUTH_WINDOW: Duration = Duration::from_secs(10);
/// Longest a token is taken to live (100 years): far enough to never matter,
/// near enough that `now + it` cannot overflow an `Instant`.
const MAX_TOKEN_LIFE: Duration = Duration::from_secs(100 * 365 * 86_400);
/// How long the writer gets to send the close frame before it is stopped.
const WRITER_GRACE: Duration = Duration::from_secs(3);
/// The key of the `owner: "self"` subscription in a connection's table
/// (operation ids are UUIDs, so it cannot collide).
const OWNER_SELF: &str = "owner:self";

/// How a connection got past the upgrade.
#[derive(Debug)]
pub enum Admitted {
    /// With a valid token, counted against its owner.
    Authenticated { principal: Principal, slot: Slot },
    /// Without a token: an `auth` frame must follow within 10 s.
    Anonymous { slot: Slot },
}

struct Subscription {
    source: Source,
    task: JoinHandle<()>,
}

struct Connection {
    gateway: Gateway,
    principal: Option<Principal>,
    /// Held: counts this connection against its owner (or the anonymous pool).
    _admission: Slot,
    opened: Instant,
    outbox: Arc<Outbox>,
    subscriptions: HashMap<String, Subscription>,
    last_source: Source,
}

/// Serves one upgraded connection until it closes.
pub async fn serve(socket: WebSocket, gateway: Gateway, admitted: Admitted) {
    let _gauge = meter::ConnectionGauge::open();
    let settings = &gateway.config.realtime;
    let ping_every = settings.ping_interval;
    let outbox = Outbox::new(settings.queue_soft, settings.queue_hard);
    let (sender, mut receiver) = socket.split();
    let mut writer = tokio::spawn(writer::run(sender, outbox.clone(), ping_every * 2));
    let (principal, slot) = match admitted {
        Admitted::Authenticated { principal, slot } => (Some(principal), slot),
        Admitted::Anonymous { slot } => (None, slot),
    };
    let mut connection = Connection {
        gateway: gateway.clone(),
        principal,
        _admission: slot,
        opened: Instant::now(),
        outbox: outbox.clone(),
        subscriptions: HashMap::new(),
        last_source: 0,
    };
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let end = loop {
        let (deadline, expired) = connection.deadline();
        tokio::select! {
            _ = gateway.shutdown.cancelled() => {
                break End::Close(close::GOING_AWAY, "the gateway is restarting; reconnect");
            }
            trouble = outbox.trouble() => break match trouble {
                Trouble::Overflow | Trouble::Stalled => End::Close(close::TOO_SLOW, "the client fell too far behind; reconnect with after_seq"),
                Trouble::WriterGone => End::Finish,
            },
            _ = tokio::time::sleep_until(deadline) => break End::Close(close::UNAUTHORIZED, expired),
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    break End::Close(close::GOING_AWAY, "no answer to pings");
                }
                outbox.request_ping();
            }
            message = receiver.next() => {
                last_heard = Instant::now();
                match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(end) = connection.on_text(text.as_str()) {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        connection.error(code::BAD_REQUEST, "frames are JSON text, not binary", None);
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break End::Finish,
                    Some(Err(err)) => break read_failed(err),
                }
            }
        }
    };
    connection.stop_all();
    if let End::Close(code, _) = end {
        meter::closed(code);
    } else {
        meter::closed(close::NORMAL);
    }
    outbox.end(end);
    drop(connection);
    // The closing handshake: the writer sends the close frame, then the
    // peer's answer is read before the socket goes, so a client that was
    // writing meanwhile still reads the close code (not a reset).
    let closing = async {
        let _ = (&mut writer).await;
        if matches!(end, End::Close(..)) {
            while let Some(Ok(message)) = receiver.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    if tokio::time::timeout(WRITER_GRACE, closing).await.is_err() {
        // The client stopped reading: its close frame cannot get through.
        writer.abort();
    }
}

/// A failed read closes with its RFC 6455 code (§7.4.1): 1009 past the
/// size bound, 1007 for a text frame that is not UTF-8, 1002 for other
/// protocol violations; anything else means the peer is gone.
fn read_failed(err: axum::Error) -> End {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let source = err.into_inner();
    match source.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => End::Close(close::TOO_BIG, "message too big"),
        Some(WsError::Utf8(_)) => End::Close(close::INVALID_DATA, "text frames must be UTF-8"),
        Some(WsError::Protocol(_)) => {
            End::Close(close::PROTOCOL_ERROR, "WebSocket protocol violation")
        }
        _ => {
            debug!(error = %source, "connection read failed");
            End::Finish
        }
    }
}

impl Connection {
    /// When the connection must have a (new) token, and what to say then.
    fn deadline(&self) -> (Instant, &'static str) {
        match &self.principal {
            None => (self.opened + AUTH_WINDOW, "no auth frame within 10 s"),
            Some(principal) => (instant_of(principal.expires_at), "the token expired"),
        }
    }

    fn error(&self, code: &str, message: &str, operation_id: Option<&str>) {
        self.outbox.push(Outgoing::notice(
            error_frame(code, message, operation_id),
            0,
        ));
    }

    /// Handles one text frame; `Some` ends the connection.
    fn on_text(&mut self, text: &str) -> Option<End> {
        if text.len() > MAX_CLIENT_FRAME {
            self.error(
                code::BAD_REQUEST,
                &format!("frames are limited to {MAX_CLIENT_FRAME} bytes"),
                None,
            );
            return None;
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(err) => {
                let id = operation_id_of(text);
                self.error(
                    code::BAD_REQUEST,
                    &format!("not a frame of the protocol: {err}"),
                    id.as_deref(),
                );
                return None;
            }
        };
        match frame {
            ClientFrame::Auth { token } => return self.authenticate(&token),
            ClientFrame::Ping {} => {
                self.outbox
                    .push(Outgoing::notice(ServerFrame::Pong {}.to_json(), 0));
            }
            ClientFrame::Subscribe { operation_id, .. }
            | ClientFrame::Unsubscribe { operation_id, .. }
                if self.principal.is_none() =>
            {
                self.error(
                    code::UNAUTHORIZED,
                    "send an auth frame with a token first",
                    operation_id.as_deref(),
                );
            }
            ClientFrame::Subscribe {
                operation_id: Some(id),
                owner: None,
                after_seq,
            } => self.subscribe_operation(id, after_seq),
            ClientFrame::Subscribe {
                operation_id: None,
                owner: Some(owner),
                after_seq: None,
            } if owner == "self" => self.subscribe_owner(),
            ClientFrame::Unsubscribe {
                operation_id: Some(id),
                owner: None,
            } => self.unsubscribe(&id),
            ClientFrame::Unsubscribe {
                operation_id: None,
                owner: Some(owner),
            } if owner == "self" => self.unsubscribe(OWNER_SELF),
            ClientFrame::Subscribe { operation_id, .. }
            | ClientFrame::Unsubscribe { operation_id, .. } => {
                self.error(
                    code::BAD_REQUEST,
                    "give either operation_id (optionally with after_seq) or owner: \"self\"",
                    operation_id.as_deref(),
                );
            }
        }
        None
    }

    /// A first token, or a refresh of the current one.
    fn authenticate(&mut self, token: &str) -> Option<End> {
        let principal = match self.gateway.verifier.verify(token) {
            Ok(principal) => principal,
            Err(AuthError::Expired) => {
                return Some(End::Close(close::UNAUTHORIZED, "the token expired"));
            }
            Err(_) => return Some(End::Close(close::UNAUTHORIZED, "the token is invalid")),
        };
        match &self.principal {
            Some(current) if current.owner != principal.owner => {
                return Some(End::Close(
                    close::UNAUTHORIZED,
                    "a refreshed token must keep the same sub",
                ));
            }
            Some(_) => {}
            None => match self.gateway.admission.owner(&principal.owner) {
                // Leaves the anonymous pool for the owner's.
                Some(slot) => self._admission = slot,
                None => {
                    return Some(End::Close(
                        close::TOO_MANY,
                        "too many connections for this owner",
                    ));
                }
            },
        }
        self.principal = Some(principal);
        None
    }

    /// A new subscription number (0 is the connection's own frames).
    fn next_source(&mut self) -> Source {
        self.last_source = self.last_source.wrapping_add(1).max(1);
        self.last_source
    }

    /// Makes room for a subscription under `key` and counts it against
    /// the owner: stops the one it replaces, forgets finished ones. `None`
    /// (after an `error` frame `limit`) when the connection or the owner
    /// holds too many.
    fn admit(&mut self, key: &str, operation_id: Option<&str>) -> Option<Slot> {
        let owner = self.principal.as_ref()?.owner.clone();
        let replaces = match self.subscriptions.remove(key) {
            Some(previous) => {
                self.stop(previous);
                true
            }
            None => false,
        };
        if !replaces {
            self.subscriptions.retain(|_, sub| !sub.task.is_finished());
            if self.subscriptions.len() >= self.gateway.config.realtime.max_subscriptions {
                let message = "too many subscriptions on this connection";
                self.error(code::LIMIT, message, operation_id);
                return None;
            }
        }
        let slot = self.gateway.admission.subscription(&owner, replaces);
        if slot.is_none() {
            let message = "too many subscriptions for this owner";
            self.error(code::LIMIT, message, operation_id);
        }
        slot
    }

    fn subscribe_operation(&mut self, id: String, after_seq: Option<u64>) {
        let Some(viewer) = self.principal.clone() else {
            return;
        };
        if !is_valid_id(&id) {
            self.error(code::NOT_FOUND, "no such operation", Some(&id));
            return;
        }
        let Some(slot) = self.admit(&id, Some(&id)) else {
            return;
        };
        let source = self.next_source();
        let sink = Sink {
            outbox: self.outbox.clone(),
            source,
        };
        let start = after_seq.map_or(Start::Current, Start::AfterSeq);
        let following =
            follow::follow_operation(self.gateway.clone(), viewer, id.clone(), start, sink);
        let task = tokio::spawn(async move {
            // Counted against the owner until the subscription ends.
            let _slot = slot;
            following.await;
        });
        self.subscriptions.insert(id, Subscription { source, task });
    }

    fn subscribe_owner(&mut self) {
        let Some(principal) = &self.principal else {
            return;
        };
        let owner = principal.owner.clone();
        if self
            .subscriptions
            .get(OWNER_SELF)
            .is_some_and(|sub| !sub.task.is_finished())
        {
            // Already following everything of this owner.
            return;
        }
        let Some(slot) = self.admit(OWNER_SELF, None) else {
            return;
        };
        let source = self.next_source();
        let sink = Sink {
            outbox: self.outbox.clone(),
            source,
        };
        let since_ms = owner::unix_ms_now();
        let following = owner::follow_owner(self.gateway.clone(), owner, since_ms, sink);
        let task = tokio::spawn(async move {
            let _slot = slot;
            following.await;
        });
        self.subscriptions
            .insert(OWNER_SELF.to_owned(), Subscription { source, task });
    }

    /// Ends a subscription; frames it queued but not sent are dropped.
    fn unsubscribe(&mut self, key: &str) {
        if let Some(subscription) = self.subscriptions.remove(key) {
            self.stop(subscription);
        }
    }

    fn stop(&self, subscription: Subscription) {
        subscription.task.abort();
        self.outbox.purge(subscription.source);
    }

    fn stop_all(&mut self) {
        for (_, subscription) in self.subscriptions.drain() {
            subscription.task.abort();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The instant a token's `expires_at` (seconds since the epoch) falls on.
/// A token may be signed to expire in billions of years: the instant is
/// capped instead of overflowing.
fn instant_of(expires_at: u64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(expires_at)
        .saturating_sub(now)
        .min(MAX_TOKEN_LIFE);
    Instant::now() + left
}
