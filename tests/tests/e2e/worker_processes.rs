//! The worker engine across real `longrun worker` processes that are
//! killed, paused, stopped and cancelled mid-work; the api and gateway run
//! in the test, on the same real Redis. Faults among them (SIGKILL, SIGSTOP
//! past the lease) also check what a WebSocket subscriber got and that
//! every log is gap-free with one terminal event (see [`longrun_tests::audit`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use longrun_client::{Client, StartOptions, StartParams};
use longrun_shared::model::{Event, EventType, Operation, Status};
use longrun_tests::audit::{Subscriber, logged_once};
use longrun_tests::tree::{children, count, events, ms_between, nodes};
use longrun_tests::{Platform, ProcessGuard, eventually};
use serde_json::json;

use crate::LONGRUN;

const LONG: Duration = Duration::from_secs(60);

/// api + gateway in the test, no worker: the workers are processes.
async fn platform(lease: Duration, shutdown_grace: Duration) -> Platform {
    Platform::builder()
        .workers(0)
        .config(|config| {
            config.worker.lease = lease;
            config.worker.cancel_grace = Duration::from_millis(500);
            config.worker.shutdown_grace = shutdown_grace;
        })
        .start()
        .await
}

fn worker(platform: &Platform, id: &str, concurrency: usize, log: &str) -> ProcessGuard {
    let mut env = platform.worker_env(id, concurrency);
    env.retain(|(name, _)| name != "RUST_LOG");
    env.push(("RUST_LOG".into(), log.into()));
    env.push(("NO_COLOR".into(), "1".into()));
    ProcessGuard::spawn_logged(LONGRUN, &env, &["worker"])
}

/// The worker that ran the latest attempt, per its `started` event.
fn last_worker(log: &[Event]) -> Option<String> {
    log.iter()
        .rev()
        .find(|event| event.event_type == EventType::Started)
        .and_then(|event| event.data["worker"].as_str().map(str::to_owned))
}

/// Children running on `worker` that started there less than `within` ago.
async fn running_on(client: &Client, parent: &str, worker: &str, within: i64) -> Vec<Operation> {
    let now = longrun_shared::store::now_iso();
    let mut found = Vec::new();
    for child in children(client, parent).await {
        if child.status != Status::Running {
            continue;
        }
        let log = events(client, &child.id).await;
        let start = log
            .iter()
            .rev()
            .find(|event| event.event_type == EventType::Started);
        if let Some(start) = start
            && start.data["worker"] == worker
            && ms_between(&start.at, &now) < within
        {
            found.push(child);
        }
    }
    found
}

#[tokio::test]
async fn a_killed_worker_loses_nothing_of_a_hundred_child_fanout() {
    let platform = platform(Duration::from_secs(1), Duration::from_secs(2)).await;
    let client = platform.client("kill");
    let doomed = worker(&platform, "doomed", 10, "warn");
    let _survivor = worker(&platform, "survivor", 10, "warn");
    let parent = client
        .start(
            "demo.fanout",
            &json!({"children": 100, "child_duration_ms": 1_500, "child_steps": 3}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    let lost = eventually(LONG, "children running on the doomed worker", || async {
        let op = client.get(&parent.id).await.ok()?;
        if op.children.succeeded < 10 {
            return None;
        }
        // Started well within the child's 1.5 s, so still running at the kill.
        let lost = running_on(&client, &parent.id, "doomed", 700).await;
        (!lost.is_empty()).then_some(lost)
    })
    .await;
    // A WebSocket subscriber of the whole tree gets every event through it.
    let mut tree = vec![parent.id.clone()];
    tree.extend(
        children(&client, &parent.id)
            .await
            .into_iter()
            .map(|c| c.id),
    );
    assert_eq!(tree.len(), 101);
    let mut subscriber = Subscriber::subscribe_all(&platform.ws_url, "kill", &tree).await;
    doomed.signal("KILL");

    let done = client.wait(&parent.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.children.succeeded, 100);
    subscriber.until_all_done().await;
    subscriber.verify(&client).await;
    logged_once(&client, &parent.id).await;
    let mut retried = HashSet::new();
    for child in children(&client, &parent.id).await {
        let log = logged_once(&client, &child.id).await;
        assert_eq!(
            count(&log, EventType::Succeeded),
            1,
            "exactly one success for {}: {log:?}",
            child.id
        );
        if child.attempt > 1 {
            let reasons: Vec<_> = log
                .iter()
                .filter(|e| e.event_type == EventType::Retrying)
                .map(|e| e.data["reason"].clone())
                .collect();
            assert!(reasons.contains(&json!("lease_expired")), "{log:?}");
            retried.insert(child.id.clone());
        }
    }
    for child in &lost {
        assert!(
            retried.contains(&child.id),
            "the attempt lost with the worker shows `retrying`: {}",
            child.id
        );
        let log = events(&client, &child.id).await;
        assert_eq!(last_worker(&log).as_deref(), Some("survivor"));
    }
    platform.stop().await;
}

fn step_of(event: &Event) -> Option<u64> {
    event.data["message"]
        .as_str()?
        .strip_prefix("step ")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_paused_worker_past_its_lease_is_fenced_out() {
    let platform = platform(Duration::from_secs(1), Duration::from_secs(2)).await;
    let client = platform.client("pause");
    let paused = worker(&platform, "paused", 4, "longrun_worker=debug");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 4_000, "steps": 40}),
            &StartOptions::from(StartParams {
                max_attempts: Some(3),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    eventually(LONG, "the first worker to make progress", || async {
        let op = client.get(&op.id).await.ok()?;
        (op.progress.percent >= 10.0).then_some(())
    })
    .await;
    let _other = worker(&platform, "other", 4, "warn");
    let mut subscriber =
        Subscriber::subscribe_all(&platform.ws_url, "pause", std::slice::from_ref(&op.id)).await;
    paused.signal("STOP");
    eventually(LONG, "the other worker to take over", || async {
        let log = events(&client, &op.id).await;
        (last_worker(&log).as_deref() == Some("other")).then_some(())
    })
    .await;
    paused.signal("CONT");

    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.attempt, 2);
    subscriber.until_all_done().await;
    subscriber.verify(&client).await;
    let log = logged_once(&client, &op.id).await;
    assert_eq!(count(&log, EventType::Succeeded), 1, "{log:?}");
    let takeover = log
        .iter()
        .position(|e| e.event_type == EventType::Started && e.data["attempt"] == 2)
        .expect("a second attempt");
    assert_eq!(log[takeover - 1].event_type, EventType::Retrying);
    assert_eq!(log[takeover - 1].data["reason"], "lease_expired");
    let steps: Vec<u64> = log[takeover..].iter().filter_map(step_of).collect();
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "after the takeover only the new attempt's progress is written: {steps:?}"
    );
    assert_eq!(steps.last().copied(), Some(40));
    eventually(
        Duration::from_secs(10),
        "the paused worker to notice",
        || async { paused.log().contains("the claim was lost").then_some(()) },
    )
    .await;
    assert!(
        !paused.log().contains("handed the operation back"),
        "{}",
        paused.log()
    );
    platform.stop().await;
}

#[tokio::test]
async fn sigterm_hands_work_back_without_consuming_an_attempt() {
    let grace = Duration::from_millis(1_500);
    let platform = platform(Duration::from_secs(2), grace).await;
    let client = platform.client("term");
    let mut leaving = worker(&platform, "leaving", 4, "longrun_worker=info");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 5_000, "steps": 25}),
            &StartOptions::from(StartParams {
                max_attempts: Some(1),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    eventually(LONG, "the job to run", || async {
        let op = client.get(&op.id).await.ok()?;
        (op.progress.percent > 0.0).then_some(())
    })
    .await;
    let _staying = worker(&platform, "staying", 4, "warn");
    let signalled = Instant::now();
    leaving.signal("TERM");
    let code = leaving.wait_exit(grace + Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", leaving.log());
    assert!(
        took < grace + Duration::from_millis(1_000),
        "exited within the grace period ({took:?})"
    );

    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.attempt, 1, "the handed-back attempt was not consumed");
    let log = events(&client, &op.id).await;
    let retry = log
        .iter()
        .find(|e| e.event_type == EventType::Retrying)
        .expect("handed back");
    assert_eq!(retry.data["reason"], "worker_shutdown");
    assert_eq!(retry.data["attempt_consumed"], false);
    assert_eq!(last_worker(&log).as_deref(), Some("staying"));
    assert_eq!(count(&log, EventType::Succeeded), 1);
    platform.stop().await;
}

#[tokio::test]
async fn cancelling_a_thousand_child_fanout_stops_every_worker_process() {
    let platform = platform(Duration::from_secs(2), Duration::from_secs(2)).await;
    let client = platform.client("cancel");
    let first = worker(&platform, "first", 50, "longrun_worker=info");
    let second = worker(&platform, "second", 50, "longrun_worker=info");
    let parent = client
        .start(
            "demo.fanout",
            &json!({"children": 1_000, "child_duration_ms": 60_000, "child_steps": 60}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    // 100 running means both processes are full (50 slots each).
    eventually(LONG, "both workers to fill their slots", || async {
        let op = client.get(&parent.id).await.ok()?;
        (op.children.running == 100).then_some(())
    })
    .await;

    client.cancel(&parent.id).await.expect("cancelled");
    // Reading 1,001 nodes back takes the test a while on a loaded machine,
    // so the 2 s bound is checked on the nodes' own finish times.
    let all = eventually(LONG, "every node to be terminal", || async {
        let all = nodes(&client, &parent.id).await;
        all.iter().all(|node| node.done).then_some(all)
    })
    .await;
    assert_eq!(all.len(), 1_001);
    assert!(all.iter().all(|node| node.status == Status::Cancelled));
    let root_finished = all[0].finished_at.clone().expect("finished");
    for node in &all {
        let finished = node.finished_at.as_deref().expect("finished");
        let after = ms_between(&root_finished, finished);
        assert!(
            (0..2_000).contains(&after),
            "{} became terminal {after} ms after the root",
            node.id
        );
    }

    // Every queued entry is read and dropped, nothing stays pending.
    let stream = format!("{}:{{q0}}:ready", platform.config.redis_prefix);
    let mut conn = platform.store.conn();
    eventually(LONG, "the queue to drain", || {
        let (mut conn, stream) = (conn.clone(), stream.clone());
        async move {
            let (length, pending): (u64, Vec<redis::Value>) = redis::pipe()
                .cmd("XLEN")
                .arg(&stream)
                .cmd("XPENDING")
                .arg(&stream)
                .arg("workers")
                .query_async(&mut conn)
                .await
                .ok()?;
            (length == 0 && pending.first() == Some(&redis::Value::Int(0))).then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .expect("redis answers");

    let root_log = events(&client, &parent.id).await;
    let cancel_at = root_log
        .iter()
        .find(|e| e.event_type == EventType::Cancelled)
        .map(|e| e.at.clone())
        .expect("the root was cancelled");
    let mut ran = Vec::new();
    for child in &all[1..] {
        let log = events(&client, &child.id).await;
        for started in log.iter().filter(|e| e.event_type == EventType::Started) {
            assert!(
                started.at <= cancel_at,
                "no child starts after the cancel: {} started at {}",
                child.id,
                started.at
            );
        }
        if count(&log, EventType::Started) > 0 {
            ran.push(child.id.clone());
        }
    }
    assert!(ran.len() >= 100, "{} children ran", ran.len());
    let logs = format!("{}\n{}", first.log(), second.log());
    let stopped: HashSet<&str> = ran
        .iter()
        .map(String::as_str)
        .filter(|id| {
            logs.lines().any(|line| {
                line.contains(id) && line.contains("handler stopped after cancellation")
            })
        })
        .collect();
    let running_at_cancel: Vec<&String> = ran
        .iter()
        .filter(|id| !stopped.contains(id.as_str()))
        .collect();
    assert!(
        running_at_cancel.is_empty(),
        "every running handler saw cancelled(); these did not: {running_at_cancel:?}"
    );
    assert!(
        !logs.contains("aborted"),
        "no handler had to be aborted:\n{logs}"
    );
    assert!(first.log().contains("handler stopped after cancellation"));
    assert!(second.log().contains("handler stopped after cancellation"));
    platform.stop().await;
}
