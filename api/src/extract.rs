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

/// Parses JSON, nesting bounded by serde_json's recursion limit (128);
/// integral numbers written as floats (`1.0`, `1e3`, `-0`) come out as
/// integers (see [`integral_floats_to_integers`]).
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let mut value = serde_json::from_slice(body).map_err(|err| {
        ApiError::new(
            Code::InvalidJson,
            format!("the body is not valid JSON: {err}"),
        )
    })?;
    integral_floats_to_integers(&mut value);
    Ok(value)
}

/// JSON does not tell `2` from `2.0` or `2e0`, and JSON Schema counts all of
/// them as integers; handlers deserialise integers, which serde refuses to
/// read from a float. So every float without a fractional part that fits a
/// 64-bit integer becomes that integer (`-0` becomes `0`). Recursion is
/// bounded by the parser's nesting limit.
pub fn integral_floats_to_integers(value: &mut Value) {
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    match value {
        Value::Number(number) if number.is_f64() => {
            let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0) else {
                return;
            };
            if (0.0..TWO_POW_64).contains(&float) {
                *number = (float as u64).into();
            } else if (-TWO_POW_63..0.0).contains(&float) {
                *number = (float as i64).into();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
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
    fn integral_floats_become_integers() {
        let value = parse_json(
            br#"{"a": 2.0, "b": [1e3, -0, -0.0, -2e0], "c": 1.5, "d": 1e300, "e": -1e19}"#,
        )
        .expect("parses");
        assert_eq!(
            value.to_string(),
            r#"{"a":2,"b":[1000,0,0,-2],"c":1.5,"d":1e+300,"e":-1e+19}"#
        );
        assert!(value["a"].is_u64() && value["b"][3].is_i64());
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
