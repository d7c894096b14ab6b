//! Bearer tokens over HTTP (HS256 only, `exp` required, `nbf`, `iss`/`aud`
//! when configured, leeway on both time claims), the owner rule (another
//! owner's operation is 404 on every route, list included) and admins.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use longrun_shared::auth::unix_now;
use longrun_tests::http::{Api, send};
use longrun_tests::{Platform, SECRET, token_with};
use reqwest::Method;
use serde_json::{Value, json};

fn sign(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("signs")
}

fn hs256(claims: Value) -> String {
    sign(Algorithm::HS256, SECRET, &claims)
}

async fn status_with(api: &Api, token: &str) -> u16 {
    send(api.with_token(Method::GET, "/v1/operations", token))
        .await
        .status
}

#[tokio::test]
async fn every_route_but_the_probes_needs_a_token() {
    let platform = Platform::queue_only().await;
    let api = platform.api();
    let id = api.start_ok("pat", "demo.sleep", &json!({})).await;
    let routes = [
        (Method::POST, "/v1/demo/sleep".to_owned()),
        (Method::GET, format!("/v1/operations/{id}")),
        (Method::GET, format!("/v1/operations/{id}/wait")),
        (Method::GET, format!("/v1/operations/{id}/events")),
        (Method::GET, format!("/v1/operations/{id}/children")),
        (Method::POST, format!("/v1/operations/{id}/cancel")),
        (Method::DELETE, format!("/v1/operations/{id}")),
        (Method::GET, "/v1/operations".to_owned()),
        (Method::GET, "/v1/kinds".to_owned()),
        (Method::GET, "/openapi.json".to_owned()),
    ];
    for (method, path) in &routes {
        let reply = send(api.anonymous(method.clone(), path)).await;
        reply.problem(401, "unauthorized");
        assert_eq!(reply.header("www-authenticate").as_deref(), Some("Bearer"));
        let basic = send(
            api.anonymous(method.clone(), path)
                .header("authorization", "Basic YWxpY2U6c2VjcmV0"),
        )
        .await;
        basic.problem(401, "unauthorized");
    }
    let op = api.get("pat", &format!("/v1/operations/{id}")).await.json();
    assert_eq!(op["status"], "queued", "nothing was cancelled or deleted");
    platform.stop().await;
}

#[tokio::test]
async fn only_hs256_with_the_right_secret_is_accepted() {
    let platform = Platform::queue_only().await;
    let api = platform.api();
    let claims = json!({"sub": "ada", "exp": unix_now() + 600});
    assert_eq!(status_with(&api, &hs256(claims.clone())).await, 200);

    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let unsigned = format!("{header}.{payload}.");
    let refusals = [
        unsigned,
        sign(Algorithm::HS384, SECRET, &claims),
        sign(Algorithm::HS512, SECRET, &claims),
        sign(
            Algorithm::HS256,
            "another-secret-of-enough-length-0123",
            &claims,
        ),
        "not-a-jwt".to_owned(),
        String::new(),
    ];
    for token in &refusals {
        let reply = send(api.with_token(Method::GET, "/v1/operations", token)).await;
        reply.problem(401, "unauthorized");
    }
    platform.stop().await;
}

#[tokio::test]
async fn time_claims_are_checked_with_the_leeway() {
    let platform = Platform::queue_only().await; // leeway: the default 5 s
    let api = platform.api();
    let now = unix_now();
    let cases = [
        (json!({"sub": "tom"}), 401),
        (json!({"sub": "tom", "exp": now - 60}), 401),
        (json!({"sub": "tom", "exp": now - 2}), 200),
        (
            json!({"sub": "tom", "exp": now + 600, "nbf": now + 60}),
            401,
        ),
        (json!({"sub": "tom", "exp": now + 600, "nbf": now + 2}), 200),
        (json!({"exp": now + 600}), 401),
        (json!({"sub": "", "exp": now + 600}), 401),
        (json!({"sub": "tom", "exp": "tomorrow"}), 401),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            status_with(&api, &hs256(claims.clone())).await,
            expected,
            "{claims}"
        );
    }
    let expired = send(api.with_token(
        Method::GET,
        "/v1/operations",
        &hs256(json!({"sub": "tom", "exp": now - 60})),
    ))
    .await;
    let problem = expired.problem(401, "unauthorized");
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("expired"),
        "{problem}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .config(|config| {
            config.jwt.issuer = Some("https://id.example.com".into());
            config.jwt.audience = Some("longrun".into());
            config.jwt.leeway_s = 0;
        })
        .start()
        .await;
    let api = platform.api();
    let exp = unix_now() + 600;
    let iss = "https://id.example.com";
    let cases = [
        (json!({"sub": "ivo", "exp": exp}), 401),
        (json!({"sub": "ivo", "exp": exp, "iss": iss}), 401),
        (json!({"sub": "ivo", "exp": exp, "aud": "longrun"}), 401),
        (
            json!({"sub": "ivo", "exp": exp, "iss": "https://evil.example.com", "aud": "longrun"}),
            401,
        ),
        (
            json!({"sub": "ivo", "exp": exp, "iss": iss, "aud": "other"}),
            401,
        ),
        (
            json!({"sub": "ivo", "exp": exp, "iss": iss, "aud": ["other"]}),
            401,
        ),
        (
            json!({"sub": "ivo", "exp": exp, "iss": iss, "aud": "longrun"}),
            200,
        ),
        (
            json!({"sub": "ivo", "exp": exp, "iss": iss, "aud": ["other", "longrun"]}),
            200,
        ),
        // No leeway configured: a token that expired a second ago is refused.
        (
            json!({"sub": "ivo", "exp": unix_now() - 1, "iss": iss, "aud": "longrun"}),
            401,
        ),
    ];
    for (claims, expected) in cases {
        assert_eq!(
            status_with(&api, &hs256(claims.clone())).await,
            expected,
            "{claims}"
        );
    }
    platform.stop().await;
}

#[tokio::test]
async fn another_owners_operation_is_404_on_every_route() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let running = api
        .start_ok(
            "alice",
            "demo.fanout",
            &json!({"children": 1, "child_duration_ms": 60000}),
        )
        .await;
    let finished = api
        .start_ok("alice", "demo.sleep", &json!({"duration_ms": 0}))
        .await;
    let done = api
        .get(
            "alice",
            &format!("/v1/operations/{finished}/wait?timeout_ms=20000"),
        )
        .await
        .json();
    assert_eq!(done["done"], true);
    let missing = "0193a3f6-0000-7000-8000-000000000000";

    let attempts = |id: &str| {
        vec![
            (Method::GET, format!("/v1/operations/{id}")),
            (
                Method::GET,
                format!("/v1/operations/{id}/wait?timeout_ms=50"),
            ),
            (Method::GET, format!("/v1/operations/{id}/events")),
            (Method::GET, format!("/v1/operations/{id}/children")),
            (Method::POST, format!("/v1/operations/{id}/cancel")),
            (Method::DELETE, format!("/v1/operations/{id}")),
        ]
    };
    for id in [&running, &finished] {
        for ((method, path), (_, missing_path)) in attempts(id).into_iter().zip(attempts(missing)) {
            let theirs = send(api.as_user(method.clone(), &path, "bob")).await;
            let problem = theirs.problem(404, "not_found");
            let absent = send(api.as_user(method, &missing_path, "bob")).await;
            let absent = absent.problem(404, "not_found");
            assert_eq!(
                problem["detail"], absent["detail"],
                "existence does not leak"
            );
        }
    }
    let bobs = api.get("bob", "/v1/operations").await.json();
    assert_eq!(bobs["operations"], json!([]));
    api.get("bob", "/v1/operations?owner=alice")
        .await
        .problem(404, "not_found");
    let own = api.get("bob", "/v1/operations?owner=bob").await;
    assert_eq!(own.status, 200);

    let still = api
        .get("alice", &format!("/v1/operations/{running}"))
        .await
        .json();
    assert_eq!(still["done"], false, "bob's cancel changed nothing");
    let kept = api
        .get("alice", &format!("/v1/operations/{finished}"))
        .await;
    assert_eq!(kept.status, 200, "bob's delete changed nothing");
    platform.stop().await;
}

#[tokio::test]
async fn admins_read_list_cancel_and_delete_every_owners_operations() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let admin = token_with("root", &["admin"], Duration::from_secs(600));
    let carols = api
        .start_ok("carol", "demo.sleep", &json!({"duration_ms": 60000}))
        .await;
    let daves = api
        .start_ok("dave", "demo.sleep", &json!({"duration_ms": 0}))
        .await;

    let read = send(api.with_token(Method::GET, &format!("/v1/operations/{carols}"), &admin)).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["owner"], "carol");
    for path in [
        format!("/v1/operations/{carols}/events"),
        format!("/v1/operations/{carols}/children"),
        format!("/v1/operations/{carols}/wait?timeout_ms=10"),
    ] {
        let reply = send(api.with_token(Method::GET, &path, &admin)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }

    let everyone = send(api.with_token(Method::GET, "/v1/operations", &admin))
        .await
        .json();
    let owners: Vec<&str> = everyone["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| op["owner"].as_str().expect("owner"))
        .collect();
    assert_eq!(owners, vec!["dave", "carol"], "every owner's, newest first");
    let carols_only = send(api.with_token(Method::GET, "/v1/operations?owner=carol", &admin))
        .await
        .json();
    assert_eq!(carols_only["operations"][0]["id"], carols.as_str());
    assert_eq!(carols_only["operations"].as_array().map(Vec::len), Some(1));

    let cancelled = send(api.with_token(
        Method::POST,
        &format!("/v1/operations/{carols}/cancel"),
        &admin,
    ))
    .await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.text());
    assert_eq!(cancelled.json()["status"], "cancelled");

    let done = send(api.with_token(
        Method::GET,
        &format!("/v1/operations/{daves}/wait?timeout_ms=20000"),
        &admin,
    ))
    .await;
    assert_eq!(done.json()["done"], true);
    let deleted =
        send(api.with_token(Method::DELETE, &format!("/v1/operations/{daves}"), &admin)).await;
    assert_eq!(deleted.status, 204);
    api.get("dave", &format!("/v1/operations/{daves}"))
        .await
        .problem(404, "not_found");
    platform.stop().await;
}
