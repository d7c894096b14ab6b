//! The fault suite: Redis restarting with its AOF mid-run, every Redis
//! connection dropped (`CLIENT KILL`) mid-run, both under many operations
//! in flight, and the realtime gateway killed and restarted under a
//! hundred subscribed clients. Each run asserts that every operation
//! reaches the right terminal state once (one terminal event in its log),
//! that no attempt was spent on the faults, that every log is gap-free
//! (seq 1..n), and that WebSocket subscribers — reconnecting with
//! `after_seq` as a real client does when their connection ends — end with
//! every event exactly once. Also: the api answers 503 while Redis is
//! down and recovers, and `LONGRUN_STRICT=1` refuses a Redis that would
//! lose operations.
//!
//! A worker killed with SIGKILL mid fan-out, or paused with SIGSTOP past
//! its lease, is in `worker_processes` (with the same checks, from
//! [`longrun_tests::audit`]).

use std::time::Duration;

use longrun_client::{Client, StartOptions, StartParams};
use longrun_shared::model::{EventType, Operation, Status};
use longrun_shared::problem::Code;
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use longrun_tests::audit::{Subscriber, logged_once, settled};
use longrun_tests::cli::GatewayProcess;
use longrun_tests::tree::nodes;
use longrun_tests::{Platform, ProcessGuard, eventually, process};
use serde_json::{Value, json};

use crate::LONGRUN;

const LONG: Duration = Duration::from_secs(60);

/// A private Redis (faults must not reach other tests' Redis), with the AOF.
fn private_redis() -> RedisServer {
    RedisServer::start(RedisOptions {
        append_only: true,
        ..RedisOptions::default()
    })
    .expect("redis-server starts")
}

/// api + gateway + two workers on `redis`.
async fn platform_on(redis: &RedisServer) -> Platform {
    Platform::builder_on(&redis.url())
        .workers(2)
        .config(|config| config.worker.concurrency = 16)
        .start()
        .await
}

/// Stops Redis politely (`SHUTDOWN`: the AOF is flushed), off the runtime.
async fn stop(redis: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.stop();
        redis
    })
    .await
    .expect("stopped")
}

/// Starts Redis again on the same port and directory (the AOF is replayed).
async fn start_again(redis: RedisServer) -> RedisServer {
    tokio::task::spawn_blocking(move || {
        let mut redis = redis;
        redis.start_again().expect("redis-server restarts");
        redis
    })
    .await
    .expect("started")
}

/// Closes every connection of `kind` (`normal`, `pubsub`) but this one.
async fn kill_connections(redis: &RedisServer, kind: &str) -> u64 {
    let mut conn = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg(kind)
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL")
}

/// What an operation of the load must end as.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expected {
    Succeeded { attempts: u32 },
    Failed { attempts: u32 },
    Cancelled,
}

/// Operations started for a run, with what each must end as.
struct Load {
    expected: Vec<(String, Expected)>,
    /// Long operations to cancel once the faults are over.
    to_cancel: Vec<String>,
}

impl Load {
    /// `sleeps` short sleeps, `fanouts` fan-outs of `children`, two that
    /// fail once and then succeed, two that fail for good, and `long`
    /// long sleeps to cancel.
    async fn start(
        client: &Client,
        sleeps: usize,
        fanouts: usize,
        children: usize,
        long: usize,
    ) -> Load {
        let mut load = Load {
            expected: Vec::new(),
            to_cancel: Vec::new(),
        };
        let defaults = StartOptions::default();
        for index in 0..sleeps {
            let duration = 400 + 150 * (index % 8);
            let op = start(
                client,
                "demo.sleep",
                json!({"duration_ms": duration, "steps": 4}),
                &defaults,
            )
            .await;
            load.expected
                .push((op.id, Expected::Succeeded { attempts: 1 }));
        }
        for _ in 0..fanouts {
            let input = json!({"children": children, "child_duration_ms": 300, "child_steps": 3});
            let op = start(client, "demo.fanout", input, &defaults).await;
            load.expected
                .push((op.id, Expected::Succeeded { attempts: 1 }));
        }
        let retrying = StartOptions::from(StartParams {
            max_attempts: Some(3),
            backoff_ms: Some(100),
            ..StartParams::default()
        });
        for _ in 0..2 {
            let input = json!({"duration_ms": 200, "steps": 2, "fail_times": 1});
            let op = start(client, "demo.sleep", input, &retrying).await;
            load.expected
                .push((op.id, Expected::Succeeded { attempts: 2 }));
        }
        let doomed = StartOptions::from(StartParams {
            max_attempts: Some(2),
            backoff_ms: Some(100),
            ..StartParams::default()
        });
        for _ in 0..2 {
            let input = json!({"duration_ms": 200, "steps": 2, "fail_times": 5});
            let op = start(client, "demo.sleep", input, &doomed).await;
            load.expected
                .push((op.id, Expected::Failed { attempts: 2 }));
        }
        for _ in 0..long {
            let input = json!({"duration_ms": 60_000, "steps": 60});
            let op = start(client, "demo.sleep", input, &defaults).await;
            load.to_cancel.push(op.id.clone());
            load.expected.push((op.id, Expected::Cancelled));
        }
        load
    }

    fn ids(&self) -> Vec<String> {
        self.expected.iter().map(|(id, _)| id.clone()).collect()
    }

    async fn cancel_the_long_ones(&self, client: &Client) {
        for id in &self.to_cancel {
            let cancelled = settled(|| client.cancel(id)).await;
            assert!(
                !cancelled.done || cancelled.status == Status::Cancelled,
                "{cancelled:?}"
            );
        }
    }

    /// Every operation (and every child) ended as expected, with one
    /// terminal event, no attempt spent on the faults and a gap-free log.
    async fn verify(&self, client: &Client) {
        for (id, expected) in &self.expected {
            let op = wait_done(client, id).await;
            match *expected {
                Expected::Succeeded { attempts } => {
                    assert_eq!(op.status, Status::Succeeded, "{op:?}");
                    assert_eq!(
                        op.attempt, attempts,
                        "no attempt spent on the faults: {op:?}"
                    );
                }
                Expected::Failed { attempts } => {
                    assert_eq!(op.status, Status::Failed, "{op:?}");
                    assert_eq!(op.attempt, attempts, "{op:?}");
                }
                Expected::Cancelled => assert_eq!(op.status, Status::Cancelled, "{op:?}"),
            }
            for node in settled_nodes(client, id).await {
                assert!(node.done, "{node:?}");
                if node.id != *id {
                    assert_eq!(node.status, Status::Succeeded, "a child: {node:?}");
                    assert_eq!(node.attempt, 1, "no attempt spent on the faults: {node:?}");
                }
                let log = logged_once(client, &node.id).await;
                let lost_leases = log
                    .iter()
                    .filter(|event| event.event_type == EventType::Retrying)
                    .filter(|event| event.data["reason"] == "lease_expired")
                    .count();
                assert_eq!(lost_leases, 0, "no lease lost to the faults: {log:?}");
            }
        }
    }
}

async fn start(client: &Client, kind: &str, input: Value, options: &StartOptions) -> Operation {
    client.start(kind, &input, options).await.expect("started")
}

async fn wait_done(client: &Client, id: &str) -> Operation {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let op = settled(|| client.wait(id, Duration::from_secs(10))).await;
        if op.done {
            return op;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} finishes: {op:?}"
        );
    }
}

async fn settled_nodes(client: &Client, id: &str) -> Vec<Operation> {
    // `nodes` panics on an error; a fault is over by now, and reads retry.
    settled(|| async { Ok(nodes(client, id).await) }).await
}

/// Waits until at least `count` operations of the load run.
async fn some_running(client: &Client, load: &Load, count: usize) {
    eventually(LONG, "operations running", || async {
        let mut running = 0;
        for (id, _) in &load.expected {
            if client.get(id).await.ok()?.status == Status::Running {
                running += 1;
            }
        }
        (running >= count).then_some(())
    })
    .await;
}

#[tokio::test]
async fn redis_restarting_with_its_aof_mid_run_loses_nothing() {
    let redis = private_redis();
    let platform = platform_on(&redis).await;
    let client = platform.client("restart");
    let load = Load::start(&client, 12, 2, 10, 1).await;
    let mut subscriber = Subscriber::subscribe_all(&platform.ws_url, "restart", &load.ids()).await;
    some_running(&client, &load, 6).await;

    let redis = stop(redis).await;
    // Meanwhile the api answers 503 with Retry-After, for starts and reads.
    let refused = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0}),
            &StartOptions::default(),
        )
        .await
        .expect_err("no Redis, no start");
    assert_eq!(refused.code(), Some(Code::Unavailable), "{refused}");
    let unreadable = client
        .get(&load.ids()[0])
        .await
        .expect_err("no Redis, no read");
    assert_eq!(unreadable.code(), Some(Code::Unavailable), "{unreadable}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redis = start_again(redis).await;

    // And it recovers by itself.
    let (input, options) = (json!({"duration_ms": 10}), StartOptions::default());
    let after = settled(|| client.start("demo.sleep", &input, &options)).await;
    load.cancel_the_long_ones(&client).await;
    subscriber.until_all_done().await;
    load.verify(&client).await;
    subscriber.verify(&client).await;
    assert_eq!(
        wait_done(&client, &after.id).await.status,
        Status::Succeeded
    );
    platform.stop().await;
    drop(redis);
}

#[tokio::test]
async fn dropping_every_redis_connection_mid_run_loses_nothing() {
    let redis = private_redis();
    let platform = platform_on(&redis).await;
    let client = platform.client("kill-conn");
    let load = Load::start(&client, 12, 2, 10, 1).await;
    let mut subscriber =
        Subscriber::subscribe_all(&platform.ws_url, "kill-conn", &load.ids()).await;
    some_running(&client, &load, 6).await;
    for _ in 0..4 {
        let commands = kill_connections(&redis, "normal").await;
        let pubsub = kill_connections(&redis, "pubsub").await;
        assert!(commands > 0 && pubsub > 0, "connections were there to drop");
        // Faults a few hundred ms apart, while the operations run.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    load.cancel_the_long_ones(&client).await;
    subscriber.until_all_done().await;
    load.verify(&client).await;
    subscriber.verify(&client).await;
    platform.stop().await;
}

#[tokio::test]
async fn many_operations_in_flight_survive_restarts_and_dropped_connections() {
    let redis = private_redis();
    let platform = platform_on(&redis).await;
    let client = platform.client("combined");
    let load = Load::start(&client, 40, 4, 15, 3).await;
    let ids = load.ids();
    let (first, second) = ids.split_at(ids.len() / 2);
    let mut one = Subscriber::subscribe_all(&platform.ws_url, "combined", first).await;
    let mut two = Subscriber::subscribe_all(&platform.ws_url, "combined", second).await;
    some_running(&client, &load, 10).await;

    kill_connections(&redis, "normal").await;
    kill_connections(&redis, "pubsub").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = stop(redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = start_again(redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    kill_connections(&redis, "normal").await;
    kill_connections(&redis, "pubsub").await;

    load.cancel_the_long_ones(&client).await;
    let ((), ()) = tokio::join!(one.until_all_done(), two.until_all_done());
    load.verify(&client).await;
    one.verify(&client).await;
    two.verify(&client).await;
    platform.stop().await;
}

/// `longrun worker` with `env` on top of the test platform's settings.
fn worker_env(redis_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = vec![
        ("REDIS_URL".to_owned(), redis_url.to_owned()),
        (
            "LONGRUN_JWT_SECRET".to_owned(),
            longrun_tests::SECRET.to_owned(),
        ),
        (
            "LONGRUN_REDIS_PREFIX".to_owned(),
            longrun_tests::unique_prefix(),
        ),
        ("NO_COLOR".to_owned(), "1".to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

#[tokio::test]
async fn strict_mode_refuses_a_redis_that_would_lose_operations_and_otherwise_warns() {
    // No persistence (the shared test Redis runs without it): refused.
    let unsafe_redis = longrun_tests::shared_redis();
    let refused = process::run(
        LONGRUN,
        &worker_env(&unsafe_redis, &[("LONGRUN_STRICT", "1")]),
        &["worker"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("LONGRUN_STRICT") && stderr.contains("persistence is off"),
        "{stderr}"
    );

    // `--strict` does the same for every service, here the api.
    let refused = process::run(
        LONGRUN,
        &worker_env(&unsafe_redis, &[("LONGRUN_API_ADDR", "127.0.0.1:0")]),
        &["api", "--strict"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused: {stderr}");
    assert!(stderr.contains("persistence is off"), "{stderr}");

    // Without strict it starts, after one loud warning.
    let mut warned =
        ProcessGuard::spawn_logged(LONGRUN, &worker_env(&unsafe_redis, &[]), &["worker"]);
    let log = eventually(Duration::from_secs(10), "the warning", || {
        let log = warned.log();
        async move { log.contains("worker starting").then_some(log) }
    })
    .await;
    assert_eq!(log.matches("REDIS MAY LOSE OPERATIONS").count(), 1, "{log}");
    warned.signal("TERM");
    assert_eq!(warned.wait_exit(Duration::from_secs(10)).await, Some(0));

    // With the AOF and noeviction, strict starts.
    let safe = private_redis();
    let mut strict = ProcessGuard::spawn_logged(
        LONGRUN,
        &worker_env(&safe.url(), &[("LONGRUN_STRICT", "1")]),
        &["worker"],
    );
    eventually(
        Duration::from_secs(10),
        "the strict worker to start",
        || {
            let log = strict.log();
            async move { log.contains("worker starting").then_some(()) }
        },
    )
    .await;
    assert!(
        !strict.log().contains("LOSE OPERATIONS"),
        "{}",
        strict.log()
    );
    strict.signal("TERM");
    assert_eq!(strict.wait_exit(Duration::from_secs(10)).await, Some(0));

    // An evicting policy is refused too, even with the AOF on.
    let mut conn = redis::Client::open(safe.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-lru")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let refused = process::run(
        LONGRUN,
        &worker_env(&safe.url(), &[]),
        &["worker", "--strict"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused: {stderr}");
    assert!(stderr.contains("maxmemory-policy"), "{stderr}");
}

#[tokio::test]
async fn a_gateway_restarted_under_a_hundred_subscribers_loses_no_event() {
    // The gateway is a process of its own, killed and stopped mid-run; the
    // api and the workers run in the test.
    let platform = Platform::builder()
        .workers(2)
        .without_realtime()
        .config(|config| config.worker.concurrency = 16)
        .start()
        .await;
    let mut gateway = GatewayProcess::start(LONGRUN, &platform.env()).await;
    let client = platform.client("gateway-restart");
    let defaults = StartOptions::default();
    let mut ids = Vec::new();
    for index in 0..19 {
        let input = json!({"duration_ms": 1_500 + 100 * index, "steps": 15});
        ids.push(start(&client, "demo.sleep", input, &defaults).await.id);
    }
    let input = json!({"children": 8, "child_duration_ms": 1_500, "child_steps": 10});
    ids.push(start(&client, "demo.fanout", input, &defaults).await.id);

    // A hundred clients, each following six operations (thirty per operation).
    let mut followers = tokio::task::JoinSet::new();
    for index in 0..100 {
        let mine: Vec<String> = (0..6)
            .map(|k| ids[(index + k) % ids.len()].clone())
            .collect();
        let mut subscriber =
            Subscriber::subscribe_all(&gateway.url(), "gateway-restart", &mine).await;
        followers.spawn(async move {
            subscriber.until_all_done().await;
            subscriber
        });
    }
    eventually(LONG, "progress under way", || async {
        let op = client.get(&ids[0]).await.ok()?;
        (op.progress.percent >= 10.0).then_some(())
    })
    .await;

    // Killed outright (connections just drop), then stopped the way a
    // deploy does (close 1001); clients reconnect with their last seq.
    gateway.kill().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gateway.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway.stop().await;
    gateway.restart().await;

    let mut finished = 0;
    while let Some(subscriber) = followers.join_next().await {
        let subscriber = subscriber.expect("a follower ends");
        subscriber.verify(&client).await;
        finished += 1;
    }
    assert_eq!(finished, 100);
    for id in &ids {
        for node in nodes(&client, id).await {
            assert_eq!(node.status, Status::Succeeded, "{node:?}");
            assert_eq!(node.attempt, 1, "{node:?}");
            logged_once(&client, &node.id).await;
        }
    }
    gateway.stop().await;
    platform.stop().await;
}
