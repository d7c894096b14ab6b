//! What the api tells operators: `X-Request-Id` echoed (or made), quoted
//! in problems and carried into the operation's log; Prometheus metrics
//! for requests, starts, the queue and Redis errors.

use longrun_tests::Platform;
use longrun_tests::http::send;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn request_ids_are_echoed_quoted_and_stored_with_the_operation() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let api = platform.api();
    let started = send(
        api.as_user(Method::POST, "/v1/demo/sleep", "rid")
            .header("x-request-id", "checkout-7f3a")
            .json(&json!({})),
    )
    .await;
    assert_eq!(started.status, 202);
    assert_eq!(
        started.header("x-request-id").as_deref(),
        Some("checkout-7f3a")
    );
    let id = started.json()["id"].as_str().expect("id").to_owned();
    let events = api
        .get("rid", &format!("/v1/operations/{id}/events"))
        .await
        .json();
    assert_eq!(events["events"][0]["type"], "created");
    assert_eq!(events["events"][0]["data"]["request_id"], "checkout-7f3a");

    let made = api.get("rid", "/v1/kinds").await;
    let made_id = made.header("x-request-id").expect("an id is made");
    assert!(uuid::Uuid::parse_str(&made_id).is_ok(), "{made_id}");

    for unusable in ["x".repeat(200), "two words".to_owned()] {
        let reply = send(
            api.as_user(Method::GET, "/v1/kinds", "rid")
                .header("x-request-id", unusable.as_str()),
        )
        .await;
        let replaced = reply.header("x-request-id").expect("an id");
        assert_ne!(replaced, unusable);
        assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
    }

    let problem = send(
        api.as_user(Method::GET, "/v1/operations/nope", "rid")
            .header("x-request-id", "support-ticket-1"),
    )
    .await
    .problem(404, "not_found");
    assert_eq!(problem["request_id"], "support-ticket-1");
    platform.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_starts_queue_depth_and_redis_errors() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let api = platform.api();
    api.start_ok("met", "calc.primes", &json!({"limit": 50}))
        .await;
    api.get("met", "/v1/operations/nope")
        .await
        .problem(404, "not_found");
    let text = send(api.anonymous(Method::GET, "/metrics")).await.text();
    let has = |name: &str, labels: &[&str]| {
        text.lines()
            .any(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
    };
    assert!(
        has(
            "longrun_http_requests_total{",
            &[
                r#"route="/v1/{module}/{operation}""#,
                r#"method="POST""#,
                r#"status="202""#
            ]
        ),
        "{text}"
    );
    assert!(
        has(
            "longrun_http_requests_total{",
            &[r#"route="/v1/operations/{id}""#, r#"status="404""#]
        ),
        "{text}"
    );
    assert!(
        has(
            "longrun_http_request_duration_seconds_bucket{",
            &[
                r#"route="/v1/{module}/{operation}""#,
                r#"status="202""#,
                "le="
            ]
        ),
        "{text}"
    );
    assert!(
        has(
            "longrun_operations_started_total{",
            &[r#"kind="calc.primes""#]
        ),
        "{text}"
    );
    for status in ["queued", "running", "delayed"] {
        assert!(
            has("longrun_queue_depth{", &[&format!(r#"status="{status}""#)]),
            "{text}"
        );
    }
    assert!(text.contains("longrun_api_redis_errors_total"), "{text}");
    platform.stop().await;
}
