//! The api's routes on their happy paths, against a real Redis: status
//! codes, headers (absolute `Location`/`Operation-Location`, `Retry-After`
//! while not done) and body shapes of start, get, wait, events, children,
//! list, cancel, delete, kinds, the probes and the OpenAPI description.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use longrun_tests::http::{Api, send};
use longrun_tests::{Platform, eventually};
use reqwest::Method;
use serde_json::{Value, json};

fn ids(page: &Value) -> Vec<String> {
    page["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| op["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A platform whose operations stay queued (no worker).
async fn queue_only() -> Platform {
    Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await
}

async fn wait_done(api: &Api, sub: &str, id: &str) -> Value {
    let reply = api
        .get(sub, &format!("/v1/operations/{id}/wait?timeout_ms=20000"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let op = reply.json();
    assert_eq!(op["done"], true, "{op}");
    op
}

#[tokio::test]
async fn start_answers_202_with_absolute_locations_and_retry_after() {
    let platform = queue_only().await;
    let api = platform.api();
    let reply = api
        .start("ann", "demo.sleep", &json!({"duration_ms": 10, "steps": 2}))
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let op = reply.json();
    let id = op["id"].as_str().expect("id");
    let expected = format!("{}/v1/operations/{id}", platform.api_url);
    assert_eq!(reply.header("location").as_deref(), Some(expected.as_str()));
    assert_eq!(
        reply.header("operation-location").as_deref(),
        Some(expected.as_str())
    );
    assert_eq!(reply.retry_after(), Some(1));
    assert_eq!(op["status"], "queued");
    assert_eq!(op["done"], false);
    assert_eq!(op["kind"], "demo.sleep");
    assert_eq!(op["seq"], 1);
    assert_eq!(op["attempt"], 0);
    assert_eq!(op["max_attempts"], 3);
    assert_eq!(op["parent_id"], Value::Null);
    assert_eq!(op["children"]["total"], 0);
    assert!(
        longrun_shared::store::transitions::is_valid_id(id),
        "a UUID: {id}"
    );

    // An empty body is the input `{}`, with or without a content type.
    let bare = send(api.as_user(Method::POST, "/v1/demo/sleep", "ann")).await;
    assert_eq!(bare.status, 202, "{}", bare.text());
    let typed = send(
        api.as_user(Method::POST, "/v1/demo/sleep", "ann")
            .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(typed.status, 202, "{}", typed.text());

    // Options go in the query and show on the resource.
    let with_options = send(
        api.as_user(
            Method::POST,
            "/v1/demo/sleep?max_attempts=7&backoff=fixed",
            "ann",
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(with_options.status, 202, "{}", with_options.text());
    assert_eq!(with_options.json()["max_attempts"], 7);
    platform.stop().await;
}

#[tokio::test]
async fn locations_follow_forwarded_headers_or_the_configured_public_url() {
    let platform = queue_only().await;
    let api = platform.api();
    let forwarded = send(
        api.as_user(Method::POST, "/v1/demo/sleep", "fay")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "lro.example.com")
            .json(&json!({})),
    )
    .await;
    let id = forwarded.json()["id"].as_str().expect("id").to_owned();
    assert_eq!(
        forwarded.header("location"),
        Some(format!("https://lro.example.com/v1/operations/{id}"))
    );
    platform.stop().await;

    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .config(|config| config.public_url = Some("https://api.example.org/lr".into()))
        .start()
        .await;
    let reply = platform.api().start("fay", "demo.sleep", &json!({})).await;
    let id = reply.json()["id"].as_str().expect("id").to_owned();
    let expected = format!("https://api.example.org/lr/v1/operations/{id}");
    assert_eq!(reply.header("location"), Some(expected.clone()));
    assert_eq!(reply.header("operation-location"), Some(expected));
    platform.stop().await;
}

#[tokio::test]
async fn get_sends_retry_after_only_while_not_done() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let id = api
        .start_ok(
            "gus",
            "demo.sleep",
            &json!({"duration_ms": 400, "steps": 2}),
        )
        .await;
    let running = api.get("gus", &format!("/v1/operations/{id}")).await;
    assert_eq!(running.status, 200);
    assert_eq!(running.retry_after(), Some(1));
    assert_eq!(running.json()["id"], id.as_str());

    wait_done(&api, "gus", &id).await;
    let done = api.get("gus", &format!("/v1/operations/{id}")).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.retry_after(), None, "no Retry-After once done");
    let op = done.json();
    assert_eq!(op["status"], "succeeded");
    assert_eq!(op["result"]["slept_ms"], 400);
    assert!(op["finished_at"].is_string());
    platform.stop().await;
}

#[tokio::test]
async fn wait_answers_promptly_when_the_operation_finishes() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let id = api
        .start_ok(
            "wes",
            "demo.sleep",
            &json!({"duration_ms": 300, "steps": 1}),
        )
        .await;
    let asked = Instant::now();
    let reply = api
        .get("wes", &format!("/v1/operations/{id}/wait?timeout_ms=2000"))
        .await;
    let answered_at = SystemTime::now();
    let elapsed = asked.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let op = reply.json();
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(reply.retry_after(), None);
    let finished_at = humantime::parse_rfc3339(op["finished_at"].as_str().expect("finished_at"))
        .expect("RFC 3339");
    let lag = answered_at
        .duration_since(finished_at)
        .unwrap_or(Duration::ZERO);
    eprintln!("wait answered {lag:?} after the finish ({elapsed:?} after the request)");
    // Behaviour, not speed: woken by the finish, not by the 2 s timeout.
    assert!(
        lag < Duration::from_millis(500),
        "answered {lag:?} after the finish"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1_900), "{elapsed:?}");
    platform.stop().await;
}

#[tokio::test]
async fn wait_times_out_with_the_current_state() {
    let platform = queue_only().await;
    let api = platform.api();
    let id = api.start_ok("tim", "demo.sleep", &json!({})).await;
    let asked = Instant::now();
    let reply = api
        .get("tim", &format!("/v1/operations/{id}/wait?timeout_ms=300"))
        .await;
    let elapsed = asked.elapsed();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["done"], false);
    assert_eq!(reply.retry_after(), Some(1));
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");

    let immediate = api
        .get("tim", &format!("/v1/operations/{id}/wait?timeout_ms=0"))
        .await;
    assert_eq!(immediate.status, 200);
    assert_eq!(immediate.json()["status"], "queued");
    platform.stop().await;
}

#[tokio::test]
async fn a_wait_in_flight_answers_at_once_when_the_api_shuts_down() {
    let platform = queue_only().await;
    let api = platform.api();
    let id = api.start_ok("sam", "demo.sleep", &json!({})).await;
    let waiting = {
        let api = api.clone();
        let id = id.clone();
        tokio::spawn(async move {
            api.get("sam", &format!("/v1/operations/{id}/wait?timeout_ms=60000"))
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
    let stopping = Instant::now();
    platform.stop().await;
    let reply = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the wait answered during shutdown")
        .expect("task");
    assert!(stopping.elapsed() < Duration::from_secs(10));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["done"], false);
}

#[tokio::test]
async fn events_page_by_after_seq_and_limit() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let id = api
        .start_ok("eve", "demo.sleep", &json!({"duration_ms": 30, "steps": 3}))
        .await;
    let done = wait_done(&api, "eve", &id).await;
    let last = done["seq"].as_u64().expect("seq");

    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let page = api
            .get(
                "eve",
                &format!("/v1/operations/{id}/events?after_seq={after}&limit=2"),
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let events = page["events"].as_array().expect("events").clone();
        assert!(events.len() <= 2);
        if events.is_empty() {
            assert_eq!(page["next_seq"], after, "next_seq stays put at the end");
            break;
        }
        for event in &events {
            assert_eq!(event["operation_id"], id.as_str());
            assert!(event["at"].is_string());
            seqs.push(event["seq"].as_u64().expect("seq"));
        }
        after = page["next_seq"].as_u64().expect("next_seq");
        assert_eq!(Some(after), seqs.last().copied());
    }
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "every seq once, in order"
    );

    let all = api
        .get("eve", &format!("/v1/operations/{id}/events"))
        .await
        .json();
    let types: Vec<&str> = all["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types.first(), Some(&"created"));
    assert_eq!(types.get(1), Some(&"started"));
    assert_eq!(types.last(), Some(&"succeeded"));
    assert_eq!(all["events"][0]["data"]["kind"], "demo.sleep");
    platform.stop().await;
}

#[tokio::test]
async fn children_page_in_creation_order() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let id = api
        .start_ok(
            "cid",
            "demo.fanout",
            &json!({"children": 5, "child_duration_ms": 0}),
        )
        .await;
    let done = wait_done(&api, "cid", &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["children"]["total"], 5);
    assert_eq!(done["children"]["succeeded"], 5);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("/v1/operations/{id}/children?limit=2"),
            Some(c) => format!("/v1/operations/{id}/children?limit=2&cursor={c}"),
        };
        let page = api.get("cid", &path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        pages += 1;
        for child in page["operations"].as_array().expect("operations") {
            assert_eq!(child["parent_id"], id.as_str());
            assert_eq!(child["kind"], "demo.sleep");
            seen.push(child["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        5,
        "no duplicates"
    );
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "creation order (UUIDv7 ids grow)");

    let grandchildren = api
        .get("cid", &format!("/v1/operations/{}/children", seen[0]))
        .await;
    assert_eq!(grandchildren.status, 200);
    assert_eq!(
        grandchildren.json(),
        json!({"operations": [], "next_cursor": null})
    );
    platform.stop().await;
}

#[tokio::test]
async fn list_is_newest_first_with_cursors_stable_under_concurrent_inserts() {
    let platform = queue_only().await;
    let api = platform.api();
    let mut started = Vec::new();
    for n in 0..6 {
        let kind = if n % 2 == 0 {
            "demo.sleep"
        } else {
            "calc.primes"
        };
        let input = if n % 2 == 0 {
            json!({})
        } else {
            json!({"limit": 100})
        };
        started.push(api.start_ok("lin", kind, &input).await);
    }
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/operations?limit=2".to_owned(),
            Some(c) => format!("/v1/operations?limit=2&cursor={c}"),
        };
        let page = api.get("lin", &path).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        seen.extend(ids(&page));
        // Someone starts another operation between every two pages.
        api.start_ok("lin", "demo.sleep", &json!({})).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first, "exactly the first six, newest first");

    let primes = api
        .get("lin", "/v1/operations?kind=calc.primes&limit=100")
        .await
        .json();
    let expected: Vec<String> = newest_first
        .iter()
        .filter(|id| {
            started
                .iter()
                .position(|s| s == *id)
                .is_some_and(|n| n % 2 == 1)
        })
        .cloned()
        .collect();
    assert_eq!(ids(&primes), expected);
    assert_eq!(primes["next_cursor"], Value::Null);

    for id in &started[..2] {
        let cancelled =
            send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "lin")).await;
        assert_eq!(cancelled.status, 202);
    }
    let cancelled = api
        .get("lin", "/v1/operations?status=cancelled")
        .await
        .json();
    assert_eq!(
        ids(&cancelled),
        vec![started[1].clone(), started[0].clone()]
    );
    let cancelled_primes = api
        .get("lin", "/v1/operations?status=cancelled&kind=calc.primes")
        .await
        .json();
    assert_eq!(ids(&cancelled_primes), vec![started[1].clone()]);
    platform.stop().await;
}

#[tokio::test]
async fn cancel_answers_202_cancels_children_and_409_once_done() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let id = api
        .start_ok(
            "cal",
            "demo.fanout",
            &json!({"children": 3, "child_duration_ms": 60000, "child_steps": 1}),
        )
        .await;
    eventually(Duration::from_secs(10), "the children to exist", || {
        let api = api.clone();
        let id = id.clone();
        async move {
            let op = api.get("cal", &format!("/v1/operations/{id}")).await.json();
            (op["children"]["total"] == 3).then_some(())
        }
    })
    .await;
    let reply =
        send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "cal")).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let op = reply.json();
    assert_eq!(op["status"], "cancelled");
    assert_eq!(op["done"], true);
    let children = api
        .get("cal", &format!("/v1/operations/{id}/children"))
        .await
        .json();
    let statuses: Vec<&Value> = children["operations"]
        .as_array()
        .expect("children")
        .iter()
        .map(|child| &child["status"])
        .collect();
    assert_eq!(statuses, vec!["cancelled"; 3]);

    let again =
        send(api.as_user(Method::POST, &format!("/v1/operations/{id}/cancel"), "cal")).await;
    again.problem(409, "conflict");
    platform.stop().await;
}

#[tokio::test]
async fn delete_answers_204_for_a_finished_operation_and_409_before() {
    let platform = Platform::builder().without_realtime().start().await;
    let api = platform.api();
    let running = api
        .start_ok("del", "demo.sleep", &json!({"duration_ms": 60000}))
        .await;
    let refused =
        send(api.as_user(Method::DELETE, &format!("/v1/operations/{running}"), "del")).await;
    refused.problem(409, "conflict");

    let id = api
        .start_ok(
            "del",
            "demo.fanout",
            &json!({"children": 2, "child_duration_ms": 0}),
        )
        .await;
    wait_done(&api, "del", &id).await;
    let children = ids(&api
        .get("del", &format!("/v1/operations/{id}/children"))
        .await
        .json());
    assert_eq!(children.len(), 2);
    let deleted = send(api.as_user(Method::DELETE, &format!("/v1/operations/{id}"), "del")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert!(deleted.body.is_empty());
    for path in [
        format!("/v1/operations/{id}"),
        format!("/v1/operations/{id}/events"),
        format!("/v1/operations/{}", children[0]),
    ] {
        api.get("del", &path).await.problem(404, "not_found");
    }
    let listed = ids(&api.get("del", "/v1/operations").await.json());
    assert_eq!(listed, vec![running], "the deleted one left the list");
    platform.stop().await;
}

#[tokio::test]
async fn kinds_list_every_kind_with_its_input_schema() {
    let platform = queue_only().await;
    let reply = platform.api().get("kim", "/v1/kinds").await;
    assert_eq!(reply.status, 200);
    let kinds = reply.json();
    let names: HashSet<&str> = kinds["kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|kind| {
            assert!(kind["description"].is_string());
            assert_eq!(kind["input_schema"]["type"], "object", "{kind}");
            kind["kind"].as_str().expect("name")
        })
        .collect();
    for kind in ["demo.sleep", "demo.fanout", "data.import", "calc.primes"] {
        assert!(names.contains(kind), "{kind} in {names:?}");
    }
    platform.stop().await;
}

#[tokio::test]
async fn probes_answer_without_a_token() {
    let platform = queue_only().await;
    let api = platform.api();
    let health = send(api.anonymous(Method::GET, "/healthz")).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));
    let ready = send(api.anonymous(Method::GET, "/readyz")).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"status": "ready"}));
    let metrics = send(api.anonymous(Method::GET, "/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
    platform.stop().await;
}

#[tokio::test]
async fn openapi_json_describes_every_route_and_each_kind() {
    let platform = queue_only().await;
    let api = platform.api();
    send(api.anonymous(Method::GET, "/openapi.json"))
        .await
        .problem(401, "unauthorized");
    let reply = api.get("oli", "/openapi.json").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    let doc = reply.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    for (path, method) in [
        ("/v1/{module}/{operation}", "post"),
        ("/v1/demo/sleep", "post"),
        ("/v1/demo/fanout", "post"),
        ("/v1/data/import", "post"),
        ("/v1/calc/primes", "post"),
        ("/v1/operations", "get"),
        ("/v1/operations/{id}", "get"),
        ("/v1/operations/{id}", "delete"),
        ("/v1/operations/{id}/wait", "get"),
        ("/v1/operations/{id}/events", "get"),
        ("/v1/operations/{id}/children", "get"),
        ("/v1/operations/{id}/cancel", "post"),
        ("/v1/kinds", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is described"
        );
    }
    platform.stop().await;
}
