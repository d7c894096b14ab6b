//! Every error the api answers, as RFC 9457 problems with the contract's
//! code: axum's own rejections (415, 400 with the position, 413, 404, 405),
//! bad queries (400, never 500), unknown kinds, invalid input, conflicts
//! and the rate limit.

use std::time::Duration;

use longrun_tests::http::send;
use longrun_tests::{Platform, token};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn queue_only() -> Platform {
    Platform::builder()
        .workers(0)
        .without_realtime()
        .config(|config| config.body_limit_bytes = 4096)
        .start()
        .await
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let platform = queue_only().await;
    let api = platform.api();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let reply = send(
            api.as_user(Method::POST, "/v1/demo/sleep", "una")
                .header("content-type", content_type)
                .body("{}"),
        )
        .await;
        let problem = reply.problem(415, "unsupported_media_type");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains(content_type)
        );
    }
    let untyped = send(
        api.as_user(Method::POST, "/v1/demo/sleep", "una")
            .body("{}"),
    )
    .await;
    untyped.problem(415, "unsupported_media_type");
    let vendor = send(
        api.as_user(Method::POST, "/v1/demo/sleep", "una")
            .header("content-type", "application/vnd.api+json; charset=utf-8")
            .body("{}"),
    )
    .await;
    assert_eq!(
        vendor.status,
        202,
        "+json types are JSON: {}",
        vendor.text()
    );
    platform.stop().await;
}

#[tokio::test]
async fn bad_json_is_400_with_its_line_and_column() {
    let platform = queue_only().await;
    let reply = send(
        platform
            .api()
            .as_user(Method::POST, "/v1/demo/sleep", "jay")
            .header("content-type", "application/json")
            .body("{\n  \"steps\": }"),
    )
    .await;
    let problem = reply.problem(400, "invalid_json");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains("line 2 column 12"), "{detail}");
    platform.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_or_without_a_length() {
    let platform = queue_only().await;
    let big = json!({"padding": "x".repeat(8192)});
    let reply = platform.api().start("lim", "demo.sleep", &big).await;
    reply.problem(413, "payload_too_large");

    // Chunked, so the server learns the size only while reading.
    let address = platform.api_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let chunk = format!("{{\"padding\": \"{}\"}}", "y".repeat(8192));
    let request = format!(
        "POST /v1/demo/sleep HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{chunk}\r\n0\r\n\r\n",
        token("lim"),
        chunk.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answers")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let platform = queue_only().await;
    let api = platform.api();
    for path in [
        "/",
        "/v2/operations",
        "/v1/operations/a/b/c",
        "/v1/operations/",
    ] {
        send(api.as_user(Method::GET, path, "rob"))
            .await
            .problem(404, "not_found");
    }
    let cases = [
        (Method::PUT, "/v1/kinds", "GET"),
        (Method::POST, "/v1/operations", "GET"),
        (
            Method::PATCH,
            "/v1/operations/0193a3f6-0000-7000-8000-000000000000",
            "DELETE",
        ),
        (
            Method::GET,
            "/v1/operations/0193a3f6-0000-7000-8000-000000000000/cancel",
            "POST",
        ),
        (Method::GET, "/v1/demo/sleep", "POST"),
        (Method::DELETE, "/healthz", "GET"),
    ];
    for (method, path, allowed) in cases {
        let reply = send(api.as_user(method.clone(), path, "rob")).await;
        reply.problem(405, "method_not_allowed");
        let allow = reply.header("allow").unwrap_or_default();
        assert!(allow.contains(allowed), "{method} {path}: Allow: {allow}");
    }
    platform.stop().await;
}

#[tokio::test]
async fn unknown_kinds_are_404_unknown_kind() {
    let platform = queue_only().await;
    let api = platform.api();
    for path in ["/v1/demo/nothing", "/v1/nope/sleep", "/v1/Demo/Sleep"] {
        let reply = send(api.as_user(Method::POST, path, "kat").json(&json!({}))).await;
        reply.problem(404, "unknown_kind");
    }
    platform.stop().await;
}

#[tokio::test]
async fn input_against_the_schema_is_422_with_every_field_error() {
    let platform = queue_only().await;
    let api = platform.api();
    let reply = api
        .start(
            "ivy",
            "demo.sleep",
            &json!({"steps": 0, "duration_ms": "long", "extra": true}),
        )
        .await;
    let problem = reply.problem(422, "invalid_input");
    let paths: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| {
            assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
            error["path"].as_str().expect("path")
        })
        .collect();
    assert!(paths.contains(&"/steps"), "{paths:?}");
    assert!(paths.contains(&"/duration_ms"), "{paths:?}");
    assert!(paths.contains(&""), "the extra property: {paths:?}");

    let not_an_object = api.start("ivy", "demo.sleep", &json!([1, 2])).await;
    not_an_object.problem(422, "invalid_input");
    let primes = api.start("ivy", "calc.primes", &json!({})).await;
    primes.problem(422, "invalid_input");

    for query in [
        "max_attempts=0",
        "max_attempts=101",
        "timeout_ms=2592000001",
    ] {
        let reply = send(
            api.as_user(Method::POST, &format!("/v1/demo/sleep?{query}"), "ivy")
                .json(&json!({})),
        )
        .await;
        reply.problem(422, "invalid_input");
    }
    let listed = api.get("ivy", "/v1/operations").await.json();
    assert_eq!(listed["operations"], json!([]), "nothing was queued");
    platform.stop().await;
}

#[tokio::test]
async fn bad_queries_and_headers_are_400_never_500() {
    let platform = queue_only().await;
    let api = platform.api();
    let id = api.start_ok("qed", "demo.sleep", &json!({})).await;
    let op = format!("/v1/operations/{id}");
    let garbage_cursor = "bm90LWEtY3Vyc29y"; // base64 of "not-a-cursor"
    // "o:18446744073709551615": a position past anything real.
    let huge_offset = "bzoxODQ0Njc0NDA3MzcwOTU1MTYxNQ";
    let paths = [
        "/v1/operations?limit=0".to_owned(),
        "/v1/operations?limit=1001".to_owned(),
        "/v1/operations?limit=abc".to_owned(),
        "/v1/operations?limit=-1".to_owned(),
        "/v1/operations?status=finished".to_owned(),
        "/v1/operations?cursor=%%%".to_owned(),
        format!("/v1/operations?cursor={garbage_cursor}"),
        "/v1/operations?statuss=queued".to_owned(),
        format!("{op}/wait?timeout_ms=60001"),
        format!("{op}/wait?timeout_ms=soon"),
        format!("{op}/events?after_seq=-1"),
        format!("{op}/events?limit=0"),
        format!("{op}/events?limit=99999999999999999999999"),
        format!("{op}/events?after_seq=18446744073709551615"),
        format!("{op}/children?cursor={garbage_cursor}"),
        format!("{op}/children?cursor={huge_offset}"),
        format!("{op}/children?limit=1001"),
    ];
    for path in &paths {
        let reply = api.get("qed", path).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        reply.problem(400, "bad_request");
    }
    let far = api
        .get("qed", &format!("{op}/events?after_seq=9007199254740991"))
        .await;
    assert_eq!(far.status, 200, "{}", far.text());
    assert_eq!(far.json()["events"], json!([]));

    for query in [
        "max_attempts=two",
        "backoff=linear",
        "failure_policy=maybe",
        "max_atempts=2",
    ] {
        let reply = send(
            api.as_user(Method::POST, &format!("/v1/demo/sleep?{query}"), "qed")
                .json(&json!({})),
        )
        .await;
        reply.problem(400, "bad_request");
    }
    for key in ["", "has space", &"k".repeat(256), "caf\u{e9}"] {
        let reply = send(
            api.as_user(Method::POST, "/v1/demo/sleep", "qed")
                .header("idempotency-key", key.as_bytes())
                .json(&json!({})),
        )
        .await;
        reply.problem(400, "bad_request");
    }
    platform.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let platform = queue_only().await;
    let api = platform.api();
    for id in [
        "0193a3f6-0000-7000-8000-000000000000",
        "0193A3F6-0000-7000-8000-000000000000",
        "not-an-id",
        "lr:{x}:op:y",
    ] {
        let id = id.replace('{', "%7B").replace('}', "%7D");
        for path in [
            format!("/v1/operations/{id}"),
            format!("/v1/operations/{id}/wait?timeout_ms=10"),
            format!("/v1/operations/{id}/events"),
            format!("/v1/operations/{id}/children"),
        ] {
            api.get("noa", &path).await.problem(404, "not_found");
        }
        send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "noa"))
            .await
            .problem(404, "not_found");
        send(api.as_user(Method::DELETE, &format!("/v1/operations/{id}"), "noa"))
            .await
            .problem(404, "not_found");
    }
    platform.stop().await;
}

#[tokio::test]
async fn starts_over_the_owners_rate_are_429_with_retry_after() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .config(|config| {
            config.rate_limit_per_s = 0.5;
            config.rate_limit_burst = 2;
        })
        .start()
        .await;
    let api = platform.api();
    api.start_ok("rae", "demo.sleep", &json!({})).await;
    api.start_ok("rae", "demo.sleep", &json!({})).await;
    let limited = api.start("rae", "demo.sleep", &json!({})).await;
    limited.problem(429, "rate_limited");
    let wait = limited.retry_after().expect("Retry-After");
    assert!((1..=2).contains(&wait), "{wait}");
    // Another owner has its own budget, and reads are not limited.
    api.start_ok("ray", "demo.sleep", &json!({})).await;
    let listed = api.get("rae", "/v1/operations").await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.json()["operations"].as_array().map(Vec::len),
        Some(2)
    );
    platform.stop().await;
}
