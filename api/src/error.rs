//! [`ApiError`]: every failure of a request, answered as RFC 9457
//! `application/problem+json` with the contract's code — including axum's
//! own rejections (unknown route, wrong method, bad query). The body carries
//! the request's id, so a user can quote it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longrun_shared::auth::AuthError;
use longrun_shared::problem::{Code, FieldError, PROBLEM_JSON, Problem};
use longrun_shared::store::StoreError;

/// Seconds a client should wait before retrying after a 503 or an
/// idempotent request still in flight.
pub const RETRY_SOON_S: u64 = 1;
/// Longest message of one field error, in bytes.
pub const MAX_FIELD_MESSAGE: usize = 512;

/// `text` cut to at most [`MAX_FIELD_MESSAGE`] bytes (on a character
/// boundary), marked with an ellipsis when cut.
fn shortened(text: String) -> String {
    if text.len() <= MAX_FIELD_MESSAGE {
        return text;
    }
    let mut end = MAX_FIELD_MESSAGE - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[derive(Debug)]
pub struct ApiError {
    pub problem: Box<Problem>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            problem: Box::new(Problem::new(code, detail)),
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        ApiError::new(Code::NotFound, "no such operation")
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(Code::BadRequest, detail)
    }

    /// A 422; each error's message is cut to [`MAX_FIELD_MESSAGE`] bytes, since
    /// validators quote the offending value (which may be megabytes).
    pub fn invalid_input(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        let mut error = ApiError::new(Code::InvalidInput, detail);
        error.problem.errors = errors
            .into_iter()
            .map(|mut field| {
                field.message = shortened(field.message);
                field
            })
            .collect();
        error
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError::new(Code::Conflict, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::new(Code::Unavailable, detail).retry_after(RETRY_SOON_S)
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        ApiError::new(Code::RateLimited, "too many operations started; slow down")
            .retry_after(retry_after_s.max(1))
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Redis(err) => {
                tracing::warn!(error = %err, "redis unavailable");
                metrics::counter!(crate::observe::REDIS_ERRORS).increment(1);
                ApiError::unavailable("the operation store is unreachable; retry shortly")
            }
            StoreError::Data(detail) => {
                tracing::error!(%detail, "corrupt data in redis");
                ApiError::new(Code::Internal, "stored data could not be read")
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        ApiError::new(Code::Unauthorized, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        self.problem.request_id = crate::observe::current_request_id();
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Answer of unknown routes.
pub async fn not_found_route() -> ApiError {
    ApiError::new(Code::NotFound, "no such route; see /openapi.json")
}

/// Answer of known routes called with the wrong method (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this route does not take that method; see the Allow header",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_field_messages_are_cut_on_a_character_boundary() {
        let long = format!("\"{}\" is not of type \"integer\"", "é".repeat(10_000));
        let error = ApiError::invalid_input(
            "bad",
            vec![FieldError {
                path: "/x".into(),
                message: long,
            }],
        );
        let message = &error.problem.errors[0].message;
        assert!(message.len() <= MAX_FIELD_MESSAGE, "{}", message.len());
        assert!(message.ends_with('…'));
        let short = ApiError::invalid_input(
            "bad",
            vec![FieldError {
                path: "".into(),
                message: "fine".into(),
            }],
        );
        assert_eq!(short.problem.errors[0].message, "fine");
    }
}
