//! `GET /v1/operations/{id}/wait`: a long poll that answers as soon as the
//! operation is done, woken by the operation's own pub/sub channel (the
//! process's shared relay) rather than by polling Redis.
//!
//! It subscribes first and reads the operation after, so a finish in
//! between is never missed; it reads again on a terminal event, a relay
//! reconnect or a lag, and once more when the time is up, so the answer
//! is always the current state.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use longrun_shared::model::{FrameHead, Operation};
use longrun_shared::problem::Problem;
use longrun_shared::relay::{Message, Subscription};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use utoipa::IntoParams;

use super::{load_visible, resource_response};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Params, PathParams};

pub const MAX_WAIT_MS: u64 = 60_000;
pub const DEFAULT_WAIT_MS: u64 = 30_000;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// How long to wait for the operation to finish, ms (default 30000).
    #[param(minimum = 0, maximum = 60000)]
    pub timeout_ms: Option<u64>,
}

impl WaitParams {
    fn timeout(&self) -> Result<Duration, ApiError> {
        match self.timeout_ms {
            None => Ok(Duration::from_millis(DEFAULT_WAIT_MS)),
            Some(ms) if ms <= MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
            Some(_) => Err(ApiError::bad_request(format!(
                "timeout_ms must be at most {MAX_WAIT_MS}; call again to wait longer"
            ))),
        }
    }
}

/// Wait for an operation to finish (long poll).
///
/// Answers as soon as the operation is done, or after `timeout_ms` with its
/// current state (then with `Retry-After`, like GET).
#[utoipa::path(
    get, path = "/v1/operations/{id}/wait", tag = "operations",
    params(("id" = String, Path, description = "operation id"), WaitParams),
    responses(
        (status = 200, description = "done, or the time is up (then `done` is false)", body = Operation,
         headers(("Retry-After" = u32, description = "only while not done"))),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem), (status = 503, body = Problem),
    ),
    security(("bearer" = [])),
)]
pub async fn wait_operation(
    State(state): State<AppState>,
    Caller(caller): Caller,
    PathParams(id): PathParams<String>,
    Params(params): Params<WaitParams>,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + params.timeout()?;
    let (root, operation) = load_visible(&state, &caller, &id).await?;
    if operation.done || Instant::now() >= deadline {
        return Ok(resource_response(StatusCode::OK, operation));
    }
    let channel = state.store.keys().op_channel(&root, &id);
    let subscribed = tokio::select! {
        subscribed = state.relay.subscribe(&channel) => Some(subscribed),
        _ = tokio::time::sleep_until(deadline) => None,
        _ = state.shutdown.cancelled() => None,
    };
    let mut subscription = match subscribed {
        Some(Ok(subscription)) => subscription,
        Some(Err(_)) => return Err(ApiError::unavailable("the event relay has stopped")),
        // The time was up before Redis confirmed the subscription (a short
        // timeout, or pub/sub still reconnecting): answer with the state.
        None => {
            let operation = current(&state, &root, &id).await?;
            return Ok(resource_response(StatusCode::OK, operation));
        }
    };
    loop {
        // Read after subscribing, so a finish in between is not missed.
        let operation = current(&state, &root, &id).await?;
        if operation.done {
            return Ok(resource_response(StatusCode::OK, operation));
        }
        match next_wake(&state, &mut subscription, deadline).await? {
            Wake::ReadAgain => continue,
            Wake::TimeUp => {
                let operation = current(&state, &root, &id).await?;
                return Ok(resource_response(StatusCode::OK, operation));
            }
        }
    }
}

async fn current(state: &AppState, root: &str, id: &str) -> Result<Operation, ApiError> {
    state
        .store
        .get_in(root, id)
        .await?
        .map(|stored| stored.operation)
        .ok_or_else(ApiError::not_found)
}

enum Wake {
    /// A terminal event, or events may have been missed: read the state.
    ReadAgain,
    /// The timeout passed or the server is shutting down.
    TimeUp,
}

async fn next_wake(
    state: &AppState,
    subscription: &mut Subscription,
    deadline: Instant,
) -> Result<Wake, ApiError> {
    loop {
        let message = tokio::select! {
            message = subscription.recv() => message,
            _ = tokio::time::sleep_until(deadline) => return Ok(Wake::TimeUp),
            _ = state.shutdown.cancelled() => return Ok(Wake::TimeUp),
        };
        match message {
            Ok(Message::Payload(frame)) => {
                let terminal = serde_json::from_slice::<FrameHead>(&frame)
                    .is_ok_and(|head| head.event.is_terminal());
                if terminal {
                    return Ok(Wake::ReadAgain);
                }
            }
            Ok(Message::Resync) | Err(RecvError::Lagged(_)) => return Ok(Wake::ReadAgain),
            Err(RecvError::Closed) => {
                return Err(ApiError::unavailable("the event relay has stopped"));
            }
        }
    }
}
