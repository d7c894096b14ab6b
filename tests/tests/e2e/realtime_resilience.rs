//! The delivery guarantee across failures: a gateway killed or restarted
//! mid-stream (clients reconnect with their last seq) and a Redis restart
//! (the gateway re-reads each subscription's log).

use std::time::Duration;

use longrun_client::Client;
use longrun_shared::redis_server::{RedisOptions, RedisServer, free_port};
use longrun_tests::ws::{Received, SilentPeer, seqs};
use longrun_tests::{GatewayHandle, Platform, ProcessGuard, StandIn, WsClient, eventually, token};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::LONGRUN;
use crate::realtime_delivery::{contiguous, queued};

/// Emits `count` progress events at a steady pace, then completes.
fn emit(worker: StandIn, count: u64) -> JoinHandle<()> {
    tokio::spawn(async move {
        for step in 1..=count {
            worker
                .progress(step as f64 * 100.0 / count as f64, &json!({"step": step}))
                .await;
            if step % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        worker.complete(&json!({"steps": count})).await;
    })
}

/// Reads event frames of `id` into `events` until `enough` of them, the
/// terminal one, or the connection drops. True when the terminal one came.
async fn read_events(ws: &mut WsClient, id: &str, events: &mut Vec<Value>, enough: usize) -> bool {
    while events.len() < enough {
        match ws.receive(Duration::from_secs(15)).await {
            Received::Frame(frame) => {
                if frame["type"] == "event" && frame["operation_id"] == id {
                    let terminal = frame["event"] == "succeeded";
                    events.push(frame);
                    if terminal {
                        return true;
                    }
                }
            }
            Received::Closed(_) => return false,
        }
    }
    false
}

/// Connects to `ws_url` as soon as a gateway answers there again.
async fn reconnect(ws_url: &str, sub: &str) -> WsClient {
    let url = format!("{ws_url}/v1/ws?access_token={}", token(sub));
    eventually(Duration::from_secs(20), "the gateway to answer", || async {
        WsClient::connect(&url).await.ok()
    })
    .await
}

/// Follows `id` with the Rust client, which reconnects by itself.
fn watch(client: Client, id: String) -> JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut watch = client.watch(&id, Some(0));
        let mut seen = Vec::new();
        while let Some(event) = watch.next().await.expect("the watch resumes") {
            seen.push(event.seq);
        }
        seen
    })
}

fn spawn_gateway(platform: &Platform, port: u16) -> ProcessGuard {
    let mut env = platform.env();
    env.push(("LONGRUN_WS_ADDR".into(), format!("127.0.0.1:{port}")));
    ProcessGuard::spawn(LONGRUN, &env, &["realtime"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gateway_is_resumed_by_reconnecting_with_the_last_seq() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let port = free_port().expect("a free port");
    let ws_url = format!("ws://127.0.0.1:{port}");
    let mut gateway = spawn_gateway(&platform, port);
    let client = Client::new(&platform.api_url, &ws_url, &token("kill"));
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;

    let mut ws = reconnect(&ws_url, "kill").await;
    ws.subscribe(&op.id, Some(0)).await;
    let watched = watch(client.clone(), op.id.clone());
    let emitting = emit(worker, 400);
    let mut events = Vec::new();
    assert!(!read_events(&mut ws, &op.id, &mut events, 60).await);

    gateway.signal("KILL");
    let _ = gateway.wait_exit(Duration::from_secs(10)).await;
    // Whatever was in flight is lost with the process; the client notices.
    read_events(&mut ws, &op.id, &mut events, usize::MAX).await;
    let _restarted = spawn_gateway(&platform, port);
    let mut finished = false;
    while !finished {
        let last = seqs(&events).last().copied().unwrap_or(0);
        let mut again = reconnect(&ws_url, "kill").await;
        again.subscribe(&op.id, Some(last)).await;
        finished = read_events(&mut again, &op.id, &mut events, usize::MAX).await;
    }
    emitting.await.expect("the stand-in ran");
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(
        seqs(&events),
        contiguous(1, done.seq),
        "the union is exactly 1..n"
    );
    let watched = watched.await.expect("the watch ended");
    assert_eq!(
        watched,
        contiguous(1, done.seq),
        "Client::watch resumed by itself"
    );
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_shutdown_closes_with_1001_and_clients_resume_on_its_restart() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    let mut gateway = GatewayHandle::start(&platform.config).await;
    let client = Client::new(&platform.api_url, &gateway.url(), &token("restart"));
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;

    let mut ws = reconnect(&gateway.url(), "restart").await;
    ws.subscribe(&op.id, Some(0)).await;
    let watched = watch(client.clone(), op.id.clone());
    let emitting = emit(worker, 300);
    let mut events = Vec::new();
    assert!(!read_events(&mut ws, &op.id, &mut events, 40).await);

    gateway.stop().await;
    assert_eq!(
        ws.close_code(Duration::from_secs(10)).await,
        Some(1001),
        "told to reconnect elsewhere"
    );
    gateway.start_again().await;
    let last = seqs(&events).last().copied().unwrap_or(0);
    let mut again = reconnect(&gateway.url(), "restart").await;
    again.subscribe(&op.id, Some(last)).await;
    assert!(read_events(&mut again, &op.id, &mut events, usize::MAX).await);
    emitting.await.expect("the stand-in ran");
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(
        seqs(&events),
        contiguous(1, done.seq),
        "the union is exactly 1..n"
    );
    assert_eq!(
        watched.await.expect("the watch ended"),
        contiguous(1, done.seq),
        "Client::watch resumed by itself"
    );
    gateway.stop().await;
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_and_repeats_nothing() {
    let mut redis = RedisServer::start(RedisOptions {
        append_only: true,
        ..RedisOptions::default()
    })
    .expect("redis starts");
    let platform = Platform::builder_on(&redis.url()).workers(0).start().await;
    let client = platform.client("aof");

    // Subscribed to everything of the owner before the operation exists.
    let mut everything = platform.ws("aof").await;
    everything
        .send(json!({"type": "subscribe", "owner": "self"}))
        .await;
    assert!(everything.until_pong().await.is_empty());
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;
    let mut replaying = platform.ws("aof").await;
    replaying.subscribe(&op.id, Some(0)).await;
    let mut current = platform.ws("aof").await;
    current.subscribe(&op.id, None).await;
    let subscribed = current.next_of_type("subscribed").await;
    let from = subscribed["operation"]["seq"].as_u64().expect("seq");

    let emitting = emit(worker, 300);
    let mut events = Vec::new();
    assert!(!read_events(&mut replaying, &op.id, &mut events, 60).await);
    tokio::task::block_in_place(|| redis.restart()).expect("redis restarts");

    assert!(read_events(&mut replaying, &op.id, &mut events, usize::MAX).await);
    let mut live = Vec::new();
    assert!(read_events(&mut current, &op.id, &mut live, usize::MAX).await);
    let mut owned = Vec::new();
    assert!(read_events(&mut everything, &op.id, &mut owned, usize::MAX).await);
    emitting.await.expect("the stand-in ran");
    // The api's first request after the restart may still answer 503.
    let done = eventually(Duration::from_secs(10), "the api to read again", || async {
        client.get(&op.id).await.ok()
    })
    .await;
    assert!(done.done);
    assert_eq!(seqs(&events), contiguous(1, done.seq), "after_seq=0");
    assert_eq!(
        seqs(&live),
        contiguous(from + 1, done.seq),
        "from the current resource"
    );
    assert_eq!(seqs(&owned), contiguous(1, done.seq), "owner: self");
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_while_redis_is_down_delivers_everything_once_it_is_back() {
    let mut redis = RedisServer::start(RedisOptions {
        append_only: true,
        ..RedisOptions::default()
    })
    .expect("redis starts");
    let platform = Platform::builder_on(&redis.url()).workers(0).start().await;
    let client = platform.client("down");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;
    worker.progress(10.0, &json!(null)).await;
    let mut early = platform.ws("down").await;
    early.subscribe(&op.id, Some(0)).await;
    let mut events = Vec::new();
    assert!(!read_events(&mut early, &op.id, &mut events, 3).await);

    tokio::task::block_in_place(|| redis.stop());
    // Both subscribe while Redis is away: the gateway checks and replays
    // once it is back, and the relay subscribes again.
    let mut late = platform.ws("down").await;
    late.subscribe(&op.id, Some(0)).await;
    let mut current = platform.ws("down").await;
    current.subscribe(&op.id, None).await;
    assert!(
        late.until_pong().await.is_empty(),
        "nothing can be read yet"
    );
    tokio::task::block_in_place(|| redis.start_again()).expect("redis is back");

    // Events while the relay may still be reconnecting...
    for step in 1..=25 {
        worker
            .progress(10.0 + f64::from(step), &json!({"step": step}))
            .await;
    }
    // ...and, once the current resource was sent, up to the terminal one
    // (emitted after `subscribed`, so that subscription has live events).
    let subscribed = current.next_of_type("subscribed").await;
    let from = subscribed["operation"]["seq"].as_u64().expect("seq");
    assert_eq!(subscribed["operation"]["done"], false);
    let emitting = emit(worker, 25);
    assert!(read_events(&mut early, &op.id, &mut events, usize::MAX).await);
    let mut replayed = Vec::new();
    assert!(read_events(&mut late, &op.id, &mut replayed, usize::MAX).await);
    let mut live = Vec::new();
    assert!(read_events(&mut current, &op.id, &mut live, usize::MAX).await);
    emitting.await.expect("the stand-in ran");
    let done = eventually(Duration::from_secs(10), "the api to read again", || async {
        client.get(&op.id).await.ok()
    })
    .await;
    assert_eq!(seqs(&events), contiguous(1, done.seq), "subscribed before");
    assert_eq!(
        seqs(&replayed),
        contiguous(1, done.seq),
        "subscribed during the outage"
    );
    assert_eq!(
        seqs(&live),
        contiguous(from + 1, done.seq),
        "from the current resource"
    );
    platform.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_and_one_that_answers_is_kept() {
    let platform = Platform::builder()
        .workers(0)
        .config(|config| config.realtime.ping_interval = Duration::from_secs(1))
        .start()
        .await;
    let mut answering = platform.ws("pings").await;
    let url = format!("{}/v1/ws?access_token={}", platform.ws_url, token("pings"));
    let mut silent = SilentPeer::connect(&url).await.expect("upgraded");
    // Reading answers the gateway's pings (the client library does it);
    // nothing else arrives for well over three ping intervals. The silent
    // peer never writes a byte, so it never answers a ping.
    let (quiet, dropped) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(6),
            answering.receive(Duration::from_secs(10)),
        ),
        silent.close_code(Duration::from_secs(10)),
    );
    assert_eq!(dropped, Some(1001), "the silent peer is dropped");
    assert!(quiet.is_err(), "kept, and silent: {quiet:?}");
    assert!(answering.until_pong().await.is_empty(), "still served");
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_side_by_side_serve_the_same_streams_and_a_client_moves_between_them() {
    let platform = Platform::builder()
        .workers(0)
        .without_realtime()
        .start()
        .await;
    // Two gateways on the same Redis, nothing else between them (as
    // behind a load balancer).
    let mut east = GatewayHandle::start(&platform.config).await;
    let mut west = GatewayHandle::start(&platform.config).await;
    // Everything of the owner from now on, on west.
    let mut owner_on_west = reconnect(&west.url(), "pair").await;
    owner_on_west
        .send(json!({"type": "subscribe", "owner": "self"}))
        .await;
    assert!(owner_on_west.until_pong().await.is_empty());
    let client = platform.client("pair");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;

    let mut on_east = reconnect(&east.url(), "pair").await;
    on_east.subscribe(&op.id, Some(0)).await;
    let mut mover = reconnect(&east.url(), "pair").await;
    mover.subscribe(&op.id, Some(0)).await;

    let emitting = emit(worker, 200);
    let mut moved = Vec::new();
    assert!(!read_events(&mut mover, &op.id, &mut moved, 50).await);
    // The client leaves east (as a balancer may send it anywhere) and
    // resumes on west from its last seq.
    mover.close().await;
    let last = seqs(&moved).last().copied().expect("a seq");
    let mut resumed = reconnect(&west.url(), "pair").await;
    resumed.subscribe(&op.id, Some(last)).await;
    assert!(read_events(&mut resumed, &op.id, &mut moved, usize::MAX).await);

    let mut east_events = Vec::new();
    assert!(read_events(&mut on_east, &op.id, &mut east_events, usize::MAX).await);
    let mut west_events = Vec::new();
    assert!(read_events(&mut owner_on_west, &op.id, &mut west_events, usize::MAX).await);
    emitting.await.expect("the stand-in ran");
    let done = client.get(&op.id).await.expect("read");
    let all = contiguous(1, done.seq);
    assert_eq!(seqs(&east_events), all, "an operation subscription on east");
    assert_eq!(seqs(&west_events), all, "owner: self on west");
    assert_eq!(seqs(&moved), all, "the client that moved: exactly 1..n");
    drop((on_east, owner_on_west, resumed));
    east.stop().await;
    west.stop().await;
    platform.stop().await;
}
