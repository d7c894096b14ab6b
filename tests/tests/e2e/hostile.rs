//! The hostile-input corpus: what a careless or malicious client sends —
//! deep nesting, absurd numbers, invalid UTF-8, oversized bodies and frames,
//! wrong types, unknown fields, wrong content types, bad query values and
//! ids, forged and broken tokens. Each case is answered with the contract's
//! error (problem+json with its exact status and code over HTTP; an `error`
//! frame, an HTTP 401 at the upgrade or a close code over WebSocket) —
//! never a 500, a panic or a hang — and afterwards the platform still runs
//! a normal operation to completion.
//!
//! The foreign-key tokens are data files under `tests/corpus/jwt/`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey};
use longrun_client::StartOptions;
use longrun_shared::auth::unix_now;
use longrun_tests::{Platform, SECRET, WsClient, token};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

/// Longest any single answer may take before the test calls it a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
const TEN_MB: usize = 10 * 1024 * 1024;
const PROBLEM_JSON: &str = "application/problem+json";

// ---------------------------------------------------------------- helpers

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .expect("http client")
}

/// Asserts `response` is a problem with exactly `status` and `code`; returns its body.
async fn expect_problem(case: &str, response: reqwest::Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let media = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let unauthorized_challenge = response.headers().get("www-authenticate").cloned();
    let body = response.bytes().await.expect("body read");
    let shown = String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned();
    assert_eq!(got, status, "{case}: status; body {shown}");
    assert_eq!(media.as_deref(), Some(PROBLEM_JSON), "{case}: media type");
    let problem: Value = serde_json::from_slice(&body).expect("a problem is JSON");
    assert_eq!(problem["code"], code, "{case}: code; body {shown}");
    assert_eq!(problem["status"], status, "{case}: status field");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{case}: detail"
    );
    if status == 401 {
        assert_eq!(
            unauthorized_challenge
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{case}: WWW-Authenticate"
        );
    }
    problem
}

/// A request to the api as `sub`.
fn as_owner(platform: &Platform, method: Method, path: &str, sub: &str) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", platform.api_url))
        .bearer_auth(token(sub))
}

/// POSTs `body` to `path` as owner `hostile`, with `content_type` (none
/// when `None`).
async fn post_raw(
    platform: &Platform,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = as_owner(platform, Method::POST, path, "hostile");
    if let Some(media) = content_type {
        request = request.header(CONTENT_TYPE, media);
    }
    request.body(body).send().await.expect("the api answers")
}

/// POSTs `body` (raw bytes, JSON content type) to start `kind`.
async fn start_raw(
    platform: &Platform,
    kind: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let path = format!("/v1/{}", kind.replacen('.', "/", 1));
    post_raw(platform, &path, Some("application/json"), body).await
}

/// The field paths of a 422's `errors`.
fn error_paths(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("invalid_input carries errors")
        .iter()
        .map(|error| {
            error["path"]
                .as_str()
                .expect("each error has a path")
                .to_owned()
        })
        .collect()
}

/// Proves the platform survived: a normal operation starts, runs and succeeds.
async fn assert_still_serving(platform: &Platform) {
    let client = platform.client("survivor");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 20, "steps": 2}),
            &StartOptions::default(),
        )
        .await
        .expect("a normal start is accepted after the corpus");
    let done = client
        .wait(&op.id, Duration::from_secs(15))
        .await
        .expect("waits");
    assert_eq!(done.status.as_str(), "succeeded", "{done:?}");
    let mut ws = platform.ws("survivor").await;
    ws.subscribe(&op.id, Some(0)).await;
    let events = ws.events_until_terminal(&op.id).await;
    assert_eq!(
        events.len() as u64,
        done.seq,
        "the gateway still streams every event"
    );
}

/// Starts the one operation `sub` should own after a test's refused
/// requests; [`assert_only_sentinel`] checks that nothing else appeared.
async fn sentinel(platform: &Platform, sub: &str) -> String {
    started(platform, sub, json!({"duration_ms": 0, "steps": 1})).await
}

/// Proves that none of the refused requests started anything for `sub`.
async fn assert_only_sentinel(platform: &Platform, sub: &str, sentinel: &str) {
    let page = platform
        .admin("auditor")
        .list(&Default::default())
        .await
        .expect("lists");
    let ids: Vec<&str> = page
        .operations
        .iter()
        .filter(|op| op.owner == sub)
        .map(|op| op.id.as_str())
        .collect();
    assert_eq!(ids, [sentinel], "only the sentinel exists for {sub}");
}

/// Starts a demo.sleep as `sub` and returns its id.
async fn started(platform: &Platform, sub: &str, input: Value) -> String {
    platform
        .client(sub)
        .start("demo.sleep", &input, &StartOptions::default())
        .await
        .expect("started")
        .id
}

// ------------------------------------------------------------ HTTP bodies

#[tokio::test]
async fn deeply_nested_json_is_invalid_json_not_a_stack_overflow() {
    let platform = Platform::start().await;
    let cases: Vec<(&str, String)> = vec![
        ("100k [", "[".repeat(100_000)),
        (
            "100k balanced []",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        ("100k {\"a\":", "{\"a\":".repeat(100_000)),
        (
            "100k nested objects in a field",
            format!(
                "{{\"duration_ms\":{}1{}}}",
                "{\"a\":".repeat(100_000),
                "}".repeat(100_000)
            ),
        ),
        (
            "129 levels",
            format!("{}{}", "[".repeat(129), "]".repeat(129)),
        ),
    ];
    for (case, body) in cases {
        let problem = expect_problem(
            case,
            start_raw(&platform, "demo.sleep", body).await,
            400,
            "invalid_json",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("recursion limit") || d.contains("EOF")),
            "{case}: {problem}"
        );
    }
    // Nesting within the parser's bound is read, and refused by the schema.
    let nested = format!(
        "{{\"duration_ms\":{}1{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let problem = expect_problem(
        "100 levels",
        start_raw(&platform, "demo.sleep", nested).await,
        422,
        "invalid_input",
    )
    .await;
    assert_eq!(error_paths(&problem), ["/duration_ms"]);
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn huge_and_odd_numbers_get_exact_answers() {
    let platform = Platform::start().await;
    // Out of the range of a double: not representable, so not valid input JSON.
    let huge_literal = format!(r#"{{"steps": 1{}}}"#, "0".repeat(400));
    for (case, body) in [
        ("1e400", r#"{"duration_ms": 1e400}"#),
        ("-1e400", r#"{"duration_ms": -1e400}"#),
        ("big exponent", r#"{"steps": 1e99999999999999999999}"#),
        ("huge integer literal", huge_literal.as_str()),
    ] {
        let problem = expect_problem(
            case,
            start_raw(&platform, "demo.sleep", body.to_owned()).await,
            400,
            "invalid_json",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("out of range")),
            "{case}: {problem}"
        );
    }
    // Representable but outside the schema: 422 at the field.
    for (case, kind, body, path) in [
        (
            "2^64+1",
            "demo.sleep",
            r#"{"duration_ms": 18446744073709551617}"#,
            "/duration_ms",
        ),
        (
            "2^64",
            "calc.primes",
            r#"{"limit": 18446744073709551616}"#,
            "/limit",
        ),
        (
            "-2^63-1",
            "demo.sleep",
            r#"{"fail_times": -9223372036854775809}"#,
            "/fail_times",
        ),
        (
            "-0 below a minimum of 1",
            "demo.sleep",
            r#"{"steps": -0}"#,
            "/steps",
        ),
        (
            "-0.0 below a minimum of 1",
            "demo.sleep",
            r#"{"steps": -0.0}"#,
            "/steps",
        ),
        (
            "a fraction for an integer",
            "demo.sleep",
            r#"{"duration_ms": 1.5}"#,
            "/duration_ms",
        ),
        (
            "the smallest subnormal",
            "demo.sleep",
            r#"{"duration_ms": 5e-324}"#,
            "/duration_ms",
        ),
        (
            "1e308 for a bounded integer",
            "calc.primes",
            r#"{"limit": 1e308}"#,
            "/limit",
        ),
        (
            "a negative array index",
            "demo.fanout",
            r#"{"fail_children": [-1]}"#,
            "/fail_children/0",
        ),
    ] {
        let problem = expect_problem(
            case,
            start_raw(&platform, kind, body).await,
            422,
            "invalid_input",
        )
        .await;
        assert_eq!(error_paths(&problem), [path], "{case}");
    }
    // JSON does not tell 1 from 1.0 or 0 from -0: the schema counts them as
    // integers, so the worker must read them as such and run the operation.
    let client = platform.client("hostile");
    for (case, body, slept) in [
        ("-0", r#"{"duration_ms": -0, "steps": 1}"#, 0),
        (
            "floats and exponents",
            r#"{"duration_ms": 1e1, "steps": 2.0, "fail_times": 0E5}"#,
            10,
        ),
        (
            "-0.0 and a big exponent form",
            r#"{"duration_ms": -0.0, "steps": 0.01e2}"#,
            0,
        ),
    ] {
        let response = start_raw(&platform, "demo.sleep", body).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{case}");
        let op: Value = response.json().await.expect("the resource");
        let id = op["id"].as_str().expect("an id");
        let done = client
            .wait(id, Duration::from_secs(15))
            .await
            .expect("waits");
        assert_eq!(
            done.status.as_str(),
            "succeeded",
            "{case}: {:?}",
            done.error
        );
        assert_eq!(done.result, json!({"slept_ms": slept}), "{case}");
    }
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn invalid_utf8_in_bodies_headers_and_paths_is_refused_cleanly() {
    let platform = Platform::start().await;
    let before = sentinel(&platform, "hostile").await;
    let bodies: [(&str, &[u8]); 5] = [
        (
            "a bare 0xFF in a string",
            b"{\"csv\": \"\xff\", \"columns\": [{\"name\": \"a\"}]}",
        ),
        (
            "an overlong encoding",
            b"{\"csv\": \"\xc0\xaf\", \"columns\": [{\"name\": \"a\"}]}",
        ),
        (
            "a surrogate encoded in UTF-8",
            b"{\"csv\": \"\xed\xa0\x80\", \"columns\": [{\"name\": \"a\"}]}",
        ),
        (
            "a truncated sequence",
            b"{\"csv\": \"\xe2\x82\", \"columns\": [{\"name\": \"a\"}]}",
        ),
        ("invalid UTF-8 outside strings", b"{\xff: 1}"),
    ];
    for (case, body) in bodies {
        expect_problem(
            case,
            start_raw(&platform, "data.import", body.to_vec()).await,
            400,
            "invalid_json",
        )
        .await;
    }
    for (case, body) in [
        (
            "a lone leading surrogate escape",
            r#"{"csv": "\ud800", "columns": [{"name": "a"}]}"#,
        ),
        (
            "a lone trailing surrogate escape",
            r#"{"csv": "\udc00", "columns": [{"name": "a"}]}"#,
        ),
        (
            "a bad escape",
            r#"{"csv": "\x41", "columns": [{"name": "a"}]}"#,
        ),
        (
            "a raw control character",
            "{\"csv\": \"a\u{1}b\", \"columns\": [{\"name\": \"a\"}]}",
        ),
    ] {
        expect_problem(
            case,
            start_raw(&platform, "data.import", body).await,
            400,
            "invalid_json",
        )
        .await;
    }
    let latin1 =
        HeaderValue::from_bytes(b"Bearer \xff\xfe").expect("obs-text is a legal header byte");
    let response = http()
        .get(format!("{}/v1/operations", platform.api_url))
        .header("authorization", latin1)
        .send()
        .await
        .expect("answers");
    expect_problem("non-UTF-8 Authorization", response, 401, "unauthorized").await;
    let response = as_owner(&platform, Method::POST, "/v1/demo/sleep", "hostile")
        .header(CONTENT_TYPE, "application/json")
        .header(
            "idempotency-key",
            HeaderValue::from_bytes(b"key-\xff").expect("legal bytes"),
        )
        .body("{}")
        .send()
        .await
        .expect("answers");
    expect_problem("non-UTF-8 Idempotency-Key", response, 400, "bad_request").await;
    let response = as_owner(&platform, Method::POST, "/v1/demo/sleep", "hostile")
        .header(
            CONTENT_TYPE,
            HeaderValue::from_bytes(b"application/json\xff").expect("legal bytes"),
        )
        .body("{}")
        .send()
        .await
        .expect("answers");
    expect_problem(
        "non-UTF-8 Content-Type",
        response,
        415,
        "unsupported_media_type",
    )
    .await;
    for (method, path) in [
        (Method::GET, "/v1/operations/%FF%FE"),
        (Method::GET, "/v1/operations/%C0%AF/events"),
        (Method::POST, "/v1/operations/%ED%A0%80/cancel"),
        (Method::POST, "/v1/demo/%FF"),
        (Method::POST, "/v1/%ED%A0%80/sleep"),
    ] {
        let response = as_owner(&platform, method, path, "hostile")
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("answers");
        expect_problem(path, response, 404, "not_found").await;
    }
    // None of it started anything.
    assert_only_sentinel(&platform, "hostile", &before).await;
    assert_still_serving(&platform).await;
}

/// Sends a raw HTTP/1.1 request with a chunked body of `body_len` bytes of
/// `fill`; returns the status line's code and the body.
async fn chunked_post(api_url: &str, path: &str, body_len: usize, fill: u8) -> (u16, Vec<u8>) {
    let addr = api_url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        token("hostile")
    );
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![fill; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            writer.write_all(&chunk[..n]).await?;
            writer.write_all(b"\r\n").await?;
            left -= n;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(())
    };
    let read = async {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response).await;
        response
    };
    // The server may answer (and stop reading) before the body is all sent.
    let (_, response) = tokio::time::timeout(ANSWER_WITHIN, async { tokio::join!(write, read) })
        .await
        .expect("answered in time");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:.300}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.as_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_big_ones_under_it_get_small_answers() {
    let platform = Platform::start().await;
    let before = sentinel(&platform, "hostile").await;
    let limit = platform.config.body_limit_bytes;
    // Over the default limit, announced by Content-Length.
    let body = vec![b' '; limit + 1];
    expect_problem(
        "limit + 1 with Content-Length",
        start_raw(&platform, "demo.sleep", body).await,
        413,
        "payload_too_large",
    )
    .await;
    // Over it, chunked (no length known up front).
    let (status, body) =
        chunked_post(&platform.api_url, "/v1/demo/sleep", limit + 64 * 1024, b' ').await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("payload_too_large"));
    // 10 MB under the default limit: read, refused by the schema, and the
    // answer does not echo the 10 MB back.
    let huge_string = format!(r#"{{"duration_ms": "{}"}}"#, "9".repeat(TEN_MB));
    let response = start_raw(&platform, "demo.sleep", huge_string).await;
    let length = response.content_length();
    let problem = expect_problem(
        "a 10 MB string for an integer",
        response,
        422,
        "invalid_input",
    )
    .await;
    assert_eq!(error_paths(&problem), ["/duration_ms"]);
    assert!(
        length.is_some_and(|n| n < 16 * 1024),
        "answer of {length:?} bytes"
    );
    let huge_field = format!(r#"{{"x{}": 1}}"#, "y".repeat(TEN_MB));
    let response = start_raw(&platform, "demo.sleep", huge_field).await;
    let length = response.content_length();
    let problem =
        expect_problem("a 10 MB unknown field name", response, 422, "invalid_input").await;
    assert_eq!(error_paths(&problem), [""]);
    assert!(
        length.is_some_and(|n| n < 16 * 1024),
        "answer of {length:?} bytes"
    );
    let ten_mb_of_brackets = "[".repeat(TEN_MB);
    expect_problem(
        "10 MB of [",
        start_raw(&platform, "demo.sleep", ten_mb_of_brackets).await,
        400,
        "invalid_json",
    )
    .await;
    assert_only_sentinel(&platform, "hostile", &before).await;
    assert_still_serving(&platform).await;
    platform.stop().await;

    // With a 1 MiB limit, 10 MB bodies are 413 however they are sent.
    let small = Platform::builder()
        .config(|config| config.body_limit_bytes = 1024 * 1024)
        .start()
        .await;
    let small_before = sentinel(&small, "hostile").await;
    let body = format!(
        r#"{{"csv": "{}", "columns": [{{"name": "a"}}]}}"#,
        "a".repeat(TEN_MB)
    );
    expect_problem(
        "10 MB with Content-Length",
        start_raw(&small, "data.import", body).await,
        413,
        "payload_too_large",
    )
    .await;
    let (status, body) = chunked_post(&small.api_url, "/v1/data/import", TEN_MB, b'[').await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("payload_too_large"));
    assert_only_sentinel(&small, "hostile", &small_before).await;
    assert_still_serving(&small).await;
}

/// A minimal valid input per built-in kind, so that one wrong field is the
/// only thing wrong.
fn minimal_input(kind: &str) -> Value {
    match kind {
        "demo.sleep" | "demo.fanout" => json!({}),
        "data.import" => json!({"csv": "a\n1", "columns": [{"name": "a"}]}),
        "calc.primes" => json!({"limit": 10}),
        "data.import_batch" => json!({"csv": "1", "columns": [{"name": "a"}], "positions": [0]}),
        other => panic!("add a minimal input for the new built-in kind `{other}`"),
    }
}

/// Values of the wrong type (or out of an enum) for a property's schema.
fn wrong_values(schema: &Value) -> Vec<Value> {
    match schema["type"].as_str() {
        Some("integer") => vec![
            json!("1"),
            json!(true),
            json!(1.5),
            json!(null),
            json!([1]),
            json!({"n": 1}),
        ],
        Some("number") => vec![json!("1"), json!(false), json!(null)],
        Some("string") => vec![
            json!(5),
            json!(true),
            json!(null),
            json!(["a"]),
            json!({"s": "a"}),
        ],
        Some("boolean") => vec![json!("true"), json!(1), json!(null)],
        Some("array") => vec![json!({"0": 1}), json!("[]"), json!(3)],
        Some("object") => vec![json!([]), json!("{}")],
        _ if schema.get("enum").is_some() => vec![json!("no-such-choice"), json!(7), json!(null)],
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn wrong_types_and_unknown_fields_of_every_kind_are_422_at_their_path() {
    let platform = Platform::start().await;
    let before = sentinel(&platform, "hostile").await;
    let kinds = platform.client("hostile").kinds().await.expect("kinds");
    assert!(kinds.len() >= 4, "{kinds:?}");
    let mut checked = 0;
    for spec in &kinds {
        let base = minimal_input(&spec.kind);
        let properties = spec.input_schema["properties"]
            .as_object()
            .expect("properties");
        for (name, schema) in properties {
            for wrong in wrong_values(schema) {
                let mut input = base.clone();
                input[name] = wrong.clone();
                let case = format!("{} {name} = {wrong}", spec.kind);
                let response = start_raw(&platform, &spec.kind, input.to_string()).await;
                let problem = expect_problem(&case, response, 422, "invalid_input").await;
                // The field, and at most the root (a `oneOf` the field now also satisfies).
                let paths = error_paths(&problem);
                assert!(paths.contains(&format!("/{name}")), "{case}: {paths:?}");
                assert!(
                    paths
                        .iter()
                        .all(|p| *p == format!("/{name}") || p.is_empty()),
                    "{case}: {paths:?}"
                );
                checked += 1;
            }
            // One level down: the fields of an array's object items.
            if let Some(items) = schema["items"]["properties"].as_object()
                && base[name][0].is_object()
            {
                for (field, item_schema) in items {
                    for wrong in wrong_values(item_schema) {
                        let mut input = base.clone();
                        input[name][0][field] = wrong.clone();
                        let case = format!("{} {name}[0].{field} = {wrong}", spec.kind);
                        let response = start_raw(&platform, &spec.kind, input.to_string()).await;
                        let problem = expect_problem(&case, response, 422, "invalid_input").await;
                        let paths = error_paths(&problem);
                        assert!(!paths.is_empty(), "{case}");
                        assert!(
                            paths.iter().all(|p| *p == format!("/{name}/0/{field}")),
                            "{case}: {paths:?}"
                        );
                        checked += 1;
                    }
                }
                let mut input = base.clone();
                input[name][0]["surprise"] = json!(true);
                let case = format!("{} {name}[0] unknown field", spec.kind);
                let problem = expect_problem(
                    &case,
                    start_raw(&platform, &spec.kind, input.to_string()).await,
                    422,
                    "invalid_input",
                )
                .await;
                assert_eq!(error_paths(&problem), [format!("/{name}/0")], "{case}");
            }
        }
        let mut input = base.clone();
        input["surprise"] = json!({"nested": [1, 2, 3]});
        let case = format!("{} unknown field", spec.kind);
        let problem = expect_problem(
            &case,
            start_raw(&platform, &spec.kind, input.to_string()).await,
            422,
            "invalid_input",
        )
        .await;
        assert_eq!(error_paths(&problem), [""], "{case}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("surprise")),
            "{problem}"
        );
        for not_an_object in ["[]", "[{}]", "\"{}\"", "42", "null", "true"] {
            let case = format!("{} body {not_an_object}", spec.kind);
            let problem = expect_problem(
                &case,
                start_raw(&platform, &spec.kind, not_an_object).await,
                422,
                "invalid_input",
            )
            .await;
            assert!(
                error_paths(&problem).iter().all(String::is_empty),
                "{case}: {problem}"
            );
        }
    }
    assert!(checked > 60, "only {checked} wrong-type cases");
    // Kinds that do not exist, or cannot (bad names).
    for path in [
        "/v1/demo/nothing",
        "/v1/Demo/sleep",
        "/v1/demo/sleep.x",
        "/v1/..%2F../sleep",
        "/v1/a%20b/c",
        &format!("/v1/{}/x", "m".repeat(65)),
    ] {
        let response = post_raw(&platform, path, Some("application/json"), "{}").await;
        expect_problem(path, response, 404, "unknown_kind").await;
    }
    assert_only_sentinel(&platform, "hostile", &before).await;
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn wrong_content_types_are_415_and_broken_json_is_400() {
    let platform = Platform::start().await;
    let before = sentinel(&platform, "hostile").await;
    for media in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "application/json-seq",
        "json",
        "",
        "application/",
        "*/*",
    ] {
        let response = post_raw(&platform, "/v1/demo/sleep", Some(media), r#"{"steps": 1}"#).await;
        expect_problem(
            &format!("Content-Type `{media}`"),
            response,
            415,
            "unsupported_media_type",
        )
        .await;
    }
    let response = post_raw(&platform, "/v1/demo/sleep", None, r#"{"steps": 1}"#).await;
    expect_problem(
        "a body without Content-Type",
        response,
        415,
        "unsupported_media_type",
    )
    .await;
    for (case, body) in [
        ("truncated", r#"{"steps": "#),
        ("trailing garbage", r#"{"steps": 1} {"#),
        ("two documents", "{}{}"),
        ("single quotes", "{'steps': 1}"),
        ("a trailing comma", r#"{"steps": 1,}"#),
        ("NaN", r#"{"steps": NaN}"#),
        ("Infinity", r#"{"duration_ms": Infinity}"#),
        ("a comment", "{/* hi */}"),
        ("a byte-order mark", "\u{feff}{}"),
        ("a NUL byte", "{}\u{0}"),
    ] {
        expect_problem(
            case,
            start_raw(&platform, "demo.sleep", body).await,
            400,
            "invalid_json",
        )
        .await;
    }
    // An empty body is the input `{}` (docs/api.md): a kind with required
    // fields answers 422 for it, never 400 and never a start.
    for (case, body) in [("an empty body", ""), ("only whitespace", " \n\t ")] {
        expect_problem(
            case,
            start_raw(&platform, "data.import", body).await,
            422,
            "invalid_input",
        )
        .await;
    }
    // Charset parameters and +json types are JSON.
    for media in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.longrun+json",
    ] {
        let response = post_raw(
            &platform,
            "/v1/demo/sleep",
            Some(media),
            r#"{"steps": "many"}"#,
        )
        .await;
        expect_problem(media, response, 422, "invalid_input").await;
    }
    assert_only_sentinel(&platform, "hostile", &before).await;
    assert_still_serving(&platform).await;
}

// ---------------------------------------------------- queries, ids, routes

#[tokio::test]
async fn bad_query_values_on_every_route_are_400() {
    let platform = Platform::start().await;
    let id = started(&platform, "hostile", json!({"duration_ms": 0, "steps": 1})).await;
    platform
        .client("hostile")
        .wait(&id, Duration::from_secs(15))
        .await
        .expect("waits");
    let cursor = |raw: &str| URL_SAFE_NO_PAD.encode(raw);
    let list = "/v1/operations";
    let wait = format!("/v1/operations/{id}/wait");
    let events = format!("/v1/operations/{id}/events");
    let children = format!("/v1/operations/{id}/children");
    let cases: Vec<(Method, String, String)> = [
        (list, "limit=0"),
        (list, "limit=1001"),
        (list, "limit=-1"),
        (list, "limit=abc"),
        (list, "limit=1e3"),
        (list, "limit=99999999999999999999999"),
        (list, "limit=1&limit=2"),
        (list, "status=done"),
        (list, "status=RUNNING"),
        (list, "status="),
        (list, "cursor=!!!"),
        (list, "cursor=%FF"),
        (list, &format!("cursor={}", cursor("o:12"))),
        (list, &format!("cursor={}", cursor("b:not-an-id"))),
        (list, &format!("cursor={}", cursor("b:*"))),
        (wait.as_str(), "timeout_ms=abc"),
        (wait.as_str(), "timeout_ms=-1"),
        (wait.as_str(), "timeout_ms=1.5"),
        (wait.as_str(), "timeout_ms=18446744073709551616"),
        (events.as_str(), "after_seq=-1"),
        (events.as_str(), "after_seq=1e3"),
        (events.as_str(), "after_seq=x"),
        (events.as_str(), "limit=0"),
        (events.as_str(), "limit=100000"),
        (children.as_str(), "cursor=%%%"),
        (children.as_str(), &format!("cursor={}", cursor("b:1"))),
        (children.as_str(), &format!("cursor={}", cursor("o:-1"))),
        (children.as_str(), "limit=0"),
    ]
    .into_iter()
    .map(|(path, query)| (Method::GET, path.to_owned(), query.to_owned()))
    .chain(
        [
            "max_attempts=abc",
            "max_attempts=-1",
            "max_attempts=4294967296",
            "timeout_ms=1e3",
            "timeout_ms=-5",
            "deadline_ms=99999999999999999999",
            "backoff=linear",
            "backoff_ms=x",
            "backoff_max_ms=-1",
            "failure_policy=whatever",
        ]
        .into_iter()
        .map(|query| (Method::POST, "/v1/demo/sleep".to_owned(), query.to_owned())),
    )
    .collect();
    for (method, path, query) in cases {
        let response = as_owner(
            &platform,
            method.clone(),
            &format!("{path}?{query}"),
            "hostile",
        )
        .header(CONTENT_TYPE, "application/json")
        .body(if method == Method::POST { "{}" } else { "" })
        .send()
        .await
        .expect("answers");
        expect_problem(
            &format!("{method} {path}?{query}"),
            response,
            400,
            "bad_request",
        )
        .await;
    }
    assert_only_sentinel(&platform, "hostile", &id).await;
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn bad_ids_in_paths_are_404_on_every_route() {
    let platform = Platform::start().await;
    let mine = started(&platform, "hostile", json!({"duration_ms": 0, "steps": 1})).await;
    let theirs = started(
        &platform,
        "someone-else",
        json!({"duration_ms": 0, "steps": 1}),
    )
    .await;
    platform
        .client("hostile")
        .wait(&mine, Duration::from_secs(15))
        .await
        .expect("waits");
    let long = "a".repeat(10_000);
    let ids: Vec<String> = vec![
        "nope".into(),
        "0".into(),
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(),
        "..%2F..%2Fkinds".into(),
        "%27%20OR%201%3D1%20--".into(),
        "*".into(),
        "%7Broot%7D".into(),
        "%00".into(),
        "%20".into(),
        long,
        mine.to_uppercase(),
        format!("{mine}%00"),
        format!("%20{mine}"),
        format!("{{{mine}}}"),
        mine.replace('-', ""),
        "00000000-0000-7000-8000-000000000000".into(),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".into(),
        theirs.clone(),
    ];
    for id in &ids {
        for (method, suffix) in [
            (Method::GET, ""),
            (Method::DELETE, ""),
            (Method::GET, "/wait?timeout_ms=0"),
            (Method::GET, "/events"),
            (Method::GET, "/children"),
            (Method::POST, "/cancel"),
        ] {
            let path = format!("/v1/operations/{id}{suffix}");
            let response = as_owner(&platform, method.clone(), &path, "hostile")
                .send()
                .await
                .expect("answers");
            expect_problem(&format!("{method} {path:.120}"), response, 404, "not_found").await;
        }
    }
    // Unknown routes and wrong methods are problems too.
    for (method, path, status, code) in [
        (
            Method::GET,
            "/v1/operations/x/y/z".to_owned(),
            404,
            "not_found",
        ),
        (Method::GET, "/v2/operations".to_owned(), 404, "not_found"),
        (
            Method::GET,
            format!("/{}", "x/".repeat(2000)),
            404,
            "not_found",
        ),
        (
            Method::PUT,
            format!("/v1/operations/{mine}"),
            405,
            "method_not_allowed",
        ),
        (
            Method::PATCH,
            "/v1/operations".to_owned(),
            405,
            "method_not_allowed",
        ),
        (
            Method::GET,
            "/v1/demo/sleep".to_owned(),
            405,
            "method_not_allowed",
        ),
    ] {
        let response = as_owner(&platform, method.clone(), &path, "hostile")
            .send()
            .await
            .expect("answers");
        expect_problem(&format!("{method} {path:.80}"), response, status, code).await;
    }
    // The other owner's operation is untouched.
    let theirs_now = platform
        .client("someone-else")
        .get(&theirs)
        .await
        .expect("still there");
    assert_ne!(theirs_now.status.as_str(), "cancelled");
    assert_still_serving(&platform).await;
}

// ------------------------------------------------------------------ tokens

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.claims.signature` over raw header and claims text, signed with
/// `key` by `algorithm` (HMAC).
fn signed_raw(header: &str, claims: &str, key: &[u8], algorithm: Algorithm) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key),
        algorithm,
    )
    .expect("signs");
    format!("{message}.{signature}")
}

fn signed(header: Value, claims: Value, key: &[u8]) -> String {
    signed_raw(
        &header.to_string(),
        &claims.to_string(),
        key,
        Algorithm::HS256,
    )
}

/// Claims that would be accepted under a good signature.
fn good_claims() -> Value {
    json!({"sub": "mallory", "exp": unix_now() + 3600, "roles": ["admin"]})
}

fn hs256() -> Value {
    json!({"alg": "HS256", "typ": "JWT"})
}

fn corpus_token(name: &str) -> String {
    let path = format!("{}/corpus/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{path}: {err}"))
        .trim()
        .to_owned()
}

/// Every token trick, with a name; each must be refused.
fn forged_tokens() -> Vec<(&'static str, String)> {
    let secret = SECRET.as_bytes();
    let now = unix_now();
    let claims = good_claims();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good_claims();
        change(&mut claims);
        signed(hs256(), claims, secret)
    };
    let none = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "JWT"}).to_string()),
            b64(claims.to_string())
        )
    };
    let good = signed(hs256(), claims.clone(), secret);
    let (message, _) = good.rsplit_once('.').expect("three parts");
    vec![
        ("alg none, no signature", none("none")),
        ("alg None", none("None")),
        ("alg NONE", none("NONE")),
        ("alg nOnE", none("nOnE")),
        (
            "alg none, two segments",
            none("none").trim_end_matches('.').to_owned(),
        ),
        (
            "alg none with the secret's own signature",
            signed(json!({"alg": "none"}), claims.clone(), secret),
        ),
        (
            "alg empty",
            signed(json!({"alg": ""}), claims.clone(), secret),
        ),
        (
            "no alg",
            signed(json!({"typ": "JWT"}), claims.clone(), secret),
        ),
        (
            "alg a number",
            signed(json!({"alg": 256}), claims.clone(), secret),
        ),
        (
            "kid path traversal to /dev/null, signed with the empty key",
            signed(
                json!({"alg": "HS256", "kid": "../../../../../../dev/null"}),
                claims.clone(),
                b"",
            ),
        ),
        (
            "kid SQL injection, signed with the injected answer",
            signed(
                json!({"alg": "HS256", "kid": "x' UNION SELECT 'attacker-key' --"}),
                claims.clone(),
                b"attacker-key",
            ),
        ),
        (
            "kid command injection",
            signed(
                json!({"alg": "HS256", "kid": "key|/usr/bin/id; `id` $(id)"}),
                claims.clone(),
                b"key",
            ),
        ),
        (
            "jku to an attacker's key set",
            signed(
                json!({"alg": "HS256", "jku": "http://127.0.0.1:9/jwks.json"}),
                claims.clone(),
                b"attacker",
            ),
        ),
        (
            "embedded jwk",
            signed(
                json!({"alg": "HS256", "jwk": {"kty": "oct", "k": b64("attacker")}}),
                claims.clone(),
                b"attacker",
            ),
        ),
        (
            "RS256 with a foreign RSA key",
            corpus_token("rs256-foreign-key.jwt"),
        ),
        (
            "ES256 with a foreign EC key",
            corpus_token("es256-foreign-key.jwt"),
        ),
        (
            "RS256 claimed, signed with the HS secret",
            signed(
                json!({"alg": "RS256", "typ": "JWT"}),
                claims.clone(),
                secret,
            ),
        ),
        (
            "ES256 claimed, signed with the HS secret",
            signed(
                json!({"alg": "ES256", "typ": "JWT"}),
                claims.clone(),
                secret,
            ),
        ),
        (
            "PS256 claimed, signed with the HS secret",
            signed(json!({"alg": "PS256"}), claims.clone(), secret),
        ),
        (
            "EdDSA claimed, signed with the HS secret",
            signed(json!({"alg": "EdDSA"}), claims.clone(), secret),
        ),
        (
            "HS512 with the right secret",
            signed_raw(
                &json!({"alg": "HS512"}).to_string(),
                &claims.to_string(),
                secret,
                Algorithm::HS512,
            ),
        ),
        (
            "HS384 with the right secret",
            signed_raw(
                &json!({"alg": "HS384"}).to_string(),
                &claims.to_string(),
                secret,
                Algorithm::HS384,
            ),
        ),
        (
            "HS256 with another secret",
            signed(hs256(), claims.clone(), b"another-secret-of-enough-length"),
        ),
        (
            "HS256 with the secret's prefix",
            signed(hs256(), claims.clone(), &secret[..8]),
        ),
        (
            "expired an hour ago",
            with(&|c| c["exp"] = json!(now - 3600)),
        ),
        (
            "expired beyond the leeway",
            with(&|c| c["exp"] = json!(now - 60)),
        ),
        ("expired at the epoch", with(&|c| c["exp"] = json!(0))),
        ("nbf an hour ahead", with(&|c| c["nbf"] = json!(now + 3600))),
        (
            "nbf beyond the leeway",
            with(&|c| c["nbf"] = json!(now + 60)),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().map(|m| m.remove("exp"));
            }),
        ),
        ("exp null", with(&|c| c["exp"] = Value::Null)),
        (
            "exp a string",
            with(&|c| c["exp"] = json!((now + 3600).to_string())),
        ),
        ("exp negative", with(&|c| c["exp"] = json!(-1))),
        (
            "exp a fraction",
            with(&|c| c["exp"] = json!(now as f64 + 3600.5)),
        ),
        ("exp an array", with(&|c| c["exp"] = json!([now + 3600]))),
        (
            "exp beyond any number",
            signed_raw(
                &hs256().to_string(),
                r#"{"sub":"mallory","exp":1e400}"#,
                secret,
                Algorithm::HS256,
            ),
        ),
        ("nbf a string", with(&|c| c["nbf"] = json!("yesterday"))),
        (
            "no sub",
            with(&|c| {
                c.as_object_mut().map(|m| m.remove("sub"));
            }),
        ),
        ("empty sub", with(&|c| c["sub"] = json!(""))),
        ("huge sub", with(&|c| c["sub"] = json!("m".repeat(20_000)))),
        (
            "sub with a NUL",
            with(&|c| c["sub"] = json!("mal\u{0}lory")),
        ),
        (
            "sub with a newline",
            with(&|c| c["sub"] = json!("mallory\nadmin")),
        ),
        ("sub a number", with(&|c| c["sub"] = json!(42))),
        ("sub null", with(&|c| c["sub"] = Value::Null)),
        (
            "sub an object",
            with(&|c| c["sub"] = json!({"id": "mallory"})),
        ),
        ("roles a string", with(&|c| c["roles"] = json!("admin"))),
        ("roles numbers", with(&|c| c["roles"] = json!([1, 2]))),
        (
            "roles an object",
            with(&|c| c["roles"] = json!({"admin": true})),
        ),
        (
            "roles with null",
            with(&|c| c["roles"] = json!(["admin", null])),
        ),
        (
            "a duplicated sub",
            signed_raw(
                &hs256().to_string(),
                &format!(r#"{{"sub":"mallory","sub":"admin","exp":{}}}"#, now + 3600),
                secret,
                Algorithm::HS256,
            ),
        ),
        (
            "claims not JSON",
            signed_raw(&hs256().to_string(), "not json", secret, Algorithm::HS256),
        ),
        (
            "claims an array",
            signed_raw(&hs256().to_string(), "[]", secret, Algorithm::HS256),
        ),
        (
            "header an array",
            signed_raw("[]", &claims.to_string(), secret, Algorithm::HS256),
        ),
        (
            "header not JSON",
            signed_raw("HS256", &claims.to_string(), secret, Algorithm::HS256),
        ),
        ("an extra segment", format!("{good}.e30")),
        ("an empty extra segment", format!("{good}.")),
        ("a JWE-like five segments", format!("{good}.e30.e30")),
        ("the signature removed", format!("{message}.")),
        ("two segments", message.to_owned()),
        ("the signature padded", format!("{good}==")),
        ("the signature in padded standard base64", {
            let (rest, signature) = good.rsplit_once('.').expect("three parts");
            let bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
            format!(
                "{rest}.{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
        }),
        ("a flipped signature bit", {
            let (rest, signature) = good.rsplit_once('.').expect("three parts");
            let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
            bytes[0] ^= 1;
            format!("{rest}.{}", b64(bytes))
        }),
        ("a space inside", good.replacen('.', ". ", 1)),
        ("garbage", "!!!.@@@.###".to_owned()),
        ("base64 of nothing", "..".to_owned()),
        ("not base64", "e30.e30.e30".to_owned()),
        ("one word", "token".to_owned()),
        ("20k dots", ".".repeat(20_000)),
    ]
}

#[tokio::test]
async fn forged_and_broken_tokens_are_401_over_http() {
    let platform = Platform::start().await;
    let before = sentinel(&platform, "mallory").await;
    // The helper's own tokens are accepted when nothing is wrong with them,
    // so each refusal below is the trick's doing.
    let genuine = signed(hs256(), good_claims(), SECRET.as_bytes());
    let response = http()
        .get(format!("{}/v1/kinds", platform.api_url))
        .bearer_auth(&genuine)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::OK);
    for (case, forged) in forged_tokens() {
        let response = http()
            .get(format!("{}/v1/operations", platform.api_url))
            .bearer_auth(&forged)
            .send()
            .await
            .expect("answers");
        expect_problem(case, response, 401, "unauthorized").await;
        let response = http()
            .post(format!("{}/v1/demo/sleep", platform.api_url))
            .bearer_auth(&forged)
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .expect("answers");
        expect_problem(case, response, 401, "unauthorized").await;
    }
    let token = token("mallory");
    for (case, authorization) in [
        ("Bearer alone", "Bearer".to_owned()),
        ("Bearer and spaces", "Bearer    ".to_owned()),
        (
            "Basic credentials",
            "Basic bWFsbG9yeTpwYXNzd29yZA==".to_owned(),
        ),
        ("another scheme with a good token", format!("Token {token}")),
        ("a good token without a scheme", token.clone()),
        (
            "a good token and a second word",
            format!("Bearer {token} extra"),
        ),
        ("two good tokens", format!("Bearer {token}, Bearer {token}")),
        ("empty", String::new()),
    ] {
        let response = http()
            .get(format!("{}/v1/operations", platform.api_url))
            .header("authorization", authorization)
            .send()
            .await
            .expect("answers");
        expect_problem(case, response, 401, "unauthorized").await;
    }
    let response = http()
        .get(format!("{}/v1/kinds", platform.api_url))
        .send()
        .await
        .expect("answers");
    expect_problem("no Authorization", response, 401, "unauthorized").await;
    // No forged start got through: mallory (as admin) sees nothing at all.
    assert_only_sentinel(&platform, "mallory", &before).await;
    assert_still_serving(&platform).await;
}

/// The HTTP status and problem code of a refused upgrade.
async fn refused_upgrade(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> (u16, Value) {
    match tokio::time::timeout(ANSWER_WITHIN, tokio_tungstenite::connect_async(request))
        .await
        .expect("answered in time")
    {
        Ok(_) => panic!("the gateway upgraded a connection with a bad token"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let media = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok());
            assert_eq!(media, Some(PROBLEM_JSON));
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a problem body");
            (response.status().as_u16(), body)
        }
        Err(other) => panic!("not an HTTP refusal: {other}"),
    }
}

#[tokio::test]
async fn forged_and_broken_tokens_are_refused_at_the_websocket() {
    let platform = Platform::start().await;
    let url = format!("{}/v1/ws", platform.ws_url);
    for (case, forged) in forged_tokens() {
        // In the upgrade's Authorization header: HTTP 401.
        let mut request = url.as_str().into_client_request().expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {forged}").parse().expect("a header value"),
        );
        let (status, problem) = refused_upgrade(request).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthorized")),
            "{case} (header)"
        );
        // In the access_token query parameter: HTTP 401.
        let with_query =
            reqwest::Url::parse_with_params(&url, [("access_token", &forged)]).expect("url");
        let request = with_query.as_str().into_client_request().expect("request");
        let (status, problem) = refused_upgrade(request).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (401, Some("unauthorized")),
            "{case} (query)"
        );
        // In an auth frame: closed with 4001, and no subscription served before.
        let mut ws = WsClient::connect(&url)
            .await
            .expect("upgrades without a token");
        ws.send(json!({"type": "auth", "token": forged})).await;
        ws.send(json!({"type": "subscribe", "owner": "self"})).await;
        assert_eq!(
            ws.close_code(ANSWER_WITHIN).await,
            Some(4001),
            "{case} (auth frame)"
        );
    }
    // Frames before any auth are refused one by one, and a non-string token closes nothing.
    let mut ws = WsClient::connect(&url).await.expect("upgrades");
    ws.send(json!({"type": "subscribe", "owner": "self"})).await;
    let frame = ws.next_frame().await;
    assert_eq!(
        (frame["type"].as_str(), frame["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    ws.send(json!({"type": "auth", "token": 42})).await;
    let frame = ws.next_frame().await;
    assert_eq!(frame["code"], "bad_request");
    ws.send(json!({"type": "auth", "token": ""})).await;
    assert_eq!(
        ws.close_code(ANSWER_WITHIN).await,
        Some(4001),
        "an empty token"
    );
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn a_token_valid_for_ever_does_not_break_the_websocket() {
    // A correctly signed token whose `exp` is the largest integer: the
    // gateway must not overflow computing when it expires.
    let platform = Platform::start().await;
    let forever = signed(
        hs256(),
        json!({"sub": "eternal", "exp": u64::MAX}),
        SECRET.as_bytes(),
    );
    for url in [
        format!("{}/v1/ws?access_token={forever}", platform.ws_url),
        format!("{}/v1/ws", platform.ws_url),
    ] {
        let mut ws = WsClient::connect(&url).await.expect("upgrades");
        if !url.contains("access_token") {
            ws.send(json!({"type": "auth", "token": forever})).await;
        }
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.next_frame().await["type"], "pong", "{url:.60}");
        ws.close().await;
    }
    assert_still_serving(&platform).await;
}

// --------------------------------------------------------- WebSocket frames

/// Raw access to a gateway connection, for frames the protocol client cannot send.
type RawSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn raw_ws(platform: &Platform, sub: &str) -> RawSocket {
    let url = format!("{}/v1/ws?access_token={}", platform.ws_url, token(sub));
    let (socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("upgrades");
    socket
}

/// The next text frame as JSON (pings skipped), or `None` once closed.
async fn next_json(socket: &mut RawSocket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(ANSWER_WITHIN, socket.next())
            .await
            .expect("a frame in time");
        match message {
            Some(Ok(Message::Text(text))) => {
                return Some(serde_json::from_str(&text).expect("JSON frames"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

/// The close code the server ends with (frames before it skipped).
async fn close_code(socket: &mut RawSocket) -> Option<u16> {
    loop {
        let message = tokio::time::timeout(ANSWER_WITHIN, socket.next())
            .await
            .expect("closed in time");
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// A bystander following a running operation of its own from its first
/// event; its id and the bystander's connection.
async fn bystander(platform: &Platform) -> (String, WsClient) {
    let op = started(
        platform,
        "bystander",
        json!({"duration_ms": 1500, "steps": 15}),
    )
    .await;
    let mut bystander = platform.ws("bystander").await;
    bystander.subscribe(&op, Some(0)).await;
    (op, bystander)
}

/// The events of `op` until its terminal one, asserted to be seqs 1..n.
async fn gap_free_events(client: &mut WsClient, op: &str) -> Vec<Value> {
    let events = client.events_until_terminal(op).await;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    events
}

#[tokio::test]
async fn hostile_frames_get_error_frames_and_never_disturb_other_connections() {
    let platform = Platform::start().await;
    let (op, mut bystander) = bystander(&platform).await;

    let theirs = started(
        &platform,
        "bystander",
        json!({"duration_ms": 0, "steps": 1}),
    )
    .await;
    let mine = started(&platform, "hostile", json!({"duration_ms": 0, "steps": 1})).await;
    let mut socket = raw_ws(&platform, "hostile").await;
    let oversized_frame = format!(
        "{{\"type\":\"ping\",\"pad\":\"{}\"}}",
        " ".repeat(65 * 1024)
    );
    let ten_mb_frame = format!("{{\"type\":\"auth\",\"token\":\"{}\"}}", "a".repeat(TEN_MB));
    let bad_request: Vec<(&str, String)> = vec![
        ("not JSON", "hello".into()),
        ("100k [", "[".repeat(100_000)),
        ("100k {\"a\":", "{\"a\":".repeat(100_000)),
        ("null", "null".into()),
        ("an array", "[]".into()),
        ("a frame as an array", r#"["ping"]"#.into()),
        (
            "a subscribe as an array",
            format!(r#"["subscribe","{mine}",null,0]"#),
        ),
        ("a string", "\"subscribe\"".into()),
        ("a number", "42".into()),
        ("an empty object", "{}".into()),
        ("an unknown type", r#"{"type":"launch"}"#.into()),
        ("a type of the wrong type", r#"{"type":7}"#.into()),
        ("an unknown field", r#"{"type":"ping","extra":1}"#.into()),
        (
            "an id of the wrong type",
            r#"{"type":"subscribe","operation_id":123}"#.into(),
        ),
        (
            "after_seq 1e400",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","after_seq":1e400}}"#),
        ),
        (
            "after_seq 2^64",
            format!(
                r#"{{"type":"subscribe","operation_id":"{mine}","after_seq":18446744073709551616}}"#
            ),
        ),
        (
            "after_seq -1",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","after_seq":-1}}"#),
        ),
        (
            "after_seq a string",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","after_seq":"3"}}"#),
        ),
        (
            "after_seq a fraction",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","after_seq":1.5}}"#),
        ),
        (
            "a lone surrogate",
            r#"{"type":"subscribe","operation_id":"\ud800"}"#.into(),
        ),
        ("a subscribe of nothing", r#"{"type":"subscribe"}"#.into()),
        (
            "both an id and an owner",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","owner":"self"}}"#),
        ),
        (
            "another owner",
            r#"{"type":"subscribe","owner":"bystander"}"#.into(),
        ),
        (
            "owner with after_seq",
            r#"{"type":"subscribe","owner":"self","after_seq":1}"#.into(),
        ),
        (
            "unsubscribe another owner",
            r#"{"type":"unsubscribe","owner":"bystander"}"#.into(),
        ),
        (
            "an auth token of the wrong type",
            r#"{"type":"auth","token":["a"]}"#.into(),
        ),
        (
            "a duplicated field",
            format!(r#"{{"type":"subscribe","operation_id":"{mine}","operation_id":"{mine}"}}"#),
        ),
        ("over 64 KiB", oversized_frame),
        ("10 MB", ten_mb_frame),
    ];
    for (case, frame) in &bad_request {
        socket
            .send(Message::text(frame.clone()))
            .await
            .expect("sent");
        let answer = next_json(&mut socket)
            .await
            .unwrap_or_else(|| panic!("{case}: the connection closed"));
        assert_eq!(
            (answer["type"].as_str(), answer["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{case}: {answer}"
        );
    }
    socket
        .send(Message::binary(vec![0xff; 1024]))
        .await
        .expect("sent");
    let answer = next_json(&mut socket).await.expect("still open");
    assert_eq!(answer["code"], "bad_request", "binary: {answer}");
    let long_id = "a".repeat(60_000);
    for id in [
        "nope",
        "../../etc/passwd",
        "*",
        "{root}",
        long_id.as_str(),
        &mine.to_uppercase(),
        "00000000-0000-7000-8000-000000000000",
        theirs.as_str(),
    ] {
        socket
            .send(Message::text(
                json!({"type": "subscribe", "operation_id": id}).to_string(),
            ))
            .await
            .expect("sent");
        let answer = next_json(&mut socket).await.expect("still open");
        assert_eq!(answer["code"], "not_found", "{id:.40}: {answer}");
        assert_eq!(answer["operation_id"], id);
    }
    // The connection still works after all of it.
    socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .expect("sent");
    assert_eq!(next_json(&mut socket).await.expect("open")["type"], "pong");
    socket
        .send(Message::text(
            json!({"type": "subscribe", "operation_id": mine}).to_string(),
        ))
        .await
        .expect("sent");
    let subscribed = next_json(&mut socket).await.expect("open");
    assert_eq!(
        (
            subscribed["type"].as_str(),
            subscribed["operation_id"].as_str()
        ),
        (Some("subscribed"), Some(mine.as_str()))
    );

    // The bystander got every event of its operation, in order, untouched.
    let events = gap_free_events(&mut bystander, &op).await;
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("succeeded"))
    );
    assert_still_serving(&platform).await;
}

#[tokio::test]
async fn frames_that_break_the_websocket_protocol_close_only_their_connection() {
    let platform = Platform::start().await;
    let (op, mut bystander) = bystander(&platform).await;

    // A message over the socket's 16 MiB bound: 1009 (message too big).
    let mut socket = raw_ws(&platform, "hostile").await;
    let seventeen_mb = "x".repeat(17 * 1024 * 1024);
    let _ = socket.send(Message::text(seventeen_mb)).await;
    assert_eq!(
        close_code(&mut socket).await,
        Some(1009),
        "an oversized message"
    );

    // A text frame that is not UTF-8: 1007 (invalid payload data).
    let mut socket = raw_ws(&platform, "hostile").await;
    let frame = Frame::message(
        b"{\"type\":\"ping\xff\"}".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    socket.send(Message::Frame(frame)).await.expect("sent");
    assert_eq!(close_code(&mut socket).await, Some(1007), "invalid UTF-8");

    // A reserved opcode: 1002 (protocol error).
    let mut socket = raw_ws(&platform, "hostile").await;
    let mut frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Reserved(3)), true);
    *frame.header_mut() = FrameHeader {
        opcode: OpCode::Data(Data::Reserved(3)),
        ..FrameHeader::default()
    };
    socket.send(Message::Frame(frame)).await.expect("sent");
    assert_eq!(
        close_code(&mut socket).await,
        Some(1002),
        "a reserved opcode"
    );

    gap_free_events(&mut bystander, &op).await;
    assert_still_serving(&platform).await;
}
