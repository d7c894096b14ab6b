//! Changing an operation: `POST /v1/operations/{id}/cancel` (with its
//! descendants) and `DELETE /v1/operations/{id}` (a finished one, with its
//! children and log). Owners act on their own operations, admins on all.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use longrun_shared::model::Operation;
use longrun_shared::problem::Problem;

use super::load_visible;
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, PathParams};

/// Cancel an operation and its children.
#[utoipa::path(
    post, path = "/v1/operations/{id}/cancel", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 202, description = "cancelled (running handlers are told to stop)", body = Operation),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "already done", body = Problem),
        (status = 503, body = Problem),
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
        return Err(already_done(&operation));
    }
    let reason = format!("cancelled by {}", caller.owner);
    match state.store.cancel(&root, &id, &reason).await? {
        None => Err(ApiError::not_found()),
        Some(false) => Err(ApiError::conflict(
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

fn already_done(operation: &Operation) -> ApiError {
    ApiError::conflict(format!("the operation is already {}", operation.status))
}

fn not_done(operation: &Operation) -> ApiError {
    ApiError::conflict(format!(
        "the operation is {}; cancel it or wait for it to finish first",
        operation.status
    ))
}

/// Delete a finished operation, its children and its log.
#[utoipa::path(
    delete, path = "/v1/operations/{id}", tag = "operations",
    params(("id" = String, Path, description = "operation id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, description = "not done yet", body = Problem),
        (status = 503, body = Problem),
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
        return Err(not_done(&operation));
    }
    match state.store.delete(&root, &id, &operation.owner).await? {
        Some(true) => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(false) => Err(not_done(&operation)),
        None => Err(ApiError::not_found()),
    }
}
