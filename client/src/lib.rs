//! A typed client for longrun: the HTTP API ([`Client`]) and the WebSocket
//! protocol ([`Client::watch`]).
//!
//! ```no_run
//! use longrun_client::{Client, StartOptions};
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), longrun_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8080", "ws://127.0.0.1:8081", "<jwt>");
//! let op = client
//!     .start("demo.sleep", &json!({"duration_ms": 1000, "steps": 10}), &StartOptions::default())
//!     .await?;
//! let mut events = client.watch(&op.id, Some(0));
//! while let Some(event) = events.next().await? {
//!     println!("{} {:?}", event.seq, event.event_type);
//! }
//! let done = client.get(&op.id).await?;
//! assert!(done.done);
//! # Ok(()) }
//! ```
//!
//! Errors carry the server's RFC 9457 problem ([`ClientError::Problem`]),
//! so callers can branch on its `code`.

mod watch;

use std::time::Duration;

use longrun_shared::kinds::KindSpec;
use longrun_shared::model::{EventPage, Operation, OperationPage, Status};
use longrun_shared::problem::{Code, Problem};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use longrun_shared::kinds::{BackoffKind, FailurePolicy};
pub use longrun_shared::model::{Event, EventType};
pub use watch::{Watch, WatchOptions};

/// What can go wrong talking to longrun.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem (4xx/5xx).
    #[error("{} ({}): {}", .problem.title, .problem.code.as_str(), .problem.detail)]
    Problem {
        problem: Box<Problem>,
        retry_after: Option<u64>,
    },
    /// The server could not be reached.
    #[error("cannot reach {url}: {message}")]
    Connection { url: String, message: String },
    /// The server answered something this client does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The problem's code, when the server sent one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Options of a start (sent as query parameters).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub idempotency_key: Option<String>,
    pub max_attempts: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub backoff: Option<BackoffKind>,
    pub backoff_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub failure_policy: Option<FailurePolicy>,
}

/// Filters of [`Client::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub status: Option<Status>,
    pub kind: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
    /// Admins only.
    pub owner: Option<String>,
}

/// A started operation and whether this call started it (202) or an
/// earlier call with the same idempotency key did (200).
#[derive(Debug, Clone)]
pub struct Started {
    pub operation: Operation,
    pub created: bool,
    pub location: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    ws_base: String,
    token: String,
}

#[derive(Deserialize)]
struct KindList {
    kinds: Vec<KindSpec>,
}

impl Client {
    /// A client for the api at `base_url` and the gateway at `ws_url`,
    /// authenticating with `token`.
    pub fn new(base_url: &str, ws_url: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            ws_base: ws_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn ws_url(&self) -> &str {
        &self.ws_base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same client with another token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::Connection {
                url: self.base.clone(),
                message: root_cause(&err),
            })?;
        if response.status().is_client_error() || response.status().is_server_error() {
            return Err(problem_of(response).await);
        }
        Ok(response)
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        response
            .json()
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))
    }

    /// Starts an operation of `kind` (`module.operation`).
    pub async fn start(
        &self,
        kind: &str,
        input: &Value,
        options: &StartOptions,
    ) -> Result<Operation> {
        Ok(self.start_full(kind, input, options).await?.operation)
    }

    /// [`start`](Self::start), telling whether this call created it.
    pub async fn start_full(
        &self,
        kind: &str,
        input: &Value,
        options: &StartOptions,
    ) -> Result<Started> {
        let path = format!("/v1/{}", kind.replacen('.', "/", 1));
        let mut request = self.request(reqwest::Method::POST, &path).json(input);
        if let Some(key) = &options.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let mut query: Vec<(&str, String)> = Vec::new();
        let mut add = |name, value: Option<String>| {
            if let Some(value) = value {
                query.push((name, value));
            }
        };
        add("max_attempts", options.max_attempts.map(|v| v.to_string()));
        add("timeout_ms", options.timeout_ms.map(|v| v.to_string()));
        add("deadline_ms", options.deadline_ms.map(|v| v.to_string()));
        add("backoff", options.backoff.map(|v| enum_name(&v)));
        add("backoff_ms", options.backoff_ms.map(|v| v.to_string()));
        add(
            "backoff_max_ms",
            options.backoff_max_ms.map(|v| v.to_string()),
        );
        add(
            "failure_policy",
            options.failure_policy.map(|v| enum_name(&v)),
        );
        if !query.is_empty() {
            request = request.query(&query);
        }
        let response = self.send(request).await?;
        let created = response.status() == StatusCode::ACCEPTED;
        let location = header(response.headers(), "location");
        let operation = response
            .json()
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        Ok(Started {
            operation,
            created,
            location,
        })
    }

    /// Reads an operation.
    pub async fn get(&self, id: &str) -> Result<Operation> {
        Ok(self.get_with_retry_after(id).await?.0)
    }

    /// Reads an operation and the `Retry-After` the server advised.
    pub async fn get_with_retry_after(&self, id: &str) -> Result<(Operation, Option<Duration>)> {
        let response = self
            .send(self.request(reqwest::Method::GET, &format!("/v1/operations/{id}")))
            .await?;
        let retry_after = retry_after(response.headers());
        let operation = response
            .json()
            .await
            .map_err(|err| ClientError::Protocol(err.to_string()))?;
        Ok((operation, retry_after))
    }

    /// Long-polls until the operation is done or `timeout` passed (at most 60 s per call).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Operation> {
        let ms = timeout.as_millis().min(60_000) as u64;
        self.json(
            self.request(reqwest::Method::GET, &format!("/v1/operations/{id}/wait"))
                .query(&[("timeout_ms", ms)]),
        )
        .await
    }

    /// Polls with `GET`, honouring `Retry-After`, until the operation is
    /// done; `on_update` sees every state read.
    pub async fn poll_until_done(
        &self,
        id: &str,
        mut on_update: impl FnMut(&Operation),
    ) -> Result<Operation> {
        let mut failures = 0u32;
        loop {
            match self.get_with_retry_after(id).await {
                Ok((operation, retry_after)) => {
                    failures = 0;
                    on_update(&operation);
                    if operation.done {
                        return Ok(operation);
                    }
                    tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(1))).await;
                }
                Err(ClientError::Problem {
                    problem,
                    retry_after: Some(seconds),
                }) if problem.code == Code::Unavailable => {
                    failures += 1;
                    if failures > 30 {
                        return Err(ClientError::Problem {
                            problem,
                            retry_after: Some(seconds),
                        });
                    }
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// A page of an operation's event log after `after_seq`.
    pub async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<EventPage> {
        self.json(
            self.request(reqwest::Method::GET, &format!("/v1/operations/{id}/events"))
                .query(&[("after_seq", after_seq), ("limit", limit as u64)]),
        )
        .await
    }

    /// A page of an operation's children.
    pub async fn children(
        &self,
        id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<OperationPage> {
        let mut request = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/operations/{id}/children"),
            )
            .query(&[("limit", limit)]);
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        self.json(request).await
    }

    /// A page of the caller's operations, newest first.
    pub async fn list(&self, options: &ListOptions) -> Result<OperationPage> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(status) = options.status {
            query.push(("status", status.as_str().to_owned()));
        }
        if let Some(kind) = &options.kind {
            query.push(("kind", kind.clone()));
        }
        if let Some(cursor) = &options.cursor {
            query.push(("cursor", cursor.clone()));
        }
        if let Some(limit) = options.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(owner) = &options.owner {
            query.push(("owner", owner.clone()));
        }
        self.json(
            self.request(reqwest::Method::GET, "/v1/operations")
                .query(&query),
        )
        .await
    }

    /// Cancels an operation and its children.
    pub async fn cancel(&self, id: &str) -> Result<Operation> {
        self.json(self.request(
            reqwest::Method::POST,
            &format!("/v1/operations/{id}/cancel"),
        ))
        .await
    }

    /// Deletes a finished operation with its children and log.
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.send(self.request(reqwest::Method::DELETE, &format!("/v1/operations/{id}")))
            .await?;
        Ok(())
    }

    /// The kinds the api accepts.
    pub async fn kinds(&self) -> Result<Vec<KindSpec>> {
        Ok(self
            .json::<KindList>(self.request(reqwest::Method::GET, "/v1/kinds"))
            .await?
            .kinds)
    }

    /// Follows an operation's events over the WebSocket, reconnecting by
    /// itself and resuming after the last seq seen. With `after_seq`, the
    /// log after it is replayed first (`Some(0)`: everything).
    pub fn watch(&self, id: &str, after_seq: Option<u64>) -> Watch {
        Watch::new(
            self.clone(),
            id.to_owned(),
            after_seq,
            WatchOptions::default(),
        )
    }

    /// [`watch`](Self::watch) with options.
    pub fn watch_with(&self, id: &str, after_seq: Option<u64>, options: WatchOptions) -> Watch {
        Watch::new(self.clone(), id.to_owned(), after_seq, options)
    }
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, RETRY_AFTER.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

async fn problem_of(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let retry_after = retry_after(response.headers()).map(|d| d.as_secs());
    let body = response.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| {
        let code = match status.as_u16() {
            401 => Code::Unauthorized,
            404 => Code::NotFound,
            409 => Code::Conflict,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            422 => Code::InvalidInput,
            429 => Code::RateLimited,
            503 => Code::Unavailable,
            500..=599 => Code::Internal,
            _ => Code::BadRequest,
        };
        Problem::new(code, String::from_utf8_lossy(&body).trim().to_owned())
    });
    ClientError::Problem {
        problem: Box::new(problem),
        retry_after,
    }
}

/// The innermost message of an error chain (reqwest wraps the useful one).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}
