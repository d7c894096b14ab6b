//! `POST /v1/{module}/{operation}`: validate the input against the kind's
//! schema, honour `Idempotency-Key` and the per-owner rate limit, then
//! create and queue the operation in one Redis round trip.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
pub use longrun_shared::kinds::StartParams;
use longrun_shared::kinds::split_kind;
use longrun_shared::model::Operation;
use longrun_shared::problem::{Code, Problem};
use longrun_shared::store::idempotency::Reservation;
use longrun_shared::store::transitions::{NewOperation, new_id};
use tokio::sync::broadcast::error::RecvError;

use super::{base_url, located_response};
use crate::AppState;
use crate::error::{ApiError, RETRY_SOON_S};
use crate::extract::{Caller, JsonInput, Params, PathParams};
use crate::idempotency;
use crate::observe::{OPERATIONS_STARTED, request_id};

/// How long a repeat waits for a concurrent first request to create the operation.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// Start an operation of kind `module.operation`.
///
/// The body is the kind's input (JSON; an empty body means `{}`). With an
/// `Idempotency-Key`, a repeat of the same request by the same owner answers
/// 200 with the operation the first one started; the same key with another
/// kind, input or options answers 422 `idempotency_key_reused`.
#[utoipa::path(
    post, path = "/v1/{module}/{operation}", tag = "operations",
    params(
        ("module" = String, Path, example = "demo", description = "first part of the kind, e.g. `demo`"),
        ("operation" = String, Path, example = "sleep", description = "second part of the kind, e.g. `sleep`"),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
         description = "repeat-safe key (1–255 visible ASCII characters), per owner"),
        StartParams,
    ),
    request_body(content = Object, description = "the kind's input (see GET /v1/kinds)", content_type = "application/json"),
    responses(
        (status = 202, description = "started", body = Operation,
         headers(("Location" = String, description = "absolute URL of the operation"),
                 ("Operation-Location" = String, description = "the same URL, for Azure-style pollers"),
                 ("Retry-After" = u32, description = "seconds before polling"))),
        (status = 200, description = "a repeat of an earlier start with the same Idempotency-Key", body = Operation,
         headers(("Location" = String), ("Operation-Location" = String), ("Retry-After" = u32, description = "while not done"))),
        (status = 400, description = "bad query or header, or invalid JSON", body = Problem),
        (status = 401, body = Problem),
        (status = 404, description = "unknown kind", body = Problem),
        (status = 409, description = "a request with this Idempotency-Key is still starting its operation", body = Problem),
        (status = 413, body = Problem),
        (status = 415, body = Problem),
        (status = 422, description = "input or options invalid, or Idempotency-Key reused for another request", body = Problem),
        (status = 429, body = Problem),
        (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn start_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams((module, operation)): PathParams<(String, String)>,
    Params(options): Params<StartParams>,
    headers: HeaderMap,
    JsonInput(mut input): JsonInput,
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
    options
        .check()
        .map_err(|detail| ApiError::invalid_input(detail, Vec::new()))?;
    integral_numbers_as_integers(&mut input);
    let idempotency_key = idempotency::key_of(&headers)?;
    let base = base_url(&state, &headers);
    let defaults = kind.spec.defaults;
    let new = NewOperation {
        id: new_id(),
        max_attempts: options.max_attempts.unwrap_or(defaults.max_attempts),
        backoff: options.backoff(defaults.backoff),
        timeout_ms: options.timeout_ms.unwrap_or(defaults.timeout_ms),
        deadline_ms: options.deadline_ms.unwrap_or(0),
        policy: options.failure_policy.unwrap_or_default(),
        request_id: request_id(&headers),
        idempotency_key: idempotency_key.clone(),
        owner: caller.owner.clone(),
        kind: kind_name,
        input,
    };
    if let Some(key) = &idempotency_key {
        let fingerprint = idempotency::fingerprint(&new.kind, &new.input, &options);
        if let Reservation::Taken {
            id,
            fingerprint: first,
        } = state
            .store
            .reserve_idempotency(&caller.owner, key, &new.id, &fingerprint)
            .await?
        {
            if first.is_some_and(|first| first != fingerprint) {
                return Err(ApiError::new(
                    Code::IdempotencyKeyReused,
                    "this Idempotency-Key was used for a different request (kind, input or options); use a new key",
                ));
            }
            let operation = started_by_first(&state, &id).await?;
            return Ok(located_response(StatusCode::OK, &base, operation));
        }
    }
    if let Some(limiter) = &state.limiter
        && let Err(wait_s) = limiter.check(&caller.owner)
    {
        release(&state, &caller.owner, idempotency_key.as_deref()).await;
        return Err(ApiError::rate_limited(wait_s));
    }
    let operation = match state.store.create(&new).await {
        Ok(operation) => operation,
        Err(err) => {
            release(&state, &caller.owner, idempotency_key.as_deref()).await;
            return Err(err.into());
        }
    };
    metrics::counter!(OPERATIONS_STARTED, "kind" => operation.kind.clone()).increment(1);
    Ok(located_response(StatusCode::ACCEPTED, &base, operation))
}

/// Rewrites numbers like `3.0` as `3`: JSON Schema counts them as
/// integers, so the input passed validation, and handlers reading an
/// integer field must get one.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::{Number, Value};
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() <= EXACT
            {
                *number = Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Frees a key this request reserved but started nothing for.
async fn release(state: &AppState, owner: &str, key: Option<&str>) {
    if let Some(key) = key
        && let Err(err) = state.store.release_idempotency_key(owner, key).await
    {
        tracing::warn!(error = %err, "could not release an idempotency key");
    }
}

/// The operation an earlier request with the same key started. When that
/// request is still creating it, waits (up to 2 s) for its `created` event.
async fn started_by_first(state: &AppState, id: &str) -> Result<Operation, ApiError> {
    if let Some(stored) = state.store.get(id).await? {
        return Ok(stored.operation);
    }
    let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
    let channel = state.store.keys().op_channel(id, id);
    if let Ok(Ok(mut subscription)) =
        tokio::time::timeout_at(deadline, state.relay.subscribe(&channel)).await
    {
        loop {
            if let Some(stored) = state.store.get(id).await? {
                return Ok(stored.operation);
            }
            match tokio::time::timeout_at(deadline, subscription.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
    }
    Err(ApiError::conflict(
        "an earlier request with this Idempotency-Key has not started its operation (yet); retry",
    )
    .retry_after(RETRY_SOON_S))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut input = json!({"steps": 3.0, "ratio": 0.5, "list": [1.0, -2.0, 7], "big": 1e300});
        integral_numbers_as_integers(&mut input);
        assert_eq!(input["steps"].as_u64(), Some(3));
        assert_eq!(input["ratio"].as_f64(), Some(0.5));
        assert_eq!(input["list"], json!([1, -2, 7]));
        assert!(input["big"].is_f64());
    }
}
