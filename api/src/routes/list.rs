//! `GET /v1/operations`: the caller's top-level operations, newest first,
//! filtered by status and kind, in pages.
//!
//! The cursor is the id of the last operation of the previous page (ids
//! are UUIDv7, so their order is creation order): the next page holds the
//! operations strictly older than it. Operations started meanwhile are
//! newer, so they never shift a page: no duplicates, no skips.

use axum::Json;
use axum::extract::State;
use longrun_shared::model::{OperationPage, Status};
use longrun_shared::problem::Problem;
use longrun_shared::store::ListFilter;
use longrun_shared::store::transitions::is_valid_id;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{bad_cursor, decode_cursor, encode_cursor, page_limit};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Params};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only operations in this status.
    pub status: Option<Status>,
    /// Only operations of this kind (`module.operation`).
    pub kind: Option<String>,
    /// Whose operations: admins may name any owner (default: every owner's);
    /// others only themselves.
    pub owner: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// At most this many (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The caller's operations (top-level ones), newest first.
///
/// A page may hold fewer than `limit` operations while more follow (a
/// selective filter scans a bounded number per call): read on while
/// `next_cursor` is not null.
#[utoipa::path(
    get, path = "/v1/operations", tag = "operations",
    params(ListParams),
    responses(
        (status = 200, body = OperationPage),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, description = "`owner` names another owner and the caller is no admin", body = Problem),
        (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn list_operations(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Params(params): Params<ListParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let limit = page_limit(params.limit, 50)?;
    let before = match params.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(
            Some(decode_cursor(cursor, 'b')?)
                .filter(|id| is_valid_id(id))
                .ok_or_else(bad_cursor)?,
        ),
    };
    let owner = match (caller.admin, params.owner.as_deref()) {
        (true, owner) => owner,
        (false, None) => Some(caller.owner.as_str()),
        (false, Some(owner)) if owner == caller.owner => Some(owner),
        (false, Some(_)) => {
            return Err(ApiError::new(
                longrun_shared::problem::Code::NotFound,
                "no such owner",
            ));
        }
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
        next_cursor: next.map(|id| encode_cursor('b', &id)),
    }))
}
