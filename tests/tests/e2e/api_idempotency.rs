//! `Idempotency-Key`: a repeat by the same owner returns the first
//! operation (200) and starts nothing — also for 20 identical requests at
//! once; another request under the same key is 422; keys are per owner,
//! freed by DELETE, and expire with the operation's retention.

use std::time::Duration;

use futures_util::future::join_all;
use longrun_tests::http::{Api, Reply, send};
use longrun_tests::{Platform, eventually};
use reqwest::Method;
use serde_json::{Value, json};

async fn start_keyed(api: &Api, sub: &str, key: &str, query: &str, input: &Value) -> Reply {
    send(
        api.as_user(Method::POST, &format!("/v1/demo/sleep{query}"), sub)
            .header("idempotency-key", key)
            .json(input),
    )
    .await
}

async fn count(api: &Api, sub: &str) -> usize {
    api.get(sub, "/v1/operations?limit=1000").await.json()["operations"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn a_repeat_returns_the_first_operation_with_200() {
    let platform = Platform::queue_only().await;
    let api = platform.api();
    let input = json!({"duration_ms": 5, "steps": 1});
    let first = start_keyed(&api, "ida", "order-1", "", &input).await;
    assert_eq!(first.status, 202, "{}", first.text());
    // Same input with its keys in another order: the same request.
    let reordered = json!({"steps": 1, "duration_ms": 5});
    let again = start_keyed(&api, "ida", "order-1", "", &reordered).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("operation-location"), first.header("location"));
    assert_eq!(again.retry_after(), Some(1), "still not done");
    assert_eq!(count(&api, "ida").await, 1, "nothing new started");

    // Keys are per owner.
    let other = start_keyed(&api, "ivan", "order-1", "", &input).await;
    assert_eq!(other.status, 202);
    assert_ne!(other.json()["id"], first.json()["id"]);
    platform.stop().await;
}

#[tokio::test]
async fn twenty_identical_requests_at_once_start_exactly_one_operation() {
    let platform = Platform::queue_only().await;
    let api = platform.api();
    let input = json!({"duration_ms": 10});
    let replies =
        join_all((0..20).map(|_| start_keyed(&api, "con", "same-key", "?max_attempts=2", &input)))
            .await;
    let created = replies.iter().filter(|r| r.status == 202).count();
    let repeated = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        (created, repeated),
        (1, 19),
        "{:?}",
        replies
            .iter()
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );
    let first = replies[0].json()["id"].clone();
    for reply in &replies {
        assert_eq!(reply.json()["id"], first);
        assert_eq!(reply.json()["max_attempts"], 2);
    }
    assert_eq!(count(&api, "con").await, 1);
    let depth: u64 = redis::cmd("XLEN")
        .arg(platform.store.keys().ready(0))
        .query_async(&mut platform.store.conn())
        .await
        .expect("xlen");
    assert_eq!(depth, 1, "queued once");
    platform.stop().await;
}

#[tokio::test]
async fn the_same_key_for_another_request_is_422() {
    let platform = Platform::queue_only().await;
    let api = platform.api();
    let input = json!({"duration_ms": 5});
    let first = start_keyed(&api, "uma", "k-1", "", &input).await;
    assert_eq!(first.status, 202);
    let other_input = start_keyed(&api, "uma", "k-1", "", &json!({"duration_ms": 6})).await;
    other_input.problem(422, "idempotency_key_reused");
    let other_options = start_keyed(&api, "uma", "k-1", "?max_attempts=1", &input).await;
    other_options.problem(422, "idempotency_key_reused");
    let other_kind = send(
        api.as_user(Method::POST, "/v1/calc/primes", "uma")
            .header("idempotency-key", "k-1")
            .json(&json!({"limit": 10})),
    )
    .await;
    other_kind.problem(422, "idempotency_key_reused");
    assert_eq!(count(&api, "uma").await, 1);
    platform.stop().await;
}

#[tokio::test]
async fn a_rate_limited_owner_still_gets_its_repeat() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .config(|config| {
            config.rate_limit_per_s = 0.1;
            config.rate_limit_burst = 1;
        })
        .start()
        .await;
    let api = platform.api();
    let first = start_keyed(&api, "ren", "once", "", &json!({})).await;
    assert_eq!(first.status, 202);
    let repeat = start_keyed(&api, "ren", "once", "", &json!({})).await;
    assert_eq!(repeat.status, 200, "{}", repeat.text());
    let fresh = start_keyed(&api, "ren", "twice", "", &json!({})).await;
    fresh.problem(429, "rate_limited");
    // The refused request did not keep its key: it can be used later.
    let stored = platform
        .store
        .idempotency_ttl_ms("ren", "twice")
        .await
        .expect("redis");
    assert_eq!(stored, None);
    platform.stop().await;
}

#[tokio::test]
async fn keys_expire_with_the_operation_and_go_with_delete() {
    let platform = Platform::builder()
        .without_realtime()
        .config(|config| config.retention = Duration::from_secs(120))
        .start()
        .await;
    let api = platform.api();
    let first = start_keyed(&api, "kay", "run-1", "", &json!({"duration_ms": 0})).await;
    assert_eq!(first.status, 202);
    let id = first.json()["id"].as_str().expect("id").to_owned();
    let running_ttl = platform
        .store
        .idempotency_ttl_ms("kay", "run-1")
        .await
        .expect("redis")
        .expect("the key expires some day");
    assert!(running_ttl > 120_000, "lives while the operation runs");
    let done = api
        .get("kay", &format!("/v1/operations/{id}/wait?timeout_ms=20000"))
        .await
        .json();
    assert_eq!(done["done"], true);
    let store = platform.store.clone();
    eventually(
        Duration::from_secs(10),
        "the key to get the retention",
        || {
            let store = store.clone();
            async move {
                let ttl = store.idempotency_ttl_ms("kay", "run-1").await.ok()??;
                (ttl <= 120_000).then_some(())
            }
        },
    )
    .await;

    let deleted = send(api.as_user(Method::DELETE, &format!("/v1/operations/{id}"), "kay")).await;
    assert_eq!(deleted.status, 204);
    let after = start_keyed(&api, "kay", "run-1", "", &json!({"duration_ms": 0})).await;
    assert_eq!(after.status, 202, "the key was freed: {}", after.text());
    assert_ne!(after.json()["id"], id.as_str());
    platform.stop().await;
}
