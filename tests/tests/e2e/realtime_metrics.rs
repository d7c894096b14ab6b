//! The gateway's metrics, read from `/metrics` of a real `longrun realtime`
//! process (its own process, so no other test's gateway adds to them).

use std::time::Duration;

use longrun_tests::cli::GatewayProcess;
use longrun_tests::ws::seqs;
use longrun_tests::{Platform, StandIn, WsClient, eventually, token};
use serde_json::json;

use crate::LONGRUN;
use crate::realtime_delivery::queued;

/// The value of the sample `series` (name with its labels, as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

async fn scrape(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("the gateway answers")
        .text()
        .await
        .expect("a body")
}

/// Waits until `series` reads `expected` (gauges move as tasks start and end).
async fn settles(url: &str, series: &str, expected: f64) {
    eventually(Duration::from_secs(10), series, || async {
        (sample(&scrape(url).await, series) == Some(expected)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_counts_connections_subscriptions_deliveries_coalescing_and_closes() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let mut env = platform.env();
    // Coalescing from the third pending frame; never closing for it.
    env.push(("LONGRUN_WS_QUEUE".into(), "2".into()));
    env.push(("LONGRUN_WS_QUEUE_HARD".into(), "100000".into()));
    let gateway = GatewayProcess::start(LONGRUN, &env).await;
    let metrics = format!("{}/metrics", gateway.url().replacen("ws://", "http://", 1));
    let url = format!("{}/v1/ws?access_token={}", gateway.url(), token("meter"));
    let op = queued(&platform.client("meter")).await;

    let mut reader = WsClient::connect(&url).await.expect("connects");
    reader.subscribe(&op.id, Some(0)).await;
    let mut slow = WsClient::connect_slow(&url).await.expect("connects");
    slow.subscribe(&op.id, Some(0)).await;
    let mut watcher = WsClient::connect(&url).await.expect("connects");
    watcher
        .send(json!({"type": "subscribe", "owner": "self"}))
        .await;
    assert!(watcher.until_pong().await.is_empty());
    settles(&metrics, "longrun_ws_connections", 3.0).await;
    settles(&metrics, "longrun_ws_subscriptions", 3.0).await;

    // The slow client reads nothing while 300 padded events go out.
    let id = op.id.clone();
    let reading = tokio::spawn(async move { reader.events_until_terminal(&id).await });
    let worker = StandIn::claim(&platform.store, &op.id).await;
    let padding = "x".repeat(1_024);
    for step in 1..=300u64 {
        let data = json!({"step": step, "padding": padding});
        worker.progress(step as f64 / 3.0, &data).await;
    }
    worker.complete(&json!({"ok": true})).await;
    let read = reading.await.expect("the reader finished");
    let last = read.last().and_then(|e| e["seq"].as_u64()).expect("a seq");
    let slowly = slow.events_until_terminal(&op.id).await;
    assert!(
        seqs(&slowly).len() < read.len(),
        "the slow client was coalesced"
    );

    let text = scrape(&metrics).await;
    let delivered = sample(&text, "longrun_ws_events_delivered_total").expect("delivered");
    assert!(
        delivered >= (read.len() + slowly.len()) as f64,
        "{delivered} delivered"
    );
    let coalesced = sample(&text, "longrun_ws_events_coalesced_total").expect("coalesced");
    assert!(
        coalesced >= (last as usize - slowly.len()) as f64,
        "{coalesced} coalesced, the slow client missed {}",
        last as usize - slowly.len()
    );
    let latencies =
        sample(&text, "longrun_ws_delivery_latency_seconds_count").expect("a latency histogram");
    assert!(latencies > 0.0, "live events are timed");
    assert!(text.contains("longrun_ws_delivery_latency_seconds_bucket{le="));
    // Both operation subscriptions ended with the terminal event.
    settles(&metrics, "longrun_ws_subscriptions", 1.0).await;

    // Closes are counted by code: a client's own close, a bad token.
    slow.close().await;
    watcher
        .send(json!({"type": "auth", "token": "not-a-jwt"}))
        .await;
    // (The owner's events it did not read come first.)
    assert_eq!(watcher.close_code(Duration::from_secs(5)).await, Some(4001));
    settles(&metrics, "longrun_ws_connections", 0.0).await;
    let text = scrape(&metrics).await;
    assert_eq!(
        sample(&text, r#"longrun_ws_closed_total{code="4001"}"#),
        Some(1.0)
    );
    assert!(sample(&text, r#"longrun_ws_closed_total{code="1000"}"#) >= Some(1.0));
    settles(&metrics, "longrun_ws_subscriptions", 0.0).await;
}
