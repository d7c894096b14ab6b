//! Request extractors that fail with the contract's problems instead of
//! axum's plain-text rejections: the authenticated [`Caller`], query
//! strings ([`Params`]) and JSON bodies ([`JsonInput`]).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use longrun_shared::auth::{Principal, Verifier};
use longrun_shared::problem::Code;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// The verified bearer token of the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S> FromRequestParts<S> for Caller
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Verifier::from_ref(state);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::new(Code::Unauthorized, "missing Authorization: Bearer <token>")
            })?
            .to_str()
            .map_err(|_| {
                ApiError::new(Code::Unauthorized, "the Authorization header is not text")
            })?;
        Ok(Caller(verifier.verify_header(header)?))
    }
}

/// A query string, with a 400 `bad_request` naming the problem.
#[derive(Debug, Clone)]
pub struct Params<T>(pub T);

impl<T, S> FromRequestParts<S> for Params<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Params(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// Path parameters, with a 404 when they cannot be read (e.g. bad UTF-8).
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParams(value))
            .map_err(|_| ApiError::new(Code::NotFound, "no such resource"))
    }
}

/// A JSON request body: 415 unless it is `application/json` (or `+json`),
/// 413 past the body limit, 400 with the line and column when it does not
/// parse. An empty body (any content type, or none) reads as `{}`, so kinds
/// whose input has defaults start with a bare `POST`.
#[derive(Debug, Clone)]
pub struct JsonInput(pub Value);

impl<S> FromRequest<S> for JsonInput
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonInput(Value::Object(Default::default())));
        }
        match content_type {
            Some(ref media) if is_json(media) => parse_json(&body).map(JsonInput),
            Some(media) => Err(ApiError::new(
                Code::UnsupportedMediaType,
                format!("send the input as application/json, not `{media}`"),
            )),
            None => Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send the input with Content-Type: application/json",
            )),
        }
    }
}

fn is_json(media: &str) -> bool {
    let essence = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses JSON, nesting bounded by serde_json's recursion limit (128).
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::new(
            Code::InvalidJson,
            format!("the body is not valid JSON: {err}"),
        )
    })
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    let text = rejection.body_text();
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        || text.contains("length limit")
    {
        ApiError::new(
            Code::PayloadTooLarge,
            "the body is larger than the configured limit",
        )
    } else {
        ApiError::bad_request(format!("could not read the body: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn bad_json_names_line_and_column() {
        let err = parse_json(b"{\n  \"steps\": }").expect_err("rejected");
        assert_eq!(err.problem.code, Code::InvalidJson);
        assert!(
            err.problem.detail.contains("line 2"),
            "{}",
            err.problem.detail
        );
    }
}
