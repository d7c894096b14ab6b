//! Redis going away under a running api: every request that needs it gets
//! 503 `unavailable` with `Retry-After`, liveness stays up, and once Redis
//! is back the same api process serves again — a long poll that was in
//! flight through the outage included (its pub/sub relay resubscribes).

use std::time::Duration;

use longrun_shared::redis_server::{RedisOptions, RedisServer};
use longrun_tests::http::{Api, send};
use longrun_tests::{Platform, eventually};
use reqwest::Method;
use serde_json::json;

async fn ready(api: &Api) -> bool {
    send(api.anonymous(Method::GET, "/readyz")).await.status == 200
}

fn redis_errors(metrics: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with("longrun_api_redis_errors_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn redis_down_is_503_with_retry_after_and_the_api_recovers_by_itself() {
    // With an append-only file synced on every write, so the operation
    // outlives the crash.
    let mut redis = RedisServer::start(RedisOptions {
        append_only: true,
        extra_args: vec!["--appendfsync".into(), "always".into()],
        ..RedisOptions::default()
    })
    .expect("redis starts");
    let platform = Platform::builder_on(&redis.url())
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let api = platform.api();
    let id = api.start_ok("rex", "demo.sleep", &json!({})).await;

    // A long poll in flight when Redis dies.
    let waiting = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            api.get("rex", &format!("/v1/operations/{id}/wait?timeout_ms=60000"))
                .await
        })
    };
    let channel = platform.store.keys().op_channel(&id, &id);
    let store = platform.store.clone();
    eventually(Duration::from_secs(10), "the wait to subscribe", || {
        let (store, channel) = (store.clone(), channel.clone());
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut store.conn())
                .await
                .ok()?;
            counts.first().filter(|(_, n)| *n > 0).map(|_| ())
        }
    })
    .await;
    let before = redis_errors(&send(api.anonymous(Method::GET, "/metrics")).await.text());

    redis.kill();
    let attempts = [
        send(
            api.as_user(Method::POST, "/v1/demo/sleep", "rex")
                .json(&json!({})),
        )
        .await,
        api.get("rex", &format!("/v1/operations/{id}")).await,
        api.get("rex", &format!("/v1/operations/{id}/events")).await,
        api.get("rex", &format!("/v1/operations/{id}/wait?timeout_ms=100"))
            .await,
        api.get("rex", "/v1/operations").await,
        send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "rex")).await,
        send(api.anonymous(Method::GET, "/readyz")).await,
    ];
    for reply in &attempts {
        reply.problem(503, "unavailable");
        assert_eq!(reply.retry_after(), Some(1));
    }
    let alive = send(api.anonymous(Method::GET, "/healthz")).await;
    assert_eq!(alive.status, 200, "liveness does not need Redis");
    let metrics = send(api.anonymous(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, 200, "metrics render without Redis");
    assert!(redis_errors(&metrics.text()) >= before + attempts.len() as f64);

    redis.start_again().expect("redis restarts");
    eventually(
        Duration::from_secs(15),
        "the api to reach Redis again",
        || {
            let api = api.clone();
            async move { ready(&api).await.then_some(()) }
        },
    )
    .await;
    // The wait in flight outlived the outage: a cancel now wakes it.
    let cancelled =
        send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "rex")).await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.text());
    let woken = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait answers on the cancel")
        .expect("task");
    assert_eq!(woken.status, 200, "{}", woken.text());
    assert_eq!(woken.json()["status"], "cancelled");

    let fresh = api.start_ok("rex", "demo.sleep", &json!({})).await;
    let read = api.get("rex", &format!("/v1/operations/{fresh}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["status"], "queued");
    platform.stop().await;
}

/// The transitions are Redis functions. A Redis that lost them (restarted
/// without persistence, `FUNCTION FLUSH`, a failover to an empty replica)
/// gets the library loaded again by whichever process calls one first:
/// the api's start, the worker's queue read, its batched claims and
/// results all go on as if nothing happened.
#[tokio::test]
async fn a_redis_that_lost_the_function_library_gets_it_loaded_again() {
    let platform = Platform::builder()
        .workers(1)
        .without_realtime()
        .start()
        .await;
    let api = platform.api();
    let first = api
        .start_ok("fay", "demo.sleep", &json!({"duration_ms": 0}))
        .await;
    let done = api
        .get(
            "fay",
            &format!("/v1/operations/{first}/wait?timeout_ms=10000"),
        )
        .await;
    assert_eq!(done.json()["status"], "succeeded", "{}", done.text());

    let libraries = |store: longrun_shared::store::Store| async move {
        let listed: Vec<redis::Value> = redis::cmd("FUNCTION")
            .arg("LIST")
            .query_async(&mut store.conn())
            .await
            .expect("FUNCTION LIST");
        listed.len()
    };
    assert_eq!(libraries(platform.store.clone()).await, 1);
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut platform.store.conn())
        .await
        .expect("FUNCTION FLUSH");
    assert_eq!(libraries(platform.store.clone()).await, 0);

    // Enough at once that the worker claims and completes them in batches.
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(
            api.start_ok("fay", "demo.sleep", &json!({"duration_ms": 0}))
                .await,
        );
    }
    for id in &ids {
        let done = api
            .get("fay", &format!("/v1/operations/{id}/wait?timeout_ms=10000"))
            .await;
        assert_eq!(done.json()["status"], "succeeded", "{}", done.text());
    }
    assert_eq!(libraries(platform.store.clone()).await, 1);
    platform.stop().await;
}
