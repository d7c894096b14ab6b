//! What is not about one operation: `GET /v1/kinds`, the probes
//! (`/healthz`, `/readyz`), `/metrics` and `/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use longrun_shared::kinds::KindSpec;
use longrun_shared::problem::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Caller;
use crate::observe::QUEUE_DEPTH;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KindList {
    pub kinds: Vec<KindSpec>,
}

/// The kinds that can be started, with their input schemas and defaults.
#[utoipa::path(
    get, path = "/v1/kinds", tag = "kinds",
    responses((status = 200, body = KindList), (status = 401, body = Problem)),
    security(("bearer" = [])),
)]
pub async fn list_kinds(State(state): State<AppState>, _caller: Caller) -> Json<KindList> {
    Json(KindList {
        kinds: state.catalog.specs(),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    pub status: String,
}

/// Liveness: the process answers (no Redis needed).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: Redis answers.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Problem)),
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text format 0.0.4).
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.queue_depth().await {
        Ok((ready, pending, delayed)) => {
            for (status, depth) in [
                ("queued", ready),
                ("running", pending),
                ("delayed", delayed),
            ] {
                metrics::gauge!(QUEUE_DEPTH, "status" => status).set(depth as f64);
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, "queue depth unavailable");
            metrics::counter!(crate::observe::REDIS_ERRORS).increment(1);
        }
    }
    let body = longrun_shared::telemetry::prometheus().render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// This API's OpenAPI 3.1 description, with a start path per kind.
#[utoipa::path(
    get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1", body = Object), (status = 401, body = Problem)),
    security(("bearer" = [])),
)]
pub async fn openapi_json(State(state): State<AppState>, _caller: Caller) -> Response {
    let document = crate::openapi::document(&state.catalog.specs());
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}
