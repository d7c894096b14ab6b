//! The gateway's delivery guarantee and backpressure, with real Redis,
//! real WebSocket clients and a stand-in worker driving the real
//! transition scripts fast (see `longrun_tests::stand_in`).

use std::time::Duration;

use longrun_client::{Client, StartOptions};
use longrun_shared::model::Operation;
use longrun_tests::ws::{Received, seqs};
use longrun_tests::{Platform, StandIn, WsClient, token};
use serde_json::{Value, json};

pub fn contiguous(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

/// Starts an operation the stand-in worker will drive (the platform runs no worker).
pub async fn queued(client: &Client) -> Operation {
    client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "steps": 1}),
            &StartOptions::default(),
        )
        .await
        .expect("started")
}

/// Connects as `sub`, subscribes to `id` after `after_seq` and collects
/// its events until the terminal one.
async fn collect(url: String, sub: &'static str, id: String, after_seq: u64) -> Vec<Value> {
    let mut ws = WsClient::connect(&format!("{url}/v1/ws?access_token={}", token(sub)))
        .await
        .expect("connects");
    ws.subscribe(&id, Some(after_seq)).await;
    ws.events_until_terminal(&id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_live_overlapping_deliver_every_seq_once_in_order() {
    let platform = Platform::builder().workers(0).start().await;
    let client = platform.client("olive");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;

    let mut first = platform.ws("olive").await;
    first.subscribe(&op.id, Some(0)).await;
    let emitting = tokio::spawn({
        let worker = worker.clone();
        async move { worker.run_fast(1_000, &json!({"rows": 17})).await }
    });
    // Others join while the stream runs: each replays a log that keeps
    // growing under it and switches to live events mid-flight.
    let mut joiners = Vec::new();
    let mut events = Vec::new();
    loop {
        let frame = first.next_frame().await;
        if frame["type"] != "event" {
            continue;
        }
        let terminal = frame["event"] == "succeeded";
        events.push(frame);
        match events.len() {
            100 | 400 => joiners.push((
                0,
                tokio::spawn(collect(platform.ws_url.clone(), "olive", op.id.clone(), 0)),
            )),
            700 => joiners.push((
                250,
                tokio::spawn(collect(
                    platform.ws_url.clone(),
                    "olive",
                    op.id.clone(),
                    250,
                )),
            )),
            _ => {}
        }
        if terminal {
            break;
        }
    }
    emitting.await.expect("the stand-in ran");
    let done = client.get(&op.id).await.expect("read");
    assert!(done.done);
    assert!(
        done.seq > 1_000,
        "created, started, 1,000 progress, succeeded"
    );
    assert_eq!(
        seqs(&events),
        contiguous(1, done.seq),
        "the first subscriber"
    );
    for (after, joiner) in joiners {
        let events = joiner.await.expect("collected");
        let got = seqs(&events);
        let expected = contiguous(after + 1, done.seq);
        let missing: Vec<_> = expected.iter().filter(|s| !got.contains(s)).collect();
        let extra: Vec<_> = got.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        assert_eq!(
            got, expected,
            "a subscriber that joined mid-stream after_seq={after}: missing {missing:?}, breaks {extra:?}"
        );
    }
    // A replay longer than the outgoing queue's soft bound is paced, never coalesced.
    let replayed = collect(platform.ws_url.clone(), "olive", op.id.clone(), 0).await;
    assert_eq!(
        seqs(&replayed),
        contiguous(1, done.seq),
        "a replay of the whole log"
    );
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_coalesced_while_a_hundred_others_get_everything() {
    // A small soft bound, so the slow client's backlog passes it with a
    // short stream (the kernel buffers take the first ~140 KiB).
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.realtime.queue_soft = 64)
        .start()
        .await;
    let client = platform.client("pace");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;
    let url = format!("{}/v1/ws?access_token={}", platform.ws_url, token("pace"));

    let mut slow = WsClient::connect_slow(&url).await.expect("connects");
    slow.subscribe(&op.id, Some(0)).await;
    let mut fast = Vec::new();
    for _ in 0..100 {
        let mut ws = WsClient::connect(&url).await.expect("connects");
        ws.subscribe(&op.id, Some(0)).await;
        fast.push(ws);
    }
    // The slow client stops reading now. Fast clients read in tasks of their own.
    let id = op.id.clone();
    let readers: Vec<_> = fast
        .into_iter()
        .map(|mut ws| {
            let id = id.clone();
            tokio::spawn(async move { ws.events_until_terminal(&id).await })
        })
        .collect();
    let padding = "x".repeat(1_024);
    for step in 1..=300u64 {
        worker
            .progress(
                step as f64 / 3.0,
                &json!({"step": step, "padding": padding}),
            )
            .await;
        if step % 20 == 0 {
            // A realistic pace: the stream lasts a moment, not a burst.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    worker.complete(&json!({"ok": true})).await;
    let done = client.get(&op.id).await.expect("read");

    // Every fast client got every event, while the slow one still had not
    // read a single frame: it held up nobody.
    for reader in readers {
        let events = reader.await.expect("a fast client finished");
        assert_eq!(seqs(&events), contiguous(1, done.seq));
    }

    // The slow client now reads: its progress was coalesced (seqs still
    // increase, the terminal event is there), or it was closed with 4008.
    let mut got = Vec::new();
    loop {
        match slow.receive(Duration::from_secs(15)).await {
            Received::Frame(frame) => {
                if frame["type"] == "event" {
                    let terminal = frame["event"] == "succeeded";
                    got.push(frame);
                    if terminal {
                        break;
                    }
                }
            }
            Received::Closed(close) => {
                let code = close.map(|frame| u16::from(frame.code));
                assert_eq!(
                    code,
                    Some(4008),
                    "a slow client is only ever closed with 4008"
                );
                break;
            }
        }
    }
    let got = seqs(&got);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "seqs increase: {got:?}"
    );
    if got.last() == Some(&done.seq) {
        assert!(
            (got.len() as u64) < done.seq,
            "some progress was coalesced for the slow client ({} of {})",
            got.len(),
            done.seq
        );
    }
    platform.stop().await;
}

#[tokio::test]
async fn another_owners_operation_is_not_found_and_leaks_no_event() {
    let platform = Platform::start().await;
    let alice = platform.client("alice");
    let op = alice
        .start(
            "demo.sleep",
            &json!({"duration_ms": 100, "steps": 5}),
            &StartOptions::default(),
        )
        .await
        .expect("started");

    let mut mallory = platform.ws("mallory").await;
    mallory.subscribe(&op.id, Some(0)).await;
    let refused = mallory.next_frame().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "not_found");
    assert_eq!(refused["operation_id"], op.id.as_str());
    mallory.subscribe(&op.id, None).await;
    assert_eq!(mallory.next_frame().await["code"], "not_found");
    mallory
        .send(json!({"type": "subscribe", "owner": "self"}))
        .await;
    // The same answer as for an id that does not exist at all.
    mallory
        .subscribe("0193a3f6-0000-7000-8000-000000000000", Some(0))
        .await;
    assert_eq!(mallory.next_frame().await["code"], "not_found");

    // An admin may follow it; alice's run ends.
    let mut admin = longrun_tests::WsClient::connect(&format!(
        "{}/v1/ws?access_token={}",
        platform.ws_url,
        longrun_tests::token_with("root", &["admin"], Duration::from_secs(600))
    ))
    .await
    .expect("connects");
    admin.subscribe(&op.id, Some(0)).await;
    let seen_by_admin = admin.events_until_terminal(&op.id).await;
    let done = alice
        .wait(&op.id, Duration::from_secs(10))
        .await
        .expect("done");
    assert_eq!(seqs(&seen_by_admin), contiguous(1, done.seq));

    // Mallory's own operation runs after alice's ended: had anything of
    // alice's been sent to mallory, it would have come first.
    let own = platform
        .client("mallory")
        .start(
            "demo.sleep",
            &json!({"duration_ms": 10, "steps": 1}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    loop {
        let frame = mallory.next_frame().await;
        assert_ne!(
            frame["operation_id"],
            op.id.as_str(),
            "another owner's event leaked: {frame}"
        );
        if frame["type"] == "event" && frame["event"] == "succeeded" {
            assert_eq!(frame["operation_id"], own.id.as_str());
            break;
        }
    }
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_self_sees_every_event_of_the_callers_operations_only() {
    const OWNERS: usize = 50;
    let platform = Platform::builder()
        .config(|config| config.worker.concurrency = 64)
        .start()
        .await;
    let mut sockets = Vec::new();
    for n in 0..OWNERS {
        let mut ws = platform.ws(&format!("owner-{n}")).await;
        ws.send(json!({"type": "subscribe", "owner": "self"})).await;
        // Handled once the pong is back: operations started from now on are seen.
        assert!(ws.until_pong().await.is_empty());
        sockets.push(ws);
    }
    // Operations started after subscribing, two per owner.
    let mut ids = Vec::new();
    for n in 0..OWNERS {
        let client = platform.client(&format!("owner-{n}"));
        let mut mine = Vec::new();
        for _ in 0..2 {
            let op = client
                .start(
                    "demo.sleep",
                    &json!({"duration_ms": 20, "steps": 2}),
                    &StartOptions::default(),
                )
                .await
                .expect("started");
            mine.push(op.id);
        }
        ids.push(mine);
    }
    let readers: Vec<_> = sockets
        .into_iter()
        .zip(ids.clone())
        .map(|(mut ws, mine)| {
            tokio::spawn(async move {
                let mut events: Vec<Value> = Vec::new();
                let mut finished = 0;
                while finished < mine.len() {
                    let frame = ws.next_frame().await;
                    assert_eq!(frame["type"], "event", "{frame}");
                    if frame["event"] == "succeeded" {
                        finished += 1;
                    }
                    events.push(frame);
                }
                // Nothing else is pending for this owner.
                assert!(ws.until_pong().await.is_empty());
                events
            })
        })
        .collect();
    for (n, reader) in readers.into_iter().enumerate() {
        let events = reader.await.expect("an owner's reader finished");
        let client = platform.client(&format!("owner-{n}"));
        for id in &ids[n] {
            let own: Vec<Value> = events
                .iter()
                .filter(|e| e["operation_id"] == id.as_str())
                .cloned()
                .collect();
            let done = client.get(id).await.expect("read");
            assert_eq!(
                seqs(&own),
                contiguous(1, done.seq),
                "owner-{n} sees all of {id}"
            );
        }
        assert!(
            events
                .iter()
                .all(|e| ids[n].iter().any(|id| e["operation_id"] == id.as_str())),
            "owner-{n} saw only its own operations"
        );
    }
    platform.stop().await;
}

/// The next `error` frame; event frames before it are kept in `events`.
async fn next_error(ws: &mut WsClient, events: &mut Vec<Value>) -> Value {
    loop {
        let frame = ws.next_frame().await;
        if frame["type"] == "error" {
            return frame;
        }
        assert_eq!(frame["type"], "event", "{frame}");
        events.push(frame);
    }
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_bad_request_and_keep_the_subscriptions() {
    let platform = Platform::builder().workers(0).start().await;
    let client = platform.client("fuzz");
    let op = queued(&client).await;
    let other = queued(&client).await;
    let mut ws = platform.ws("fuzz").await;
    ws.subscribe(&op.id, Some(0)).await;
    ws.subscribe(&other.id, Some(0)).await;
    let mut events = ws.until_pong().await;
    assert!(
        events.iter().all(|f| f["type"] == "event"),
        "subscriptions start cleanly: {events:?}"
    );

    let big = format!(
        r#"{{"type":"subscribe","operation_id":"{}","pad":"{}"}}"#,
        op.id,
        "y".repeat(100_000)
    );
    let bad_frames = [
        "not json at all".to_owned(),
        "{\"type\":\"launch\"}".to_owned(),
        "[1,2,3]".to_owned(),
        format!(
            r#"{{"type":"subscribe","operation_id":"{}","after_seq":"x"}}"#,
            op.id
        ),
        format!(
            r#"{{"type":"subscribe","operation_id":"{}","after_seq":-1}}"#,
            op.id
        ),
        r#"{"type":"subscribe"}"#.to_owned(),
        format!(
            r#"{{"type":"subscribe","operation_id":"{}","owner":"self"}}"#,
            op.id
        ),
        r#"{"type":"subscribe","owner":"someone-else"}"#.to_owned(),
        r#"{"type":"unsubscribe","owner":"everyone"}"#.to_owned(),
        r#"{"type":"ping","extra":1}"#.to_owned(),
        big,
    ];
    for text in &bad_frames {
        ws.send_text(text).await;
        let frame = next_error(&mut ws, &mut events).await;
        assert_eq!(
            frame["code"],
            "bad_request",
            "for {}",
            &text[..text.len().min(60)]
        );
        assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.send_binary(vec![0, 1, 2]).await;
    assert_eq!(
        next_error(&mut ws, &mut events).await["code"],
        "bad_request"
    );
    // A malformed subscribe still names the operation it was about.
    ws.send_text(&format!(
        r#"{{"type":"subscribe","operation_id":"{}","after_seq":true}}"#,
        op.id
    ))
    .await;
    assert_eq!(
        next_error(&mut ws, &mut events).await["operation_id"],
        op.id.as_str()
    );

    // A message too big to read at all closes only its own connection.
    let mut abuser = platform.ws("fuzz").await;
    abuser
        .send_text_refusable(&"z".repeat(17 * 1024 * 1024))
        .await;
    assert_eq!(abuser.close_code(Duration::from_secs(10)).await, Some(1009));

    // Both subscriptions still deliver everything.
    for id in [&op.id, &other.id] {
        StandIn::claim(&platform.store, id)
            .await
            .run_fast(50, &json!(null))
            .await;
    }
    let mut finished = 0;
    while finished < 2 {
        let frame = ws.next_frame().await;
        assert_eq!(frame["type"], "event", "{frame}");
        finished += usize::from(frame["event"] == "succeeded");
        events.push(frame);
    }
    for id in [&op.id, &other.id] {
        let own: Vec<Value> = events
            .iter()
            .filter(|e| e["operation_id"] == id.as_str())
            .cloned()
            .collect();
        let done = client.get(id).await.expect("read");
        assert_eq!(seqs(&own), contiguous(1, done.seq));
    }
    platform.stop().await;
}

#[tokio::test]
async fn subscriptions_are_limited_replaced_and_ended_by_unsubscribe() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.realtime.max_subscriptions = 2)
        .start()
        .await;
    let client = platform.client("lim");
    let a = queued(&client).await;
    let b = queued(&client).await;
    let c = queued(&client).await;
    let mut ws = platform.ws("lim").await;
    ws.subscribe(&a.id, None).await;
    ws.subscribe(&b.id, None).await;
    ws.subscribe(&c.id, None).await;
    let limited = ws.next_of_type("error").await;
    assert_eq!(limited["code"], "limit");
    assert_eq!(limited["operation_id"], c.id.as_str());
    // Subscribing again replaces a subscription: no limit, a fresh start.
    ws.subscribe(&a.id, Some(0)).await;
    let mut frames = ws.until_pong().await;
    assert!(frames.iter().all(|f| f["type"] != "error"), "{frames:?}");

    // After unsubscribe (handled once the pong is back) nothing of b comes.
    ws.send(json!({"type": "unsubscribe", "operation_id": b.id}))
        .await;
    frames.extend(ws.until_pong().await);
    let unsubscribed_at = frames.len();
    let worker_b = StandIn::claim(&platform.store, &b.id).await;
    worker_b.run_fast(5, &json!(null)).await;
    let worker_a = StandIn::claim(&platform.store, &a.id).await;
    worker_a.run_fast(5, &json!(null)).await;
    loop {
        let frame = ws.next_frame().await;
        let terminal = frame["type"] == "event" && frame["event"] == "succeeded";
        frames.push(frame);
        if terminal {
            break;
        }
    }
    assert!(
        frames[unsubscribed_at..]
            .iter()
            .all(|f| f["operation_id"] != b.id.as_str()),
        "b was unsubscribed before its events"
    );
    let events: Vec<Value> = frames
        .into_iter()
        .filter(|f| f["type"] == "event" && f["operation_id"] == a.id.as_str())
        .collect();
    let done = client.get(&a.id).await.expect("read");
    assert_eq!(seqs(&events), contiguous(1, done.seq));
    let late = ws.until_pong().await;
    assert!(
        late.iter().all(|f| f["operation_id"] != b.id.as_str()),
        "b was unsubscribed: {late:?}"
    );
    platform.stop().await;
}

/// Subscribes to `id` (from the current resource) and returns the answer:
/// the `subscribed` frame or an `error`.
async fn try_subscribe(ws: &mut WsClient, id: &str) -> Value {
    ws.subscribe(id, None).await;
    loop {
        let frame = ws.next_frame().await;
        if frame["type"] == "subscribed" || frame["type"] == "error" {
            return frame;
        }
    }
}

#[tokio::test]
async fn subscriptions_per_owner_are_limited_over_all_its_connections() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.realtime.max_subscriptions_per_owner = 3)
        .start()
        .await;
    let client = platform.client("many");
    let mut ops = Vec::new();
    for _ in 0..4 {
        ops.push(queued(&client).await.id);
    }
    let mut first = platform.ws("many").await;
    let mut second = platform.ws("many").await;
    assert_eq!(
        try_subscribe(&mut first, &ops[0]).await["type"],
        "subscribed"
    );
    assert_eq!(
        try_subscribe(&mut first, &ops[1]).await["type"],
        "subscribed"
    );
    assert_eq!(
        try_subscribe(&mut second, &ops[2]).await["type"],
        "subscribed"
    );
    let limited = try_subscribe(&mut second, &ops[3]).await;
    assert_eq!(limited["code"], "limit", "{limited}");
    assert_eq!(limited["operation_id"], ops[3].as_str());
    second
        .send(json!({"type": "subscribe", "owner": "self"}))
        .await;
    let limited = second.next_of_type("error").await;
    assert_eq!(limited["code"], "limit", "owner: self counts too");
    // Another owner has its own budget; replacing a subscription fits.
    let other = queued(&platform.client("few")).await;
    let mut few = platform.ws("few").await;
    assert_eq!(
        try_subscribe(&mut few, &other.id).await["type"],
        "subscribed"
    );
    assert_eq!(
        try_subscribe(&mut second, &ops[2]).await["type"],
        "subscribed"
    );

    // Ending one (here: the operation finishes) frees its place.
    StandIn::claim(&platform.store, &ops[0])
        .await
        .run_fast(2, &json!(null))
        .await;
    first.events_until_terminal(&ops[0]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = try_subscribe(&mut second, &ops[3]).await;
        if answer["type"] == "subscribed" {
            break;
        }
        assert_eq!(answer["code"], "limit", "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "a finished subscription released its place"
        );
        // The finished subscription's task ends on its own; no event tells when.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    platform.stop().await;
}
