//! The typed client the CLI is built on, used as a Rust service would:
//! a `Watch` that reports and rides out a gateway crash, long polls with a
//! limit, idempotent starts, paged reads and ids that cannot escape their
//! path segment.

use std::time::Duration;

use futures_util::StreamExt;
use longrun_client::{Code, StartOptions, Status, WatchUpdate};
use longrun_tests::cli::GatewayProcess;
use longrun_tests::{Platform, eventually};
use serde_json::json;

use crate::LONGRUN;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_watch_reports_a_lost_gateway_and_resumes_without_a_gap() {
    let platform = Platform::builder().without_realtime().start().await;
    let mut gateway = GatewayProcess::start(LONGRUN, &platform.env()).await;
    let http = platform.client("yara");
    let client = longrun_client::Client::new(&platform.api_url, &gateway.url(), http.token());
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 3000, "steps": 30}),
            &StartOptions::default(),
        )
        .await
        .expect("started");

    let mut watch = client.watch(&op.id, None);
    let mut seqs = Vec::new();
    while seqs.len() < 3 {
        match tokio::time::timeout(LIMIT, watch.next_update()).await {
            Ok(Ok(Some(WatchUpdate::Event(event)))) => seqs.push(event.seq),
            other => panic!("an event, not {other:?}"),
        }
    }
    let from = watch.snapshot().expect("subscribed without after_seq").seq;
    assert_eq!(seqs[0], from + 1, "events start after the snapshot");

    gateway.kill().await;
    let last = *seqs.last().expect("some");
    eventually(LIMIT, "events logged while the gateway is down", || async {
        client
            .get(&op.id)
            .await
            .ok()
            .filter(|now| now.seq >= last + 3)
            .map(|_| ())
    })
    .await;
    gateway.restart().await;

    let mut updates = Vec::new();
    while let Some(update) = tokio::time::timeout(LIMIT, watch.next_update())
        .await
        .expect("in time")
        .expect("the watch goes on")
    {
        if let WatchUpdate::Event(event) = &update {
            seqs.push(event.seq);
        }
        updates.push(update);
    }
    assert!(
        matches!(updates.first(), Some(WatchUpdate::Disconnected { .. })),
        "{updates:?}"
    );
    assert_eq!(
        updates
            .iter()
            .filter(|u| **u == WatchUpdate::Reconnected)
            .count(),
        1
    );
    assert_eq!(watch.reconnects(), 1);
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(seqs, (from + 1..=done.seq).collect::<Vec<_>>());

    // The same log, read over HTTP or replayed as a stream from seq 0.
    let logged: Vec<u64> = client
        .all_events(&op.id, 0)
        .await
        .expect("log")
        .iter()
        .map(|e| e.seq)
        .collect();
    let streamed: Vec<u64> = client
        .watch(&op.id, Some(0))
        .into_stream()
        .map(|event| event.expect("an event").seq)
        .collect()
        .await;
    assert_eq!(logged, (1..=done.seq).collect::<Vec<_>>());
    assert_eq!(streamed, logged);
}

#[tokio::test]
async fn waits_starts_and_reads_behave_as_documented() {
    let platform = Platform::start().await;
    let client = platform.client("zoe");
    let options = StartOptions {
        idempotency_key: Some("once".into()),
        ..StartOptions::default()
    };
    let input = json!({"duration_ms": 60000, "steps": 60});
    let first = client
        .start_full("demo.sleep", &input, &options)
        .await
        .expect("started");
    let again = client
        .start_full("demo.sleep", &input, &options)
        .await
        .expect("repeat");
    assert!(first.created && !again.created);
    assert_eq!(first.operation.id, again.operation.id);
    assert!(
        first
            .location
            .is_some_and(|l| l.ends_with(&format!("/v1/operations/{}", first.operation.id)))
    );

    let id = first.operation.id;
    let started = std::time::Instant::now();
    let waited = client
        .wait_until_done(&id, Some(Duration::from_millis(700)))
        .await
        .expect("answers");
    assert!(!waited.done, "gives back the state at the limit");
    assert!(started.elapsed() >= Duration::from_millis(700));
    let (_, retry_after) = client.get_with_retry_after(&id).await.expect("read");
    assert!(retry_after.is_some(), "Retry-After while not done");

    client.cancel(&id).await.expect("cancelled");
    let done = client.wait_until_done(&id, None).await.expect("done");
    assert_eq!(done.status, Status::Cancelled);
    let conflict = client.cancel(&id).await.expect_err("already done");
    assert_eq!(conflict.code(), Some(Code::Conflict));
    assert!(!conflict.is_transient());

    for escape in ["../kinds", "..", "x?y"] {
        let err = client.get(escape).await.expect_err("not an operation");
        assert!(
            matches!(err.code(), Some(Code::NotFound | Code::BadRequest)),
            "{escape}: {err}"
        );
    }
    let refused = longrun_client::Client::new(&platform.api_url, &platform.ws_url, "garbage");
    assert!(
        refused
            .kinds()
            .await
            .expect_err("a bad token")
            .is_unauthorized()
    );
    platform.stop().await;
}
