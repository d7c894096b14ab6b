//! Reading one operation: `GET /v1/operations/{id}`, its event log
//! (`…/events`) and its children (`…/children`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use longrun_shared::model::{EventPage, Operation, OperationPage};
use longrun_shared::problem::Problem;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    bad_cursor, decode_cursor, encode_cursor, load_visible, page_limit, resource_response,
};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Params, PathParams};

/// Largest child position a cursor may carry (far beyond any real tree).
const MAX_CHILD_OFFSET: u64 = 1 << 40;
/// Largest `after_seq` (2^53 - 1, exact in every JSON parser).
const MAX_SEQ: u64 = 9_007_199_254_740_991;

/// Get an operation.
#[utoipa::path(
    get, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 200, body = Operation, headers(("Retry-After" = u32, description = "seconds before polling again; only while not done"))),
        (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn get_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (_, operation) = load_visible(&state, &caller, &id).await?;
    Ok(resource_response(StatusCode::OK, operation))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Events with a greater seq (default 0: from the start).
    #[param(minimum = 0, maximum = 9_007_199_254_740_991_u64)]
    pub after_seq: Option<u64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// An operation's event log, in seq order.
///
/// `next_seq` is the seq of the last event returned (or `after_seq` when
/// none was): pass it as `after_seq` to read on.
#[utoipa::path(
    get, path = "/v1/operations/{id}/events", tag = "operations",
    params(("id" = String, Path, description = "operation id"), EventParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_events(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<EventParams>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = page_limit(params.limit, 100)?;
    let after_seq = params.after_seq.unwrap_or(0);
    if after_seq > MAX_SEQ {
        return Err(ApiError::bad_request(format!(
            "after_seq must be at most {MAX_SEQ}"
        )));
    }
    let (root, _) = load_visible(&state, &caller, &id).await?;
    let events = state.store.events(&root, &id, after_seq, limit).await?;
    let next_seq = events.last().map_or(after_seq, |event| event.seq);
    Ok(Json(EventPage { events, next_seq }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// An operation's children, in creation order.
#[utoipa::path(
    get, path = "/v1/operations/{id}/children", tag = "operations",
    params(("id" = String, Path, description = "operation id"), PageParams),
    responses(
        (status = 200, body = OperationPage),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_children(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<PageParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let limit = page_limit(params.limit, 50)?;
    let offset = match params.cursor.as_deref() {
        None => 0,
        Some(cursor) => decode_cursor(cursor, 'o')?
            .parse::<u64>()
            .ok()
            .filter(|offset| *offset <= MAX_CHILD_OFFSET)
            .ok_or_else(bad_cursor)?,
    };
    let (root, _) = load_visible(&state, &caller, &id).await?;
    let (operations, next) = state.store.children(&root, &id, offset, limit).await?;
    Ok(Json(OperationPage {
        operations,
        next_cursor: next.map(|offset| encode_cursor('o', &offset.to_string())),
    }))
}
