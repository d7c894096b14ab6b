//! RFC 9457 problem details: the body of every 4xx/5xx answer.
//!
//! The `code` is the stable, machine-readable part (the contract's list);
//! `title` is its human label and `detail` says what happened this time.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error codes of the contract, with their HTTP status and title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownKind,
    InvalidJson,
    InvalidInput,
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    Conflict,
    /// An `Idempotency-Key` reused with a different request (kind, input or options).
    IdempotencyKeyReused,
    RateLimited,
    Unavailable,
    Internal,
}

impl Code {
    pub fn status(self) -> u16 {
        match self {
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::NotFound | Code::UnknownKind => 404,
            Code::InvalidJson | Code::BadRequest => 400,
            Code::InvalidInput | Code::IdempotencyKeyReused => 422,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::MethodNotAllowed => 405,
            Code::Conflict => 409,
            Code::RateLimited => 429,
            Code::Unavailable => 503,
            Code::Internal => 500,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Code::Unauthorized => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::NotFound => "Not found",
            Code::UnknownKind => "Unknown operation kind",
            Code::InvalidJson => "Invalid JSON",
            Code::InvalidInput => "Invalid input",
            Code::BadRequest => "Bad request",
            Code::PayloadTooLarge => "Payload too large",
            Code::UnsupportedMediaType => "Unsupported media type",
            Code::MethodNotAllowed => "Method not allowed",
            Code::Conflict => "Conflict",
            Code::IdempotencyKeyReused => "Idempotency key reused",
            Code::RateLimited => "Too many requests",
            Code::Unavailable => "Service unavailable",
            Code::Internal => "Internal error",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::UnknownKind => "unknown_kind",
            Code::InvalidJson => "invalid_json",
            Code::InvalidInput => "invalid_input",
            Code::BadRequest => "bad_request",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::Conflict => "conflict",
            Code::IdempotencyKeyReused => "idempotency_key_reused",
            Code::RateLimited => "rate_limited",
            Code::Unavailable => "unavailable",
            Code::Internal => "internal",
        }
    }
}

/// One failed check of an input against its JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// JSON Pointer into the input (`""` for the whole input).
    pub path: String,
    pub message: String,
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: Code,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's `X-Request-Id`, to quote when reporting a problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Media type of problem bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl Problem {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Problem {
            problem_type: format!(
                "https://longrun.dev/problems/{}",
                code.as_str().replace('_', "-")
            ),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            request_id: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serialises_per_rfc_9457_with_a_code() {
        let problem =
            Problem::new(Code::InvalidInput, "steps must be at least 1").with_errors(vec![
                FieldError {
                    path: "/steps".into(),
                    message: "0 is less than the minimum of 1".into(),
                },
            ]);
        let json = serde_json::to_value(&problem).expect("serialises");
        assert_eq!(json["status"], 422);
        assert_eq!(json["code"], "invalid_input");
        assert_eq!(json["type"], "https://longrun.dev/problems/invalid-input");
        assert_eq!(json["errors"][0]["path"], "/steps");
        assert!(json.get("request_id").is_none());
    }

    #[test]
    fn codes_serialise_as_their_names() {
        for code in [
            Code::RateLimited,
            Code::UnsupportedMediaType,
            Code::UnknownKind,
            Code::IdempotencyKeyReused,
        ] {
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json, code.as_str());
        }
    }
}
