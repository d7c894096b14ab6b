//! [`ClientError`]: what can go wrong talking to longrun, and how an HTTP
//! error answer becomes one (RFC 9457 problem details, `Retry-After`).

use std::time::{Duration, SystemTime};

use longrun_shared::problem::{Code, FieldError, Problem};
use serde::Deserialize;

/// What can go wrong talking to longrun.
///
/// Branch on the problem's [`Code`] with [`ClientError::code`]:
///
/// ```no_run
/// # async fn demo(client: longrun_client::Client) {
/// use longrun_client::{ClientError, Code};
///
/// match client.get("0193a3f6-0000-7000-8000-000000000000").await {
///     Ok(operation) => println!("{}", operation.status),
///     Err(err) if err.code() == Some(Code::NotFound) => println!("no such operation"),
///     Err(err) if err.is_transient() => println!("try again in {:?}", err.retry_after()),
///     Err(err) => eprintln!("{err}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a problem (4xx/5xx), or the gateway refused
    /// or ended the connection for a reason it named.
    #[error("{} ({}): {}", .problem.title, .problem.code.as_str(), .problem.detail)]
    Problem {
        /// The RFC 9457 body (synthesised from the status when the body
        /// was not a problem, e.g. from a proxy).
        problem: Box<Problem>,
        /// The `Retry-After` the server advised, in seconds.
        retry_after: Option<u64>,
    },
    /// The server could not be reached (refused, reset, timed out, DNS).
    #[error("cannot reach {url}: {message}")]
    Connection {
        /// The base URL that was tried.
        url: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        message: String,
    },
    /// The server answered something this client does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The problem's code, when the server sent one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem.code),
            _ => None,
        }
    }

    /// The problem, when the server sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// How long the server asked to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Problem {
                retry_after: Some(seconds),
                ..
            } => Some(Duration::from_secs(*seconds)),
            _ => None,
        }
    }

    /// True when the same request may succeed later: the server was
    /// unreachable, unavailable (503) or rate limiting (429).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connection { .. } => true,
            ClientError::Problem { problem, .. } => {
                matches!(problem.code, Code::Unavailable | Code::RateLimited)
            }
            ClientError::Protocol(_) => false,
        }
    }

    /// True when the token was missing, invalid or expired.
    pub fn is_unauthorized(&self) -> bool {
        self.code() == Some(Code::Unauthorized)
    }
}

/// A problem of `code` with `detail`, as the client reports refusals that
/// did not come as an HTTP body (WebSocket close codes and error frames).
pub(crate) fn problem(code: Code, detail: impl Into<String>) -> ClientError {
    ClientError::Problem {
        problem: Box::new(Problem::new(code, detail)),
        retry_after: None,
    }
}

/// A problem body as servers and proxies may send it: every field optional,
/// an unknown `code` tolerated (a newer server may have more).
#[derive(Deserialize)]
struct LenientProblem {
    #[serde(rename = "type")]
    problem_type: Option<String>,
    title: Option<String>,
    detail: Option<String>,
    code: Option<String>,
    #[serde(default)]
    errors: Vec<FieldError>,
    request_id: Option<String>,
}

/// The error an HTTP answer with `status` (4xx/5xx), `Retry-After` header
/// value and `body` means. Never fails: a body that is not a problem
/// (an HTML page from a proxy, nothing at all) still gives a problem whose
/// code follows from the status.
pub(crate) fn error_from_response(
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> ClientError {
    let by_status = code_of_status(status);
    let problem = match serde_json::from_slice::<LenientProblem>(body) {
        Ok(lenient) => {
            let code = lenient
                .code
                .and_then(|code| serde_json::from_value(serde_json::Value::String(code)).ok())
                .unwrap_or(by_status);
            let mut problem = Problem::new(
                code,
                lenient.detail.unwrap_or_else(|| status_detail(status)),
            );
            problem.status = status;
            if let Some(title) = lenient.title.filter(|t| !t.is_empty()) {
                problem.title = title;
            }
            if let Some(problem_type) = lenient.problem_type {
                problem.problem_type = problem_type;
            }
            problem.errors = lenient.errors;
            problem.request_id = lenient.request_id;
            problem
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let detail = if text.is_empty() || text.starts_with('<') {
                status_detail(status)
            } else {
                format!("{}: {}", status_detail(status), cut(text, 200))
            };
            let mut problem = Problem::new(by_status, detail);
            problem.status = status;
            problem
        }
    };
    ClientError::Problem {
        problem: Box::new(problem),
        retry_after: retry_after.and_then(|value| parse_retry_after(value, SystemTime::now())),
    }
}

/// The contract's code for an HTTP status, for answers without a problem body.
fn code_of_status(status: u16) -> Code {
    match status {
        401 => Code::Unauthorized,
        403 => Code::Forbidden,
        404 => Code::NotFound,
        405 => Code::MethodNotAllowed,
        409 => Code::Conflict,
        413 => Code::PayloadTooLarge,
        415 => Code::UnsupportedMediaType,
        422 => Code::InvalidInput,
        429 => Code::RateLimited,
        502..=504 => Code::Unavailable,
        500..=599 => Code::Internal,
        _ => Code::BadRequest,
    }
}

fn status_detail(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    format!("HTTP {status} {reason}")
}

fn cut(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max_chars).collect();
    format!("{kept}…")
}

/// Seconds to wait from a `Retry-After` value: delta-seconds or an
/// HTTP-date (RFC 9110 §10.2.3), counted from `now`.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).map_or(0, |wait| wait.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(err: &ClientError) -> &Problem {
        err.problem().expect("a problem")
    }

    #[test]
    fn a_problem_body_is_read_with_its_code_errors_and_retry_after() {
        let body =
            br#"{"type":"https://longrun.dev/problems/invalid-input","title":"Invalid input",
            "status":422,"detail":"the input does not match the schema","code":"invalid_input",
            "errors":[{"path":"/steps","message":"0 is less than the minimum of 1"}],
            "request_id":"r-1"}"#;
        let err = error_from_response(422, None, body);
        let problem = problem_of(&err);
        assert_eq!(problem.code, Code::InvalidInput);
        assert_eq!(problem.detail, "the input does not match the schema");
        assert_eq!(problem.errors[0].path, "/steps");
        assert_eq!(problem.request_id.as_deref(), Some("r-1"));
        assert!(!err.is_transient());

        let busy = error_from_response(
            503,
            Some("2"),
            br#"{"title":"Service unavailable","status":503,"detail":"redis is down","code":"unavailable"}"#,
        );
        assert_eq!(busy.code(), Some(Code::Unavailable));
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(2)));
        assert!(busy.is_transient());
    }

    #[test]
    fn an_unknown_code_falls_back_to_the_status_and_keeps_the_text() {
        let body =
            br#"{"title":"Quota exceeded","status":429,"detail":"100 per hour","code":"quota"}"#;
        let err = error_from_response(429, None, body);
        let problem = problem_of(&err);
        assert_eq!(problem.code, Code::RateLimited);
        assert_eq!(problem.title, "Quota exceeded");
        assert_eq!(problem.detail, "100 per hour");
    }

    #[test]
    fn a_body_that_is_not_a_problem_still_gives_a_clear_one() {
        let html = error_from_response(502, None, b"<html><body>Bad Gateway</body></html>");
        assert_eq!(html.code(), Some(Code::Unavailable));
        assert_eq!(problem_of(&html).detail, "HTTP 502 Bad Gateway");
        assert_eq!(problem_of(&html).status, 502);

        let empty = error_from_response(401, None, b"");
        assert!(empty.is_unauthorized());
        assert_eq!(problem_of(&empty).detail, "HTTP 401 Unauthorized");

        let text = error_from_response(404, None, b"no route here\n");
        assert_eq!(text.code(), Some(Code::NotFound));
        assert_eq!(
            problem_of(&text).detail,
            "HTTP 404 Not Found: no route here"
        );

        let teapot = error_from_response(418, None, b"");
        assert_eq!(teapot.code(), Some(Code::BadRequest));
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(3));
        assert_eq!(parse_retry_after(" 120 ", now), Some(120));
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(0),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn connection_errors_are_transient_and_protocol_errors_are_not() {
        let refused = ClientError::Connection {
            url: "http://127.0.0.1:1".into(),
            message: "Connection refused".into(),
        };
        assert!(refused.is_transient());
        assert_eq!(refused.code(), None);
        assert!(!ClientError::Protocol("not JSON".into()).is_transient());
    }
}
