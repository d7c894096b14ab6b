//! Request ids, tracing spans and HTTP metrics around every route.
//!
//! Each request gets an `X-Request-Id` (the client's, when it sent one of
//! up to 128 visible ASCII characters; else a new UUIDv7), echoed on the
//! response, recorded in the request's span, quoted in problem bodies, and
//! stored with the operations it starts (on the operation and in its
//! `created` event), so the worker's spans carry it too.
//!
//! Metrics (Prometheus, rendered by `GET /metrics`):
//! `longrun_http_requests_total` and `longrun_http_request_duration_seconds`
//! by route, method and status; `longrun_operations_started_total` by kind;
//! `longrun_queue_depth` by status; `longrun_api_redis_errors_total`.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use longrun_shared::problem::Code;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub const HTTP_REQUESTS: &str = "longrun_http_requests_total";
pub const HTTP_DURATION: &str = "longrun_http_request_duration_seconds";
pub const OPERATIONS_STARTED: &str = "longrun_operations_started_total";
pub const QUEUE_DEPTH: &str = "longrun_queue_depth";
pub const REDIS_ERRORS: &str = "longrun_api_redis_errors_total";

/// Longest client-sent request id kept as it is.
const MAX_REQUEST_ID: usize = 128;

tokio::task_local! {
    static CURRENT_REQUEST_ID: String;
}

#[derive(Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The request's id (set by the request-id layer).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The id of the request being served by the current task, if any.
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID
        .try_with(|id| id.clone())
        .ok()
        .filter(|id| !id.is_empty())
}

/// Describes the metrics and registers the error counter at zero, so
/// `/metrics` lists every series from the start.
pub fn describe_metrics() {
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    metrics::describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency, by route template, method and status"
    );
    metrics::describe_counter!(OPERATIONS_STARTED, "operations started, by kind");
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "queue entries by status (queued, running, delayed), read at each scrape"
    );
    metrics::describe_counter!(REDIS_ERRORS, "requests that failed because Redis did");
    metrics::counter!(REDIS_ERRORS).increment(0);
}

/// Wraps the routes in the observability layers (outermost last).
pub fn layers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(middleware::from_fn(record_metrics))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(Code::Internal, "the request failed unexpectedly").into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    uri = %request.uri().path(),
                    request_id = %request_id(request.headers()),
                )
            }),
        )
        .layer(middleware::from_fn(scope_request_id))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(sanitize_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
}

/// Replaces a client-sent request id that is too long or not plain text
/// with a new one.
async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let acceptable = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|id| {
            !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.bytes().all(|b| b.is_ascii_graphic())
        });
    if !acceptable {
        request.headers_mut().insert(REQUEST_ID, new_request_id());
    }
    next.run(request).await
}

/// Makes the request id available to everything the request runs
/// ([`current_request_id`]), e.g. problem bodies.
async fn scope_request_id(request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    CURRENT_REQUEST_ID.scope(id, next.run(request)).await
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = match request.method().as_str() {
        known @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => known,
        _ => "other",
    }
    .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}
