//! [`Client`]: one method per route of the HTTP API.

use std::fmt;
use std::time::Duration;

use longrun_shared::kinds::{KindSpec, StartParams};
use longrun_shared::model::{Event, EventPage, Operation, OperationPage, Status};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ClientError, error_from_response};
use crate::watch::{Watch, WatchOptions};

/// The result type of this crate.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// How long one request may take before it counts as a connection error
/// (long polls get their own, longer limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of a start: the repeat-safe key (sent as `Idempotency-Key`) and
/// the query parameters (`params`; every `None` keeps the kind's default).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Repeat-safe key: a second start with it (same owner) returns the
    /// first operation and starts nothing.
    pub idempotency_key: Option<String>,
    /// Attempts, time limits, backoff and failure policy.
    pub params: StartParams,
}

impl From<StartParams> for StartOptions {
    fn from(params: StartParams) -> Self {
        StartOptions {
            idempotency_key: None,
            params,
        }
    }
}

/// Filters of [`Client::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Only operations in this status.
    pub status: Option<Status>,
    /// Only operations of this kind.
    pub kind: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (the server's default is 50, its maximum 1000).
    pub limit: Option<usize>,
    /// Admins only: another owner's operations (default: every owner's).
    pub owner: Option<String>,
}

/// A started operation and whether this call started it (202) or an
/// earlier call with the same idempotency key did (200).
#[derive(Debug, Clone)]
pub struct Started {
    /// The operation, as the api answered.
    pub operation: Operation,
    /// False when an earlier start with the same idempotency key made it.
    pub created: bool,
    /// The absolute URL of the operation (`Location`).
    pub location: Option<String>,
}

/// A client of one longrun platform: its api (`http://…`), its WebSocket
/// gateway (`ws://…`) and the bearer token to act with. Cheap to clone
/// (clones share one connection pool).
///
/// ```no_run
/// # async fn demo() -> longrun_client::Result<()> {
/// use longrun_client::{Client, ListOptions, Status};
///
/// let client = Client::new("http://127.0.0.1:8080", "ws://127.0.0.1:8081", "<jwt>");
/// let running = client
///     .list(&ListOptions { status: Some(Status::Running), ..ListOptions::default() })
///     .await?;
/// for operation in running.operations {
///     println!("{} {} {:.0}%", operation.id, operation.kind, operation.progress.percent);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    ws_base: String,
    token: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base)
            .field("ws_url", &self.ws_base)
            .field("token", &"<redacted>")
            .finish()
    }
}

#[derive(Deserialize)]
struct KindList {
    kinds: Vec<KindSpec>,
}

impl Client {
    /// A client for the api at `base_url` and the gateway at `ws_url`,
    /// authenticating with `token`. Nothing is contacted until a call.
    pub fn new(base_url: &str, ws_url: &str, token: &str) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("longrun-client/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
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

    /// The api's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The gateway's base URL (the WebSocket is at `{ws_url}/v1/ws`).
    pub fn ws_url(&self) -> &str {
        &self.ws_base
    }

    /// The bearer token this client sends.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same client (same connection pool) with another token, e.g. a
    /// fresh one before the current one expires.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|err| self.connection_error(&err))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let retry_after = header(response.headers(), RETRY_AFTER.as_str());
            let body = response.bytes().await.unwrap_or_default();
            return Err(error_from_response(
                status.as_u16(),
                retry_after.as_deref(),
                &body,
            ));
        }
        Ok(response)
    }

    fn connection_error(&self, err: &reqwest::Error) -> ClientError {
        let message = if err.is_timeout() {
            "no answer in time".to_owned()
        } else {
            root_cause(err)
        };
        ClientError::Connection {
            url: self.base.clone(),
            message,
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        read_json(response).await
    }

    /// Starts an operation of `kind` (`module.operation`) with `input`.
    ///
    /// ```no_run
    /// # async fn demo(client: longrun_client::Client) -> longrun_client::Result<()> {
    /// use longrun_client::{StartOptions, StartParams};
    /// use serde_json::json;
    ///
    /// let options = StartOptions {
    ///     idempotency_key: Some("nightly-2026-11-24".into()),
    ///     params: StartParams {
    ///         max_attempts: Some(5),
    ///         ..StartParams::default()
    ///     },
    /// };
    /// let operation = client
    ///     .start("demo.sleep", &json!({"duration_ms": 2000, "steps": 4}), &options)
    ///     .await?;
    /// println!("started {}", operation.id);
    /// # Ok(()) }
    /// ```
    pub async fn start(
        &self,
        kind: &str,
        input: &Value,
        options: &StartOptions,
    ) -> Result<Operation> {
        Ok(self.start_full(kind, input, options).await?.operation)
    }

    /// [`start`](Self::start), telling whether this call created it and
    /// where the operation lives.
    pub async fn start_full(
        &self,
        kind: &str,
        input: &Value,
        options: &StartOptions,
    ) -> Result<Started> {
        let path = match kind.split_once('.') {
            Some((module, operation)) => {
                format!("/v1/{}/{}", segment(module), segment(operation))
            }
            None => format!("/v1/{}", segment(kind)),
        };
        let mut request = self.request(Method::POST, &path).json(input);
        if let Some(key) = &options.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request = request.query(&options.params);
        let response = self.send(request).await?;
        let created = response.status() == StatusCode::ACCEPTED;
        let location = header(response.headers(), "location");
        let operation = read_json(response).await?;
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

    /// Reads an operation and the `Retry-After` the server advised (sent
    /// while the operation is not done).
    pub async fn get_with_retry_after(&self, id: &str) -> Result<(Operation, Option<Duration>)> {
        let response = self
            .send(self.request(Method::GET, &operation_path(id, "")))
            .await?;
        let retry_after = header(response.headers(), RETRY_AFTER.as_str())
            .and_then(|value| crate::error::parse_retry_after(&value, std::time::SystemTime::now()))
            .map(Duration::from_secs);
        let operation = read_json(response).await?;
        Ok((operation, retry_after))
    }

    /// One long poll: answers as soon as the operation is done, or after
    /// `timeout` (at most 60 s) with its current state. See
    /// [`wait_until_done`](Self::wait_until_done) to wait longer.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Operation> {
        let ms = timeout.as_millis().min(60_000) as u64;
        self.json(
            self.request(Method::GET, &operation_path(id, "/wait"))
                .query(&[("timeout_ms", ms)])
                .timeout(Duration::from_millis(ms) + Duration::from_secs(15)),
        )
        .await
    }

    /// A page of an operation's event log: events after `after_seq`, at
    /// most `limit` (at most 1000). Read on from `next_seq`.
    pub async fn events(&self, id: &str, after_seq: u64, limit: usize) -> Result<EventPage> {
        self.json(
            self.request(Method::GET, &operation_path(id, "/events"))
                .query(&[("after_seq", after_seq), ("limit", limit as u64)]),
        )
        .await
    }

    /// Every logged event after `after_seq`, reading page after page.
    pub async fn all_events(&self, id: &str, after_seq: u64) -> Result<Vec<Event>> {
        const PAGE: usize = 1000;
        let mut events = Vec::new();
        let mut after = after_seq;
        loop {
            let page = self.events(id, after, PAGE).await?;
            let full = page.events.len() == PAGE;
            events.extend(page.events);
            if !full || page.next_seq <= after {
                return Ok(events);
            }
            after = page.next_seq;
        }
    }

    /// A page of an operation's children, in creation order.
    pub async fn children(
        &self,
        id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<OperationPage> {
        let mut request = self
            .request(Method::GET, &operation_path(id, "/children"))
            .query(&[("limit", limit)]);
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        self.json(request).await
    }

    /// A page of the caller's operations (top-level ones), newest first.
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
        self.json(self.request(Method::GET, "/v1/operations").query(&query))
            .await
    }

    /// Cancels an operation and its children. A terminal operation answers
    /// [`Code::Conflict`](crate::Code::Conflict).
    pub async fn cancel(&self, id: &str) -> Result<Operation> {
        self.json(self.request(Method::POST, &operation_path(id, "/cancel")))
            .await
    }

    /// Deletes a finished operation with its children and log. One that is
    /// not done answers [`Code::Conflict`](crate::Code::Conflict).
    pub async fn delete(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &operation_path(id, "")))
            .await?;
        Ok(())
    }

    /// The kinds the api accepts, with their input schemas.
    pub async fn kinds(&self) -> Result<Vec<KindSpec>> {
        Ok(self
            .json::<KindList>(self.request(Method::GET, "/v1/kinds"))
            .await?
            .kinds)
    }

    /// Follows an operation's events over the WebSocket, reconnecting by
    /// itself and resuming after the last seq seen. With `after_seq`, the
    /// log after it is replayed first (`Some(0)`: everything); with `None`,
    /// events after the current state (see [`Watch::snapshot`]).
    ///
    /// ```no_run
    /// # async fn demo(client: longrun_client::Client, id: &str) -> longrun_client::Result<()> {
    /// let mut events = client.watch(id, Some(0));
    /// while let Some(event) = events.next().await? {
    ///     println!("{} {:?} {}", event.seq, event.event_type, event.data);
    /// }
    /// // The terminal event came: the operation is done.
    /// # Ok(()) }
    /// ```
    pub fn watch(&self, id: &str, after_seq: Option<u64>) -> Watch {
        Watch::new(
            self.clone(),
            id.to_owned(),
            after_seq,
            WatchOptions::default(),
        )
    }

    /// [`watch`](Self::watch) with reconnect and keep-alive options.
    pub fn watch_with(&self, id: &str, after_seq: Option<u64>, options: WatchOptions) -> Watch {
        Watch::new(self.clone(), id.to_owned(), after_seq, options)
    }
}

async fn read_json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T> {
    let body = response.bytes().await.map_err(|err| {
        ClientError::Protocol(format!("the answer broke off: {}", root_cause(&err)))
    })?;
    serde_json::from_slice(&body).map_err(|err| {
        ClientError::Protocol(format!(
            "the answer is not what longrun sends ({err}); is the URL a longrun api?"
        ))
    })
}

/// `/v1/operations/{id}{suffix}` with the id percent-encoded, so an id
/// typed wrong (`../kinds`) can only ever name a missing operation.
fn operation_path(id: &str, suffix: &str) -> String {
    format!("/v1/operations/{}{suffix}", segment(id))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    // `.` and `..` alone are path navigation, even unencoded-safe.
    match out.as_str() {
        "." => "%2E".to_owned(),
        ".." => "%2E%2E".to_owned(),
        _ => out,
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The innermost message of an error chain (reqwest wraps the useful one).
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use longrun_shared::kinds::{BackoffKind, FailurePolicy};

    #[test]
    fn ids_are_encoded_as_one_path_segment() {
        assert_eq!(
            operation_path("0193a3f6-0000-7000-8000-000000000001", "/wait"),
            "/v1/operations/0193a3f6-0000-7000-8000-000000000001/wait"
        );
        assert_eq!(operation_path("../kinds", ""), "/v1/operations/..%2Fkinds");
        assert_eq!(operation_path("..", ""), "/v1/operations/%2E%2E");
        assert_eq!(
            operation_path("a b?c#d", ""),
            "/v1/operations/a%20b%3Fc%23d"
        );
    }

    #[test]
    fn start_params_become_query_parameters_and_unset_ones_are_not_sent() {
        let query = |params: &StartParams| {
            reqwest::Client::new()
                .post("http://127.0.0.1/v1/demo/sleep")
                .query(params)
                .build()
                .expect("a request")
                .url()
                .query()
                .map(str::to_owned)
        };
        let params = StartParams {
            max_attempts: Some(5),
            timeout_ms: Some(30_000),
            backoff: Some(BackoffKind::Fixed),
            failure_policy: Some(FailurePolicy::FailFast),
            ..StartParams::default()
        };
        assert_eq!(
            query(&params).as_deref(),
            Some("max_attempts=5&timeout_ms=30000&backoff=fixed&failure_policy=fail_fast")
        );
        assert_eq!(query(&StartParams::default()), None);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = Client::new(
            "http://127.0.0.1:8080/",
            "ws://127.0.0.1:8081",
            "secret-jwt",
        );
        let debug = format!("{client:?}");
        assert!(!debug.contains("secret-jwt"), "{debug}");
        assert_eq!(client.base_url(), "http://127.0.0.1:8080");
    }
}
