//! [`Watch`]: one operation's events over the WebSocket, with automatic
//! reconnect.
//!
//! The first connection subscribes as asked (with `after_seq`, or without
//! to start from the current resource); every reconnect subscribes with
//! `after_seq` = the last seq handed out, and events at or below it are
//! dropped, so the events handed out are the log's, in order, each once,
//! however often the connection drops. The client pings the gateway and
//! treats a silent connection as a dropped one, so a half-open socket
//! cannot stall a watch.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use longrun_shared::model::{Event, EventFrame, Operation};
use longrun_shared::problem::Code;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{Client, Result};
use crate::error::{ClientError, problem};
use crate::poll::backoff;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The close code of a refused or expired token.
const CLOSE_UNAUTHORIZED: u16 = 4001;

/// How a [`Watch`] keeps its connection.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Give up when reconnecting has failed for this long in a row
    /// (default 60 s). The first connection is not retried when the
    /// gateway cannot be reached at all: a wrong URL fails at once.
    pub give_up_after: Duration,
    /// Send a `ping` frame this often (default 15 s).
    pub ping_interval: Duration,
    /// Reconnect when nothing arrived for this long (default 45 s).
    pub idle_timeout: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            give_up_after: Duration::from_secs(60),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
        }
    }
}

/// What [`Watch::next_update`] brings: an event, or news about the
/// connection for a caller that shows it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchUpdate {
    /// The next event of the operation (seq one more than the last, unless
    /// the gateway coalesced progress for a slow reader).
    Event(Event),
    /// The connection dropped; the watch is reconnecting.
    Disconnected {
        /// Why, as far as the client knows.
        reason: String,
    },
    /// The connection is back and resubscribed after the last seq.
    Reconnected,
    /// The gateway said something worth showing, e.g. code `gap`: events
    /// older than the retention period are no longer kept.
    Notice {
        /// The `error` frame's code.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A live, resumable stream of one operation's events, made by
/// [`Client::watch`].
///
/// ```no_run
/// # async fn demo(client: longrun_client::Client, id: &str) -> longrun_client::Result<()> {
/// use longrun_client::WatchUpdate;
///
/// let mut watch = client.watch(id, None);
/// while let Some(update) = watch.next_update().await? {
///     match update {
///         WatchUpdate::Event(event) => println!("{} {:?}", event.seq, event.event_type),
///         WatchUpdate::Disconnected { reason } => eprintln!("reconnecting: {reason}"),
///         other => eprintln!("{other:?}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Watch {
    client: Client,
    id: String,
    /// Events up to here were handed out (`None`: not subscribed yet, and
    /// the caller asked to start from the current state).
    last: Option<u64>,
    socket: Option<Socket>,
    pending: VecDeque<WatchUpdate>,
    snapshot: Option<Operation>,
    finished: bool,
    connected_once: bool,
    reconnects: u32,
    last_heard: Instant,
    last_ping: Instant,
    options: WatchOptions,
}

impl Watch {
    pub(crate) fn new(
        client: Client,
        id: String,
        after_seq: Option<u64>,
        options: WatchOptions,
    ) -> Self {
        Watch {
            client,
            id,
            last: after_seq,
            socket: None,
            pending: VecDeque::new(),
            snapshot: None,
            finished: false,
            connected_once: false,
            reconnects: 0,
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            options,
        }
    }

    /// The id of the operation watched.
    pub fn operation_id(&self) -> &str {
        &self.id
    }

    /// The seq of the last event handed out (or of the snapshot).
    pub fn last_seq(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    /// The resource the server sent when subscribing without `after_seq`.
    pub fn snapshot(&self) -> Option<&Operation> {
        self.snapshot.as_ref()
    }

    /// How many times the connection was re-established.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }

    /// The next event; `None` after the terminal one (or at once when the
    /// operation was already done when watching started without `after_seq`).
    /// Reconnects happen inside; an error means the watch cannot go on:
    /// the token was refused or expired, the operation does not exist, or
    /// the gateway stayed unreachable for [`WatchOptions::give_up_after`].
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            match self.next_update().await? {
                Some(WatchUpdate::Event(event)) => return Ok(Some(event)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Like [`next`](Self::next), but also tells when the connection drops
    /// and comes back, and passes on the gateway's notices.
    pub async fn next_update(&mut self) -> Result<Option<WatchUpdate>> {
        loop {
            if let Some(update) = self.pending.pop_front() {
                return Ok(Some(update));
            }
            if self.finished {
                if let Some(mut socket) = self.socket.take() {
                    let _ = socket.close(None).await;
                }
                return Ok(None);
            }
            if self.socket.is_none() {
                self.connect().await?;
                continue;
            }
            self.read().await?;
        }
    }

    /// The events as a [`Stream`]; it ends after the terminal event, or
    /// after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event>> + Send {
        futures_util::stream::unfold(Some(self), |watch| async move {
            let mut watch = watch?;
            match watch.next().await {
                Ok(Some(event)) => Some((Ok(event), Some(watch))),
                Ok(None) => None,
                Err(err) => Some((Err(err), None)),
            }
        })
    }

    /// Reads one message (or sends a ping, or notices silence).
    async fn read(&mut self) -> Result<()> {
        let Some(socket) = self.socket.as_mut() else {
            return Ok(());
        };
        let idle_at = self.last_heard + self.options.idle_timeout;
        let ping_at = self.last_heard.max(self.last_ping) + self.options.ping_interval;
        let message = tokio::select! {
            message = socket.next() => message,
            _ = tokio::time::sleep_until(ping_at) => {
                let ping = Message::text(json!({"type": "ping"}).to_string());
                self.last_ping = Instant::now();
                if socket.send(ping).await.is_err() {
                    self.disconnected("the connection broke".into());
                }
                return Ok(());
            }
            _ = tokio::time::sleep_until(idle_at) => {
                let seconds = self.options.idle_timeout.as_secs();
                self.disconnected(format!("no answer from the gateway for {seconds} s"));
                return Ok(());
            }
        };
        self.last_heard = Instant::now();
        match message {
            Some(Ok(Message::Text(text))) => self.on_frame(text.as_str())?,
            Some(Ok(Message::Close(frame))) => self.on_close(frame)?,
            Some(Ok(_)) => {}
            Some(Err(err)) => self.disconnected(crate::client::root_cause(&err)),
            None => self.disconnected("the gateway closed the connection".into()),
        }
        Ok(())
    }

    fn on_close(&mut self, frame: Option<CloseFrame>) -> Result<()> {
        let Some(frame) = frame else {
            self.disconnected("the gateway closed the connection".into());
            return Ok(());
        };
        if frame.code == CloseCode::Library(CLOSE_UNAUTHORIZED) {
            self.socket = None;
            return Err(problem(
                Code::Unauthorized,
                format!("the gateway closed the connection: {}", frame.reason),
            ));
        }
        let reason = if frame.reason.is_empty() {
            format!(
                "the gateway closed the connection ({})",
                u16::from(frame.code)
            )
        } else {
            frame.reason.to_string()
        };
        self.disconnected(reason);
        Ok(())
    }

    fn disconnected(&mut self, reason: String) {
        self.socket = None;
        if !self.finished {
            self.pending.push_back(WatchUpdate::Disconnected { reason });
        }
    }

    /// Handles one text frame from the gateway.
    fn on_frame(&mut self, text: &str) -> Result<()> {
        let value: Value = serde_json::from_str(text)
            .map_err(|err| ClientError::Protocol(format!("a frame is not JSON: {err}")))?;
        let about_other = value["operation_id"]
            .as_str()
            .is_some_and(|id| id != self.id);
        match value["type"].as_str() {
            Some("event") if !about_other => self.on_event(value),
            Some("subscribed") if !about_other => {
                let operation: Operation = serde_json::from_value(value["operation"].clone())
                    .map_err(|err| ClientError::Protocol(format!("a subscribed frame: {err}")))?;
                if self.last.is_none() {
                    self.last = Some(operation.seq);
                    self.finished = operation.done;
                }
                self.snapshot = Some(operation);
                Ok(())
            }
            Some("error") => self.on_error(&value),
            _ => Ok(()),
        }
    }

    fn on_event(&mut self, value: Value) -> Result<()> {
        let frame: EventFrame = serde_json::from_value(value)
            .map_err(|err| ClientError::Protocol(format!("an event frame: {err}")))?;
        if self.last.is_some_and(|last| frame.seq <= last) {
            return Ok(());
        }
        self.last = Some(frame.seq);
        if frame.event.is_terminal() {
            self.finished = true;
        }
        self.pending
            .push_back(WatchUpdate::Event(frame.into_event()));
        Ok(())
    }

    fn on_error(&mut self, value: &Value) -> Result<()> {
        let code = value["code"].as_str().unwrap_or("");
        let message = value["message"].as_str().unwrap_or("").to_owned();
        match code {
            "not_found" => Err(problem(Code::NotFound, message)),
            "unauthorized" => Err(problem(Code::Unauthorized, message)),
            "bad_request" | "limit" => Err(problem(Code::BadRequest, message)),
            _ => {
                // `gap` (log trimmed by retention), `unavailable` (Redis
                // away; the gateway catches up by itself) and the like.
                self.pending.push_back(WatchUpdate::Notice {
                    code: code.to_owned(),
                    message,
                });
                Ok(())
            }
        }
    }

    /// Connects and subscribes; a reconnect retries until it works or has
    /// failed for `give_up_after`.
    async fn connect(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            match self.try_connect().await {
                Ok(socket) => {
                    self.socket = Some(socket);
                    self.last_heard = Instant::now();
                    self.last_ping = self.last_heard;
                    if self.connected_once {
                        self.reconnects += 1;
                        self.pending.push_back(WatchUpdate::Reconnected);
                    }
                    self.connected_once = true;
                    return Ok(());
                }
                Err(err) => {
                    let retry = err.is_transient()
                        && (self.connected_once || !matches!(err, ClientError::Connection { .. }))
                        && started.elapsed() < self.options.give_up_after;
                    if !retry {
                        return Err(err);
                    }
                    failures += 1;
                    let delay = err.retry_after().unwrap_or_else(|| backoff(failures));
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn try_connect(&self) -> Result<Socket> {
        let url = format!("{}/v1/ws", self.client.ws_url());
        let connection_error = |message: String| ClientError::Connection {
            url: url.clone(),
            message,
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|err| ClientError::Protocol(format!("bad gateway URL {url}: {err}")))?;
        let bearer = format!("Bearer {}", self.client.token())
            .parse()
            .map_err(|_| problem(Code::Unauthorized, "the token is not valid header text"))?;
        request.headers_mut().insert("authorization", bearer);
        let connecting = tokio_tungstenite::connect_async(request);
        let (mut socket, _) = match tokio::time::timeout(Duration::from_secs(10), connecting).await
        {
            Err(_) => return Err(connection_error("no answer in time".into())),
            Ok(Ok(connected)) => connected,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response.body().clone().unwrap_or_default();
                return Err(crate::error::error_from_response(
                    status,
                    retry_after.as_deref(),
                    &body,
                ));
            }
            Ok(Err(err)) => return Err(connection_error(crate::client::root_cause(&err))),
        };
        let subscribe = match self.last {
            Some(after_seq) => {
                json!({"type": "subscribe", "operation_id": self.id, "after_seq": after_seq})
            }
            None => json!({"type": "subscribe", "operation_id": self.id}),
        };
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .map_err(|err| connection_error(err.to_string()))?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0193a3f6-0000-7000-8000-000000000001";

    fn watch(after_seq: Option<u64>) -> Watch {
        let client = Client::new("http://127.0.0.1:1", "ws://127.0.0.1:1", "token");
        client.watch(ID, after_seq)
    }

    fn event(seq: u64, event: &str) -> String {
        json!({"type": "event", "operation_id": ID, "seq": seq, "event": event,
               "at": "2026-11-24T10:00:00Z", "data": {}})
        .to_string()
    }

    fn seqs(watch: &mut Watch) -> Vec<u64> {
        watch
            .pending
            .drain(..)
            .filter_map(|update| match update {
                WatchUpdate::Event(event) => Some(event.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn events_at_or_below_the_last_seq_are_dropped() {
        let mut watch = watch(Some(2));
        for seq in [1, 2, 3, 4, 3, 4, 5] {
            watch.on_frame(&event(seq, "progress")).expect("handled");
        }
        assert_eq!(seqs(&mut watch), [3, 4, 5]);
        assert_eq!(watch.last_seq(), 5);
        assert!(!watch.finished);
    }

    #[test]
    fn the_terminal_event_finishes_the_watch() {
        let mut watch = watch(Some(0));
        watch.on_frame(&event(1, "created")).expect("handled");
        watch.on_frame(&event(2, "cancelled")).expect("handled");
        assert!(watch.finished);
        assert_eq!(seqs(&mut watch), [1, 2]);
    }

    #[test]
    fn subscribing_without_after_seq_starts_after_the_snapshot() {
        let mut watch = watch(None);
        let operation = json!({
            "id": ID, "kind": "demo.sleep", "status": "running", "done": false,
            "progress": {"percent": 40.0, "message": null, "data": null},
            "attempt": 1, "max_attempts": 3, "parent_id": null,
            "children": {"total": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
            "result": null, "error": null, "created_at": "x", "started_at": null,
            "finished_at": null, "updated_at": "x", "seq": 6, "owner": "alice"
        });
        let subscribed = json!({"type": "subscribed", "operation_id": ID, "operation": operation});
        watch.on_frame(&subscribed.to_string()).expect("handled");
        assert_eq!(watch.last_seq(), 6);
        assert_eq!(watch.snapshot().map(|op| op.progress.percent), Some(40.0));
        watch.on_frame(&event(6, "progress")).expect("handled");
        watch.on_frame(&event(7, "progress")).expect("handled");
        assert_eq!(seqs(&mut watch), [7]);
    }

    #[test]
    fn frames_about_other_operations_are_ignored() {
        let mut watch = watch(Some(0));
        let other = event(1, "created").replace(ID, "0193a3f6-0000-7000-8000-00000000ffff");
        watch.on_frame(&other).expect("handled");
        assert!(watch.pending.is_empty());
        assert_eq!(watch.last_seq(), 0);
    }

    #[test]
    fn refusals_end_the_watch_and_notices_do_not() {
        let mut watch = watch(Some(0));
        let missing = json!({"type": "error", "code": "not_found", "message": "no such operation", "operation_id": ID});
        let err = watch
            .on_frame(&missing.to_string())
            .expect_err("not found ends it");
        assert_eq!(err.code(), Some(Code::NotFound));

        let gap =
            json!({"type": "error", "code": "gap", "message": "events 1 to 3 are no longer kept"});
        watch.on_frame(&gap.to_string()).expect("a gap is a notice");
        assert_eq!(
            watch.pending.pop_front(),
            Some(WatchUpdate::Notice {
                code: "gap".into(),
                message: "events 1 to 3 are no longer kept".into()
            })
        );
        let err = watch.on_frame("not json").expect_err("garbage");
        assert!(matches!(err, ClientError::Protocol(_)));
    }

    #[test]
    fn an_expired_token_close_is_an_auth_error_and_a_restart_is_not() {
        let mut watch = watch(Some(3));
        let expired = CloseFrame {
            code: CloseCode::Library(4001),
            reason: "the token expired".into(),
        };
        let err = watch.on_close(Some(expired)).expect_err("4001 ends it");
        assert!(err.is_unauthorized());
        assert!(err.to_string().contains("the token expired"), "{err}");

        let restart = CloseFrame {
            code: CloseCode::Away,
            reason: "the gateway is restarting; reconnect".into(),
        };
        watch.on_close(Some(restart)).expect("1001 reconnects");
        assert_eq!(
            watch.pending.pop_front(),
            Some(WatchUpdate::Disconnected {
                reason: "the gateway is restarting; reconnect".into()
            })
        );
    }

    #[tokio::test]
    async fn an_unreachable_gateway_fails_the_first_connection_at_once() {
        let mut watch = watch(Some(0));
        let started = std::time::Instant::now();
        let err = watch.next().await.expect_err("nothing listens on port 1");
        assert!(matches!(err, ClientError::Connection { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
