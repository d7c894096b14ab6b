//! The gateway's authentication: the three ways to give a token, expiry
//! and refresh, the same claim checks as the api, and connection limits.

use std::time::Duration;

use longrun_shared::auth::{Claims, mint_claims, unix_now};
use longrun_tests::ws::{Received, seqs};
use longrun_tests::{Platform, SECRET, StandIn, WsClient, eventually, token, token_with};
use serde_json::json;

use crate::realtime_delivery::{contiguous, queued};

fn claims(sub: &str, exp: u64) -> Claims {
    Claims {
        sub: sub.to_owned(),
        exp,
        nbf: None,
        iat: None,
        iss: None,
        aud: None,
        roles: vec![],
    }
}

fn signed(claims: &Claims) -> String {
    mint_claims(SECRET, claims).expect("mints")
}

async fn connect(platform: &Platform, token: &str) -> Result<WsClient, u16> {
    let url = format!("{}/v1/ws?access_token={token}", platform.ws_url);
    match WsClient::connect(&url).await {
        Ok(ws) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

#[tokio::test]
async fn an_expired_token_closes_with_4001_and_an_auth_refresh_keeps_the_connection() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.jwt.leeway_s = 0)
        .start()
        .await;
    let short = token_with("exp", &[], Duration::from_secs(2));
    let mut refreshed = connect(&platform, &short).await.expect("accepted");
    let mut lapsing = connect(&platform, &short).await.expect("accepted");
    refreshed
        .send(json!({"type": "auth", "token": token("exp")}))
        .await;
    assert!(
        refreshed.until_pong().await.is_empty(),
        "a refresh is silent"
    );

    assert_eq!(
        lapsing.close_code(Duration::from_secs(10)).await,
        Some(4001),
        "no refresh: closed when the token expires"
    );
    // Same expiry, but refreshed: still serving.
    let op = queued(&platform.client("exp")).await;
    refreshed.subscribe(&op.id, Some(0)).await;
    StandIn::claim(&platform.store, &op.id)
        .await
        .run_fast(3, &json!(null))
        .await;
    let events = refreshed.events_until_terminal(&op.id).await;
    let done = platform.client("exp").get(&op.id).await.expect("read");
    assert_eq!(seqs(&events), contiguous(1, done.seq));

    // A refresh must keep the sub, and must be valid.
    refreshed
        .send(json!({"type": "auth", "token": token("someone-else")}))
        .await;
    assert_eq!(
        refreshed.close_code(Duration::from_secs(5)).await,
        Some(4001)
    );
    let mut again = connect(&platform, &token("exp")).await.expect("accepted");
    again
        .send(json!({"type": "auth", "token": signed(&claims("exp", unix_now() - 60))}))
        .await;
    assert_eq!(again.close_code(Duration::from_secs(5)).await, Some(4001));
    platform.stop().await;
}

#[tokio::test]
async fn a_first_auth_frame_authenticates_and_without_one_the_connection_closes() {
    let platform = Platform::builder().workers(0).start().await;
    let op = queued(&platform.client("frame")).await;
    let url = format!("{}/v1/ws", platform.ws_url);

    let mut ws = WsClient::connect(&url)
        .await
        .expect("no token is fine at upgrade");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_frame().await["type"], "pong");
    ws.subscribe(&op.id, Some(0)).await;
    let refused = ws.next_frame().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "unauthorized");
    assert_eq!(refused["operation_id"], op.id.as_str());
    ws.send(json!({"type": "auth", "token": token("frame")}))
        .await;
    ws.subscribe(&op.id, Some(0)).await;
    StandIn::claim(&platform.store, &op.id)
        .await
        .run_fast(2, &json!(null))
        .await;
    let events = ws.events_until_terminal(&op.id).await;
    assert_eq!(seqs(&events).first(), Some(&1));

    let mut garbage = WsClient::connect(&url).await.expect("upgrades");
    garbage
        .send(json!({"type": "auth", "token": "not-a-jwt"}))
        .await;
    assert_eq!(garbage.close_code(Duration::from_secs(5)).await, Some(4001));

    let connected_at = std::time::Instant::now();
    let mut silent = WsClient::connect(&url).await.expect("upgrades");
    assert_eq!(
        silent.close_code(Duration::from_secs(15)).await,
        Some(4001),
        "no auth frame within 10 s"
    );
    // Generous: it got its whole window, not a shorter one.
    assert!(
        connected_at.elapsed() >= Duration::from_secs(9),
        "closed after {:?}, before the 10 s window ended",
        connected_at.elapsed()
    );
    platform.stop().await;
}

#[tokio::test]
async fn issuer_audience_not_before_and_leeway_apply_as_in_the_api() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| {
            config.jwt.issuer = Some("longrun-test".into());
            config.jwt.audience = Some("clients".into());
            config.jwt.leeway_s = 4;
        })
        .start()
        .await;
    let now = unix_now();
    let good = Claims {
        iss: Some("longrun-test".into()),
        aud: Some("clients".into()),
        ..claims("iss", now + 600)
    };
    let http = reqwest::Client::new();
    let api_status = |token: String| {
        let http = http.clone();
        // Authorised: 404 for an operation that does not exist; refused: 401.
        let url = format!(
            "{}/v1/operations/0193a3f6-0000-7000-8000-000000000000",
            platform.api_url
        );
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("answers")
                .status()
                .as_u16()
        }
    };
    let cases = [
        ("all claims right", good.clone(), true),
        (
            "no issuer",
            Claims {
                iss: None,
                ..good.clone()
            },
            false,
        ),
        (
            "wrong audience",
            Claims {
                aud: Some("others".into()),
                ..good.clone()
            },
            false,
        ),
        (
            "not valid for another minute",
            Claims {
                nbf: Some(now + 60),
                ..good.clone()
            },
            false,
        ),
        (
            "not before, within the leeway",
            Claims {
                nbf: Some(now + 2),
                ..good.clone()
            },
            true,
        ),
        (
            "expired a second ago, within the leeway",
            Claims {
                exp: now - 1,
                ..good.clone()
            },
            true,
        ),
        (
            "expired past the leeway",
            Claims {
                exp: now - 30,
                ..good.clone()
            },
            false,
        ),
    ];
    for (case, claims, accepted) in cases {
        let token = signed(&claims);
        let api = api_status(token.clone()).await;
        assert_eq!(api, if accepted { 404 } else { 401 }, "api, {case}");
        match connect(&platform, &token).await {
            Ok(ws) => {
                assert!(accepted, "gateway accepted: {case}");
                ws.close().await;
            }
            Err(status) => {
                assert!(!accepted, "gateway refused: {case}");
                assert_eq!(status, 401, "{case}");
            }
        }
    }

    // In an auth frame the same claims are checked.
    let mut ws = WsClient::connect(&format!("{}/v1/ws", platform.ws_url))
        .await
        .expect("upgrades");
    ws.send(json!({"type": "auth", "token": signed(&Claims { aud: None, ..good.clone() })}))
        .await;
    assert_eq!(ws.close_code(Duration::from_secs(5)).await, Some(4001));

    // Within the leeway the connection lives on, and closes when it is used up.
    let lapsing = signed(&Claims {
        exp: unix_now() - 1,
        ..good
    });
    let mut ws = connect(&platform, &lapsing)
        .await
        .expect("within the leeway");
    assert!(ws.until_pong().await.is_empty());
    assert_eq!(ws.close_code(Duration::from_secs(10)).await, Some(4001));
    platform.stop().await;
}

#[tokio::test]
async fn connections_per_owner_are_limited_at_upgrade_and_at_auth() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.realtime.max_connections_per_owner = 2)
        .start()
        .await;
    let first = connect(&platform, &token("busy")).await.expect("first");
    let _second = connect(&platform, &token("busy")).await.expect("second");
    let third =
        WsClient::connect_with_header(&format!("{}/v1/ws", platform.ws_url), &token("busy")).await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a problem document");
            assert_eq!(body["code"], "rate_limited");
        }
        _ => panic!("a third connection was accepted"),
    }
    assert!(
        connect(&platform, &token("other")).await.is_ok(),
        "another owner has its own limit"
    );
    let mut by_frame = WsClient::connect(&format!("{}/v1/ws", platform.ws_url))
        .await
        .expect("anonymous upgrades count in their own pool");
    by_frame
        .send(json!({"type": "auth", "token": token("busy")}))
        .await;
    assert!(matches!(
        by_frame.receive(Duration::from_secs(5)).await,
        Received::Closed(Some(frame)) if u16::from(frame.code) == 4029
    ));

    first.close().await;
    eventually(Duration::from_secs(5), "a released slot", || async {
        connect(&platform, &token("busy")).await.ok()
    })
    .await;
    platform.stop().await;
}
