//! [`Watch`]: one operation's events over the WebSocket, with automatic
//! reconnect.
//!
//! The first connection subscribes as asked (with `after_seq`, or without
//! to start from the current resource); every reconnect subscribes with
//! `after_seq` = the last seq received, so the events handed out are
//! exactly the log's, in order, without gap or duplicate, however often the
//! connection drops.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use longrun_shared::model::{Event, EventFrame, Operation};
use longrun_shared::problem::{Code, Problem};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Client, ClientError, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a [`Watch`] reconnects.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Give up after failing to reconnect for this long in a row.
    pub give_up_after: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            give_up_after: Duration::from_secs(60),
        }
    }
}

/// A live, resumable stream of one operation's events.
#[derive(Debug)]
pub struct Watch {
    client: Client,
    id: String,
    /// Events up to here were handed out (`None`: not subscribed yet, and
    /// the caller asked to start from the current state).
    last: Option<u64>,
    socket: Option<Socket>,
    pending: VecDeque<Event>,
    snapshot: Option<Operation>,
    finished: bool,
    reconnects: u32,
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
            reconnects: 0,
            options,
        }
    }

    /// The seq of the last event handed out.
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

    /// The next event; `None` after the terminal one (or when the operation
    /// was already done when watching started without `after_seq`).
    pub async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
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
            let Some(socket) = self.socket.as_mut() else {
                continue;
            };
            match socket.next().await {
                Some(Ok(Message::Text(text))) => self.on_frame(text.as_str())?,
                Some(Ok(Message::Close(frame))) => {
                    self.socket = None;
                    if let Some(frame) = frame
                        && frame.code == CloseCode::Library(4001)
                    {
                        return Err(unauthorized(&frame.reason));
                    }
                    self.reconnects += 1;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    self.socket = None;
                    self.reconnects += 1;
                }
            }
        }
    }

    fn on_frame(&mut self, text: &str) -> Result<()> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| ClientError::Protocol(err.to_string()))?;
        match value["type"].as_str() {
            Some("event") => {
                let frame: EventFrame = serde_json::from_value(value)
                    .map_err(|err| ClientError::Protocol(err.to_string()))?;
                if self.last.is_some_and(|last| frame.seq <= last) {
                    return Ok(());
                }
                self.last = Some(frame.seq);
                if frame.event.is_terminal() {
                    self.finished = true;
                }
                self.pending.push_back(frame.into_event());
            }
            Some("subscribed") => {
                let operation: Operation = serde_json::from_value(value["operation"].clone())
                    .map_err(|err| ClientError::Protocol(err.to_string()))?;
                if self.last.is_none() {
                    self.last = Some(operation.seq);
                    self.finished = operation.done;
                }
                self.snapshot = Some(operation);
            }
            Some("error") => {
                let code = value["code"].as_str().unwrap_or("");
                let message = value["message"].as_str().unwrap_or("").to_owned();
                match code {
                    "not_found" => return Err(problem(Code::NotFound, message)),
                    "unauthorized" => return Err(problem(Code::Unauthorized, message)),
                    "bad_request" | "limit" => return Err(problem(Code::BadRequest, message)),
                    // gap (log trimmed by retention), resync, unavailable: go on.
                    _ => tracing::debug!(code, message, "gateway notice"),
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn connect(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            match self.try_connect().await {
                Ok(socket) => {
                    self.socket = Some(socket);
                    return Ok(());
                }
                Err(err @ ClientError::Problem { .. }) => return Err(err),
                Err(err) => {
                    if started.elapsed() > self.options.give_up_after {
                        return Err(err);
                    }
                    failures += 1;
                    let delay = 50u64.saturating_mul(1 << failures.min(5)).min(1_000);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
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
            .map_err(|err| connection_error(err.to_string()))?;
        let bearer = format!("Bearer {}", self.client.token())
            .parse()
            .map_err(|_| {
                problem(
                    Code::Unauthorized,
                    "the token is not valid header text".into(),
                )
            })?;
        request.headers_mut().insert("authorization", bearer);
        let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(connected) => connected,
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .and_then(|body| serde_json::from_slice::<Problem>(body).ok());
                return Err(match body {
                    Some(problem) => ClientError::Problem {
                        problem: Box::new(problem),
                        retry_after: None,
                    },
                    None if status == 401 => {
                        problem(Code::Unauthorized, "the gateway refused the token".into())
                    }
                    None => connection_error(format!("upgrade refused with HTTP {status}")),
                });
            }
            Err(err) => return Err(connection_error(crate::root_cause(&err))),
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

fn problem(code: Code, detail: String) -> ClientError {
    ClientError::Problem {
        problem: Box::new(Problem::new(code, detail)),
        retry_after: None,
    }
}

fn unauthorized(reason: &str) -> ClientError {
    problem(
        Code::Unauthorized,
        format!("the gateway closed the connection: {reason}"),
    )
}
