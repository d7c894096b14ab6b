//! Raw HTTP against the api, for tests that check status codes, headers
//! and problem bodies exactly (the typed client hides them).

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

/// A plain HTTP client pointed at one api.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client builds"),
        }
    }

    /// A request without credentials.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A request with `token` as its bearer token.
    pub fn with_token(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.anonymous(method, path).bearer_auth(token)
    }

    /// A request as `sub` (a fresh test token).
    pub fn as_user(&self, method: Method, path: &str, sub: &str) -> RequestBuilder {
        self.with_token(method, path, &crate::token(sub))
    }

    /// `POST /v1/{kind with / for .}` with a JSON body, as `sub`; the reply.
    pub async fn start(&self, sub: &str, kind: &str, input: &Value) -> Reply {
        send(
            self.as_user(
                Method::POST,
                &format!("/v1/{}", kind.replacen('.', "/", 1)),
                sub,
            )
            .json(input),
        )
        .await
    }

    /// Starts an operation and returns its id (panics unless 202).
    pub async fn start_ok(&self, sub: &str, kind: &str, input: &Value) -> String {
        let reply = self.start(sub, kind, input).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        reply.json()["id"].as_str().expect("id").to_owned()
    }

    /// `GET path` as `sub`; the reply.
    pub async fn get(&self, sub: &str, path: &str) -> Reply {
        send(self.as_user(Method::GET, path, sub)).await
    }
}

/// What the api answered.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Sends a request and reads the whole answer.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request.send().await.expect("the api answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body reads").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts an RFC 9457 problem with this status and code; returns its body.
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.text()
        );
        let problem = self.json();
        assert_eq!(problem["status"], status, "{problem}");
        assert_eq!(problem["code"], code, "{problem}");
        for field in ["type", "title", "detail"] {
            assert!(
                problem[field].as_str().is_some_and(|v| !v.is_empty()),
                "problem lacks `{field}`: {problem}"
            );
        }
        assert_eq!(
            problem["request_id"].as_str(),
            self.header("x-request-id").as_deref(),
            "the problem quotes the request id"
        );
        problem
    }

    /// `Retry-After` in whole seconds, if present.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after").and_then(|v| v.parse().ok())
    }
}
