//! The contract's routes, one module per concern: [`start`], [`read`] (get,
//! events, children), [`wait`], [`list`], [`manage`] (cancel, delete) and
//! [`meta`] (kinds, health, metrics, the OpenAPI description).
//!
//! Visibility is one rule applied everywhere ([`load_visible`]): an owner
//! sees only its own operations, an admin sees all, and anything else is
//! 404 — never 403, so existence does not leak.

pub mod list;
pub mod manage;
pub mod meta;
pub mod read;
pub mod start;
pub mod wait;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use longrun_shared::auth::Principal;
use longrun_shared::model::Operation;
use longrun_shared::store::transitions::is_valid_id;

use crate::AppState;
use crate::error::{ApiError, method_not_allowed, not_found_route};

/// Seconds a poller should wait before asking again while not done.
pub const POLL_AFTER_S: u32 = 1;
/// Largest page of `list`, `children` and `events`.
pub const MAX_PAGE: usize = 1_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/operations", get(list::list_operations))
        .route(
            "/v1/operations/{id}",
            get(read::get_operation).delete(manage::delete_operation),
        )
        .route("/v1/operations/{id}/wait", get(wait::wait_operation))
        .route("/v1/operations/{id}/events", get(read::list_events))
        .route("/v1/operations/{id}/children", get(read::list_children))
        .route("/v1/operations/{id}/cancel", post(manage::cancel_operation))
        .route("/v1/kinds", get(meta::list_kinds))
        .route("/v1/{module}/{operation}", post(start::start_operation))
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/metrics", get(meta::metrics))
        .route("/openapi.json", get(meta::openapi_json))
        .fallback(not_found_route)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The operation `id` with its tree's root, if `caller` may see it; 404
/// otherwise, whether it exists or not.
pub async fn load_visible(
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

/// The resource, with `Retry-After` while it is not done.
pub fn resource_response(status: StatusCode, operation: Operation) -> Response {
    let done = operation.done;
    let mut response = (status, Json(operation)).into_response();
    if !done {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(POLL_AFTER_S));
    }
    response
}

/// The resource with `Location` and `Operation-Location` (absolute) too.
pub fn located_response(status: StatusCode, base: &str, operation: Operation) -> Response {
    let location = format!("{base}/v1/operations/{}", operation.id);
    let mut response = resource_response(status, operation);
    if let Ok(value) = HeaderValue::from_str(&location) {
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, value.clone());
        headers.insert("operation-location", value);
    }
    response
}

/// Scheme and host for absolute URLs: `LONGRUN_PUBLIC_URL` when set, else
/// the request's `X-Forwarded-Proto`/`X-Forwarded-Host` or `Host`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.clone();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .map(|host| host.split(',').next().unwrap_or("").trim())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto")
        .map(|proto| proto.split(',').next().unwrap_or("").trim())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// A page size: `default` when absent, 400 outside 1..=1000.
pub fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Cursors are opaque to clients: base64url of `<tag>:<position>`.
pub fn encode_cursor(tag: char, position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{position}"))
}

/// The position inside a cursor this api gave out with `tag`; 400 otherwise.
pub fn decode_cursor(cursor: &str, tag: char) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|raw| {
            raw.strip_prefix(tag)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::to_owned)
        })
        .ok_or_else(bad_cursor)
}

pub fn bad_cursor() -> ApiError {
    ApiError::bad_request("cursor is not one this api gave out; pass next_cursor unchanged")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_other_tags_and_garbage() {
        let cursor = encode_cursor('o', "40");
        assert_eq!(decode_cursor(&cursor, 'o').ok().as_deref(), Some("40"));
        assert!(decode_cursor(&cursor, 'b').is_err());
        assert!(decode_cursor("!!", 'o').is_err());
        assert!(decode_cursor("", 'o').is_err());
    }

    #[test]
    fn page_limits_are_bounded() {
        assert_eq!(page_limit(None, 50).ok(), Some(50));
        assert_eq!(page_limit(Some(1000), 50).ok(), Some(1000));
        assert!(page_limit(Some(0), 50).is_err());
        assert!(page_limit(Some(1001), 50).is_err());
    }
}
