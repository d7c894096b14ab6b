//! One operation through the whole path: HTTP start → worker → Redis
//! pub/sub → WebSocket gateway → client; and the CLI driving it.

use std::time::Duration;

use longrun_client::StartOptions;
use longrun_tests::ws::{Received, seqs};
use longrun_tests::{Platform, WsClient, process, token};

use crate::LONGRUN;
use serde_json::{Value, json};

fn contiguous(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

#[tokio::test]
async fn a_sleep_streams_every_event_in_order_and_finishes() {
    let platform = Platform::start().await;
    let client = platform.client("alice");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 300, "steps": 10}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    assert_eq!(op.status.as_str(), "queued");

    let mut ws = platform.ws("alice").await;
    ws.subscribe(&op.id, Some(0)).await;
    let events = ws.events_until_terminal(&op.id).await;

    let done = client.get(&op.id).await.expect("read");
    assert!(done.done);
    assert_eq!(done.result["slept_ms"], 300);
    assert_eq!(
        seqs(&events),
        contiguous(1, done.seq),
        "every seq once, in order"
    );
    assert_eq!(
        events.first().map(|e| e["event"].clone()),
        Some(json!("created"))
    );
    assert_eq!(
        events.last().map(|e| e["event"].clone()),
        Some(json!("succeeded"))
    );
    let progress: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "progress")
        .filter_map(|e| e["data"]["percent"].as_f64())
        .collect();
    assert!(!progress.is_empty());
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "percent never decreases: {progress:?}"
    );
    assert_eq!(progress.last().copied(), Some(100.0));
    platform.stop().await;
}

#[tokio::test]
async fn a_client_that_reconnects_with_its_last_seq_misses_nothing() {
    let platform = Platform::start().await;
    let client = platform.client("bob");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 600, "steps": 12}),
            &StartOptions::default(),
        )
        .await
        .expect("started");

    let mut first = platform.ws("bob").await;
    first.subscribe(&op.id, Some(0)).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let frame = first.next_frame().await;
        if frame["type"] == "event" {
            seen.push(frame);
        }
    }
    first.close().await;
    let last = seqs(&seen).last().copied().expect("some events");

    let mut second = platform.ws("bob").await;
    second.subscribe(&op.id, Some(last)).await;
    seen.extend(second.events_until_terminal(&op.id).await);

    let done = client
        .wait(&op.id, Duration::from_secs(10))
        .await
        .expect("done");
    assert_eq!(
        seqs(&seen),
        contiguous(1, done.seq),
        "the union is exactly 1..n"
    );
    platform.stop().await;
}

#[tokio::test]
async fn subscribing_without_after_seq_starts_from_the_current_resource() {
    let platform = Platform::start().await;
    let client = platform.client("carol");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 200, "steps": 4}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    let mut ws = platform.ws("carol").await;
    ws.subscribe(&op.id, None).await;
    let subscribed = ws.next_frame().await;
    assert_eq!(subscribed["type"], "subscribed");
    assert_eq!(subscribed["operation"]["id"], op.id.as_str());
    let from = subscribed["operation"]["seq"].as_u64().expect("seq");
    let events = ws.events_until_terminal(&op.id).await;
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(seqs(&events), contiguous(from + 1, done.seq));
    platform.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_over_http_and_at_upgrade() {
    let platform = Platform::start().await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!(
            "{}/v1/operations/0193a3f6-0000-7000-8000-000000000000",
            platform.api_url
        ))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("text"),
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "unauthorized");
    assert_eq!(problem["status"], 401);

    let forged = longrun_shared::auth::mint(
        "another-secret-entirely-0123456789",
        &longrun_shared::auth::TokenRequest {
            sub: "mallory",
            roles: vec![],
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
        },
    )
    .expect("mints");
    let refused =
        WsClient::connect(&format!("{}/v1/ws?access_token={forged}", platform.ws_url)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        Err(other) => panic!("expected HTTP 401, got {other}"),
        Ok(_) => panic!("a forged token was accepted"),
    }
    let header =
        WsClient::connect_with_header(&format!("{}/v1/ws", platform.ws_url), &forged).await;
    assert!(
        matches!(header, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401)
    );

    let mut good =
        WsClient::connect_with_header(&format!("{}/v1/ws", platform.ws_url), &token("alice"))
            .await
            .expect("a good header token is accepted");
    good.send(json!({"type": "ping"})).await;
    assert!(
        matches!(good.receive(Duration::from_secs(5)).await, Received::Frame(f) if f["type"] == "pong")
    );
    platform.stop().await;
}

#[tokio::test]
async fn the_cli_starts_and_watches_to_success() {
    let platform = Platform::start().await;
    let mut env = platform.env();
    let minted = process::run(LONGRUN, &env, &["token", "--sub", "dana"]).await;
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8(minted.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    env.push(("LONGRUN_TOKEN".into(), token));

    let started = process::run(
        LONGRUN,
        &env,
        &["start", "demo.sleep", r#"{"duration_ms":300,"steps":3}"#],
    )
    .await;
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let id = String::from_utf8(started.stdout)
        .expect("utf8")
        .trim()
        .to_owned();
    assert!(
        longrun_shared::store::transitions::is_valid_id(&id),
        "prints the id: {id}"
    );

    let watched = process::run(LONGRUN, &env, &["watch", &id]).await;
    let out = String::from_utf8_lossy(&watched.stdout);
    assert_eq!(
        watched.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(out.contains("succeeded"), "{out}");
    assert!(out.contains("slept_ms"), "{out}");
    platform.stop().await;
}

#[tokio::test]
async fn the_healthcheck_command_tells_a_live_service_from_a_dead_one() {
    let platform = Platform::start().await;
    let env = platform.env();
    let live = format!("{}/readyz", platform.api_url);
    let up = process::run(LONGRUN, &env, &["healthcheck", &live]).await;
    assert_eq!(up.status.code(), Some(0));
    let port = longrun_shared::redis_server::free_port().expect("a free port");
    let dead = format!("http://127.0.0.1:{port}/healthz");
    let down = process::run(LONGRUN, &env, &["healthcheck", &dead]).await;
    assert_eq!(down.status.code(), Some(1));
    platform.stop().await;
}
