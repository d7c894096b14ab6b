//! The contract's routes: start, get, wait, events, children, list, cancel,
//! delete, kinds, health, metrics and the OpenAPI description.
//!
//! Visibility is one rule applied everywhere ([`load_visible`]): an owner
//! sees only its own operations, an admin sees all, and anything else is
//! 404 — never 403, so existence does not leak.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use longrun_shared::auth::Principal;
use longrun_shared::kinds::{Backoff, BackoffKind, FailurePolicy, KindSpec, split_kind};
use longrun_shared::model::{EventPage, FrameHead, Operation, OperationPage, Status};
use longrun_shared::problem::Code;
use longrun_shared::relay::Message;
use longrun_shared::store::ListFilter;
use longrun_shared::store::transitions::{NewOperation, is_valid_id, new_id};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, method_not_allowed, not_found_route};
use crate::extract::{Caller, JsonInput, Params, PathParams};

/// Seconds a poller should wait before asking again while not done.
const POLL_AFTER_S: u32 = 1;
const MAX_WAIT_MS: u64 = 60_000;
const DEFAULT_WAIT_MS: u64 = 30_000;
const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 50;
const MAX_IDEMPOTENCY_KEY: usize = 255;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operations", get(list_operations))
        .route(
            "/v1/operations/{id}",
            get(get_operation).delete(delete_operation),
        )
        .route("/v1/operations/{id}/wait", get(wait_operation))
        .route("/v1/operations/{id}/events", get(list_events))
        .route("/v1/operations/{id}/children", get(list_children))
        .route("/v1/operations/{id}/cancel", post(cancel_operation))
        .route("/v1/kinds", get(list_kinds))
        .route("/v1/{module}/{operation}", post(start_operation))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found_route)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Options of a start, in the query string (the body is the kind's input).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartOptions {
    /// Attempts before failing for good (1–100); default per kind.
    pub max_attempts: Option<u32>,
    /// Per-attempt limit in ms (start to close); 0 for none.
    pub timeout_ms: Option<u64>,
    /// Overall limit in ms from now, across attempts; 0 for none.
    pub deadline_ms: Option<u64>,
    /// `fixed` or `exponential` (full jitter).
    pub backoff: Option<BackoffKind>,
    /// Base delay between attempts, ms.
    pub backoff_ms: Option<u64>,
    /// Longest delay between attempts, ms.
    pub backoff_max_ms: Option<u64>,
    /// What a failed child does to this operation.
    pub failure_policy: Option<FailurePolicy>,
}

const MAX_DURATION_MS: u64 = 30 * 86_400_000;

impl StartOptions {
    fn check(&self) -> Result<(), ApiError> {
        let bad = |detail: &str| Err(ApiError::invalid_input(detail.to_owned(), Vec::new()));
        if self.max_attempts.is_some_and(|n| !(1..=100).contains(&n)) {
            return bad("max_attempts must be between 1 and 100");
        }
        for (name, value) in [
            ("timeout_ms", self.timeout_ms),
            ("deadline_ms", self.deadline_ms),
            ("backoff_ms", self.backoff_ms),
            ("backoff_max_ms", self.backoff_max_ms),
        ] {
            if value.is_some_and(|ms| ms > MAX_DURATION_MS) {
                return bad(&format!(
                    "{name} must be at most {MAX_DURATION_MS} (30 days)"
                ));
            }
        }
        Ok(())
    }

    fn backoff(&self, default: Backoff) -> Backoff {
        let base_ms = self.backoff_ms.unwrap_or(default.base_ms);
        Backoff {
            kind: self.backoff.unwrap_or(default.kind),
            base_ms,
            max_ms: self.backoff_max_ms.unwrap_or(default.max_ms).max(base_ms),
        }
    }
}

/// Start an operation of kind `module.operation`.
#[utoipa::path(
    post, path = "/v1/{module}/{operation}", tag = "operations",
    params(
        ("module" = String, Path, description = "first part of the kind, e.g. `demo`"),
        ("operation" = String, Path, description = "second part of the kind, e.g. `sleep`"),
        ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key (1–255 visible ASCII characters)"),
        StartOptions,
    ),
    request_body(content = Object, description = "the kind's input (see GET /v1/kinds)", content_type = "application/json"),
    responses(
        (status = 202, description = "started", body = Operation,
         headers(("Location" = String), ("Operation-Location" = String), ("Retry-After" = u32))),
        (status = 200, description = "an earlier start with the same Idempotency-Key", body = Operation),
        (status = 400, body = longrun_shared::problem::Problem), (status = 401, body = longrun_shared::problem::Problem),
        (status = 404, body = longrun_shared::problem::Problem), (status = 413, body = longrun_shared::problem::Problem),
        (status = 415, body = longrun_shared::problem::Problem), (status = 422, body = longrun_shared::problem::Problem),
        (status = 429, body = longrun_shared::problem::Problem), (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn start_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams((module, operation)): PathParams<(String, String)>,
    Params(options): Params<StartOptions>,
    headers: HeaderMap,
    JsonInput(input): JsonInput,
) -> Result<Response, ApiError> {
    let kind_name = format!("{module}.{operation}");
    let kind = split_kind(&kind_name)
        .and_then(|_| state.catalog.get(&kind_name))
        .ok_or_else(|| {
            ApiError::new(
                Code::UnknownKind,
                format!("no kind `{kind_name}`; see GET /v1/kinds"),
            )
        })?;
    let errors = kind.check(&input);
    if !errors.is_empty() {
        return Err(ApiError::invalid_input(
            format!("the input does not match the schema of `{kind_name}`"),
            errors,
        ));
    }
    options.check()?;
    let idempotency_key = idempotency_key(&headers)?;
    if let Some(limiter) = &state.limiter {
        limiter
            .check(&caller.owner)
            .map_err(ApiError::rate_limited)?;
    }
    let defaults = kind.spec.defaults;
    let new = NewOperation {
        id: new_id(),
        kind: kind_name,
        owner: caller.owner.clone(),
        input,
        max_attempts: options.max_attempts.unwrap_or(defaults.max_attempts),
        backoff: options.backoff(defaults.backoff),
        timeout_ms: options.timeout_ms.unwrap_or(defaults.timeout_ms),
        deadline_ms: options.deadline_ms.unwrap_or(0),
        policy: options.failure_policy.unwrap_or_default(),
        request_id: crate::observe::request_id(&headers),
        idempotency_key: idempotency_key.clone(),
    };
    let base = base_url(&state, &headers);
    if let Some(key) = &idempotency_key
        && let Some(existing) = state
            .store
            .reserve_idempotency_key(&caller.owner, key, &new.id)
            .await?
    {
        let operation = await_existing(&state, &existing).await?;
        return Ok(operation_response(StatusCode::OK, &base, operation));
    }
    let created = state.store.create(&new).await;
    let operation = match created {
        Ok(operation) => operation,
        Err(err) => {
            if let Some(key) = &idempotency_key {
                let _ = state
                    .store
                    .release_idempotency_key(&caller.owner, key)
                    .await;
            }
            return Err(err.into());
        }
    };
    metrics::counter!("longrun_operations_started_total", "kind" => operation.kind.clone())
        .increment(1);
    Ok(operation_response(StatusCode::ACCEPTED, &base, operation))
}

/// The operation an idempotency key points at; a concurrent first request
/// may still be creating it.
async fn await_existing(state: &AppState, id: &str) -> Result<Operation, ApiError> {
    for _ in 0..50 {
        if let Some(stored) = state.store.get(id).await? {
            return Ok(stored.operation);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(ApiError::new(
        Code::Conflict,
        "an earlier request with this Idempotency-Key did not finish creating its operation; retry",
    ))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY)
        .filter(|key| key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// Scheme and host for absolute URLs: the configured public URL, else the request's.
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn operation_response(status: StatusCode, base: &str, operation: Operation) -> Response {
    let location = format!("{base}/v1/operations/{}", operation.id);
    let mut response = (status, Json(&operation)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value.clone());
        headers.insert("operation-location", value);
    }
    if !operation.done {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_S));
    }
    response
}

fn resource_response(operation: Operation) -> Response {
    let done = operation.done;
    let mut response = Json(operation).into_response();
    if !done {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_S));
    }
    response
}

/// Loads an operation the caller may see: (root, operation), or 404.
async fn load_visible(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> Result<(String, Operation), ApiError> {
    if !is_valid_id(id) {
        return Err(ApiError::not_found());
    }
    let stored = state.store.get(id).await?.ok_or_else(ApiError::not_found)?;
    if !caller.may_access(&stored.operation.owner) {
        return Err(ApiError::not_found());
    }
    Ok((stored.root, stored.operation))
}

/// Get an operation.
#[utoipa::path(
    get, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 200, body = Operation, headers(("Retry-After" = u32, description = "while not done"))),
        (status = 401, body = longrun_shared::problem::Problem), (status = 404, body = longrun_shared::problem::Problem),
        (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn get_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (_, operation) = load_visible(&state, &caller, &id).await?;
    Ok(resource_response(operation))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// How long to wait for the operation to finish, ms (default 30000, at most 60000).
    pub timeout_ms: Option<u64>,
}

/// Wait for an operation to finish (long poll).
#[utoipa::path(
    get, path = "/v1/operations/{id}/wait", tag = "operations",
    params(("id" = String, Path, description = "operation id"), WaitParams),
    responses(
        (status = 200, description = "done, or the timeout passed", body = Operation),
        (status = 400, body = longrun_shared::problem::Problem), (status = 401, body = longrun_shared::problem::Problem),
        (status = 404, body = longrun_shared::problem::Problem), (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn wait_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<WaitParams>,
) -> Result<Response, ApiError> {
    let (root, operation) = load_visible(&state, &caller, &id).await?;
    if operation.done {
        return Ok(resource_response(operation));
    }
    let timeout = Duration::from_millis(
        params
            .timeout_ms
            .unwrap_or(DEFAULT_WAIT_MS)
            .min(MAX_WAIT_MS),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = state.store.keys().op_channel(&root, &id);
    let mut subscription = tokio::time::timeout_at(deadline, state.relay.subscribe(&channel))
        .await
        .map_err(|_| ApiError::unavailable("could not subscribe to the operation's events"))?
        .map_err(|_| ApiError::unavailable("the event relay has stopped"))?;
    loop {
        // Read after subscribing, so a finish in between is not missed.
        let Some(stored) = state.store.get_in(&root, &id).await? else {
            return Err(ApiError::not_found());
        };
        if stored.operation.done {
            return Ok(resource_response(stored.operation));
        }
        loop {
            let message = tokio::select! {
                message = subscription.recv() => message,
                _ = tokio::time::sleep_until(deadline) => return Ok(resource_response(stored.operation)),
            };
            match message {
                Ok(Message::Payload(frame)) => {
                    let terminal = serde_json::from_slice::<FrameHead>(&frame)
                        .is_ok_and(|head| head.event.is_terminal());
                    if terminal {
                        break;
                    }
                }
                Ok(Message::Resync) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => {
                    return Err(ApiError::unavailable("the event relay has stopped"));
                }
            }
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events with a greater seq (default 0: from the start).
    pub after_seq: Option<u64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// An operation's event log.
#[utoipa::path(
    get, path = "/v1/operations/{id}/events", tag = "operations",
    params(("id" = String, Path, description = "operation id"), EventParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = longrun_shared::problem::Problem), (status = 401, body = longrun_shared::problem::Problem),
        (status = 404, body = longrun_shared::problem::Problem), (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<EventParams>,
) -> Result<Json<EventPage>, ApiError> {
    let (root, _) = load_visible(&state, &caller, &id).await?;
    let after_seq = params.after_seq.unwrap_or(0);
    let limit = page_limit(params.limit, 100)?;
    let events = state.store.events(&root, &id, after_seq, limit).await?;
    let next_seq = events.last().map_or(after_seq, |event| event.seq);
    Ok(Json(EventPage { events, next_seq }))
}

fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
}

fn encode_cursor(raw: &str) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::bad_request("cursor is not one this api gave out"))
}

/// An operation's children, in creation order.
#[utoipa::path(
    get, path = "/v1/operations/{id}/children", tag = "operations",
    params(("id" = String, Path, description = "operation id"), PageParams),
    responses(
        (status = 200, body = OperationPage),
        (status = 400, body = longrun_shared::problem::Problem), (status = 401, body = longrun_shared::problem::Problem),
        (status = 404, body = longrun_shared::problem::Problem), (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_children(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let (root, _) = load_visible(&state, &caller, &id).await?;
    let limit = page_limit(params.limit, DEFAULT_PAGE)?;
    let offset = match params.cursor.as_deref() {
        None => 0,
        Some(cursor) => decode_cursor(cursor)?
            .strip_prefix("o:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::bad_request("cursor is not one this api gave out"))?,
    };
    let (operations, next) = state.store.children(&root, &id, offset, limit).await?;
    Ok(Json(OperationPage {
        operations,
        next_cursor: next.map(|offset| encode_cursor(&format!("o:{offset}"))),
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only operations in this status.
    pub status: Option<Status>,
    /// Only operations of this kind.
    pub kind: Option<String>,
    /// Admins only: another owner's operations (default: every owner's).
    pub owner: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// The caller's operations (top-level ones), newest first.
#[utoipa::path(
    get, path = "/v1/operations", tag = "operations",
    params(ListParams),
    responses(
        (status = 200, body = OperationPage),
        (status = 400, body = longrun_shared::problem::Problem), (status = 401, body = longrun_shared::problem::Problem),
        (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_operations(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<ListParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let limit = page_limit(params.limit, DEFAULT_PAGE)?;
    let before = match params.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            decode_cursor(cursor)?
                .strip_prefix("b:")
                .filter(|id| is_valid_id(id))
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_request("cursor is not one this api gave out"))?,
        ),
    };
    let owner = match (caller.admin, params.owner.as_deref()) {
        (true, None) => None,
        (true, Some(owner)) => Some(owner),
        (false, _) => Some(caller.owner.as_str()),
    };
    let filter = ListFilter {
        status: params.status,
        kind: params.kind,
    };
    let (operations, next) = state
        .store
        .list(owner, before.as_deref(), limit, &filter)
        .await?;
    Ok(Json(OperationPage {
        operations,
        next_cursor: next.map(|id| encode_cursor(&format!("b:{id}"))),
    }))
}

/// Cancel an operation and its children.
#[utoipa::path(
    post, path = "/v1/operations/{id}/cancel", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 202, description = "cancelled", body = Operation),
        (status = 401, body = longrun_shared::problem::Problem), (status = 404, body = longrun_shared::problem::Problem),
        (status = 409, description = "already done", body = longrun_shared::problem::Problem),
        (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn cancel_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (root, operation) = load_visible(&state, &caller, &id).await?;
    if operation.done {
        return Err(conflict_done(&operation));
    }
    let reason = format!("cancelled by {}", caller.owner);
    match state.store.cancel(&root, &id, &reason).await? {
        None => Err(ApiError::not_found()),
        Some(false) => Err(ApiError::new(
            Code::Conflict,
            "the operation finished before it could be cancelled",
        )),
        Some(true) => {
            let stored = state
                .store
                .get_in(&root, &id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            Ok((StatusCode::ACCEPTED, Json(stored.operation)).into_response())
        }
    }
}

fn conflict_done(operation: &Operation) -> ApiError {
    ApiError::new(
        Code::Conflict,
        format!("the operation is already {}", operation.status),
    )
}

/// Delete a finished operation, its children and its log.
#[utoipa::path(
    delete, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = longrun_shared::problem::Problem), (status = 404, body = longrun_shared::problem::Problem),
        (status = 409, description = "not done yet", body = longrun_shared::problem::Problem),
        (status = 503, body = longrun_shared::problem::Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (root, operation) = load_visible(&state, &caller, &id).await?;
    if !operation.done {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "the operation is {}; cancel it or wait for it to finish first",
                operation.status
            ),
        ));
    }
    match state.store.delete(&root, &id, &operation.owner).await? {
        Some(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(false) => Err(conflict_done(&operation)),
        None => Err(ApiError::not_found()),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KindList {
    pub kinds: Vec<KindSpec>,
}

/// The kinds that can be started, with their input schemas.
#[utoipa::path(
    get, path = "/v1/kinds", tag = "kinds",
    responses((status = 200, body = KindList), (status = 401, body = longrun_shared::problem::Problem)),
    security(("bearer" = [])),
)]
pub async fn list_kinds(State(state): State<AppState>, _caller: Caller) -> Json<KindList> {
    Json(KindList {
        kinds: state.catalog.specs(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Redis answers.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = longrun_shared::problem::Problem)),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok((ready, pending, delayed)) = state.store.queue_depth().await {
        metrics::gauge!("longrun_queue_depth", "status" => "queued").set(ready as f64);
        metrics::gauge!("longrun_queue_depth", "status" => "running").set(pending as f64);
        metrics::gauge!("longrun_queue_depth", "status" => "delayed").set(delayed as f64);
    }
    if let Some(limiter) = &state.limiter {
        limiter.shrink();
    }
    let body = longrun_shared::telemetry::prometheus().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    let document = crate::openapi::document(&state.catalog.specs());
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}
