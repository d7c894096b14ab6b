//! Request ids, tracing spans and HTTP metrics around every route.
//!
//! Each request gets an `X-Request-Id` (the client's, when it sent one of
//! up to 128 visible characters; else a new UUID), echoed on the response,
//! recorded in the request's span and stored with the operations it starts,
//! so the worker's spans carry it too.

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

#[derive(Clone, Copy, Default)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .ok()
            .map(RequestId::new)
    }
}

/// The request's id (set by the request-id layer).
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Wraps the routes in the observability layers.
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
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(middleware::from_fn(sanitize_request_id))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
}

/// Drops a client-sent request id that is too long or not plain text, and
/// makes a new one.
async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let acceptable = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|id| {
            !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
        });
    if !acceptable && let Ok(value) = HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    next.run(request).await
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("longrun_http_requests_total", &labels).increment(1);
    metrics::histogram!("longrun_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
