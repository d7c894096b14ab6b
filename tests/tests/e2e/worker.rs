//! The worker engine with in-process services on a real Redis: retries and
//! backoff, failure policies in trees, timeouts and deadlines, the real
//! kinds (data.import, calc.primes) and retention.

use std::time::Duration;

use longrun_client::{StartOptions, StartParams};
use longrun_shared::kinds::{BackoffKind, FailurePolicy};
use longrun_shared::model::{EventType, Operation, Status};
use longrun_tests::tree::{count, events, ms_between, nodes, wait_tree_done};
use longrun_tests::{Platform, eventually};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

fn options() -> StartOptions {
    StartOptions::default()
}

#[tokio::test]
async fn retries_follow_fail_times_and_honour_the_backoff() {
    let platform = Platform::start().await;
    let client = platform.client("retry");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "steps": 1, "fail_times": 2}),
            &StartOptions::from(StartParams {
                max_attempts: Some(3),
                backoff: Some(BackoffKind::Fixed),
                backoff_ms: Some(300),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.attempt, 3);
    let log = events(&client, &op.id).await;
    assert_eq!(count(&log, EventType::Started), 3);
    assert_eq!(count(&log, EventType::Retrying), 2);
    assert_eq!(count(&log, EventType::Succeeded), 1);
    for (index, event) in log.iter().enumerate() {
        if event.event_type != EventType::Retrying {
            continue;
        }
        assert_eq!(event.data["retry_in_ms"], 300, "{event:?}");
        assert_eq!(event.data["error"]["code"], "demo_failure");
        assert_eq!(event.data["error"]["retryable"], true);
        let next_start = log[index..]
            .iter()
            .find(|e| e.event_type == EventType::Started)
            .expect("a later attempt");
        let waited = ms_between(&event.at, &next_start.at);
        assert!(
            waited >= 250,
            "the backoff of 300 ms was honoured: {waited} ms"
        );
    }

    // More failures than attempts: it fails for good after max_attempts.
    let exhausted = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "steps": 1, "fail_times": 5}),
            &StartOptions::from(StartParams {
                max_attempts: Some(2),
                backoff: Some(BackoffKind::Exponential),
                backoff_ms: Some(50),
                backoff_max_ms: Some(80),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    let failed = client.wait(&exhausted.id, LONG).await.expect("waited");
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.attempt, 2);
    let error = failed.error.expect("an error");
    assert_eq!(error.code, "demo_failure");
    let log = events(&client, &exhausted.id).await;
    assert_eq!(count(&log, EventType::Retrying), 1);
    let delay = log
        .iter()
        .find(|e| e.event_type == EventType::Retrying)
        .and_then(|e| e.data["retry_in_ms"].as_u64())
        .expect("a delay");
    assert!(
        delay <= 80,
        "exponential backoff stays under its cap: {delay}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn permanent_errors_never_retry() {
    let data = tempfile::tempdir().expect("tempdir");
    let platform = Platform::builder()
        .config(|config| config.worker.data_dir = Some(data.path().display().to_string()))
        .start()
        .await;
    let client = platform.client("permanent");
    let op = client
        .start(
            "data.import",
            &json!({"path": "../../etc/passwd", "columns": [{"name": "a"}]}),
            &StartOptions::from(StartParams {
                max_attempts: Some(5),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.attempt, 1, "no second attempt");
    let error = done.error.expect("an error");
    assert_eq!(error.code, "path_outside_data_dir");
    assert!(!error.retryable);
    let log = events(&client, &op.id).await;
    assert_eq!(count(&log, EventType::Retrying), 0);
    assert_eq!(count(&log, EventType::Started), 1);
    platform.stop().await;
}

/// A root with two fan-out children: the first has slow children that all
/// succeed, the second has one leaf that fails at once.
fn three_levels() -> Value {
    json!({
        "child_kind": "demo.fanout",
        "child_inputs": [
            {"children": 3, "child_duration_ms": 1_500, "child_steps": 3},
            {"children": 3, "child_duration_ms": 100, "fail_children": [1]},
        ],
    })
}

async fn run_tree(platform: &Platform, policy: FailurePolicy) -> (Operation, Vec<Operation>) {
    let client = platform.client("trees");
    let root = client
        .start(
            "demo.fanout",
            &three_levels(),
            &StartOptions::from(StartParams {
                failure_policy: Some(policy),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &root.id, LONG).await;
    assert_eq!(all.len(), 1 + 2 + 6, "every node of the tree");
    (all[0].clone(), all)
}

fn node<'a>(all: &'a [Operation], parent: &str, index: usize) -> &'a Operation {
    all.iter()
        .filter(|node| node.parent_id.as_deref() == Some(parent))
        .nth(index)
        .expect("the node exists")
}

#[tokio::test]
async fn failure_policies_hold_deep_in_a_three_level_tree() {
    let platform = Platform::start().await;

    let (root, all) = run_tree(&platform, FailurePolicy::WaitAll).await;
    let (slow, failing) = (node(&all, &root.id, 0), node(&all, &root.id, 1));
    assert_eq!(
        root.status,
        Status::Failed,
        "wait_all: a failed descendant fails the root"
    );
    assert_eq!(
        root.error.as_ref().map(|e| e.code.as_str()),
        Some("child_failed")
    );
    assert_eq!(
        slow.status,
        Status::Succeeded,
        "the other branch ran to its end"
    );
    assert_eq!(failing.status, Status::Failed);
    assert_eq!(node(&all, &failing.id, 1).status, Status::Failed);
    assert_eq!(node(&all, &failing.id, 0).status, Status::Succeeded);
    assert_eq!(root.children.succeeded, 1);
    assert_eq!(root.children.failed, 1);
    assert!(
        (0..3).all(|i| node(&all, &slow.id, i).status == Status::Succeeded),
        "wait_all lets the slow leaves finish"
    );

    let (root, all) = run_tree(&platform, FailurePolicy::FailFast).await;
    let (slow, failing) = (node(&all, &root.id, 0), node(&all, &root.id, 1));
    assert_eq!(root.status, Status::Failed, "fail_fast");
    assert_eq!(failing.status, Status::Failed);
    assert_eq!(node(&all, &failing.id, 1).status, Status::Failed);
    assert_eq!(
        slow.status,
        Status::Cancelled,
        "the first failure cancels the rest"
    );
    assert!(
        (0..3).all(|i| node(&all, &slow.id, i).status == Status::Cancelled),
        "{:?}",
        all.iter().map(|n| n.status).collect::<Vec<_>>()
    );

    let (root, all) = run_tree(&platform, FailurePolicy::IgnoreFailures).await;
    let failing = node(&all, &root.id, 1);
    assert_eq!(root.status, Status::Succeeded, "ignore_failures");
    assert_eq!(failing.status, Status::Succeeded);
    assert_eq!(node(&all, &failing.id, 1).status, Status::Failed);
    assert_eq!(failing.children.failed, 1);
    platform.stop().await;
}

#[tokio::test]
async fn a_timed_out_attempt_fails_retryably_with_code_timeout() {
    let platform = Platform::start().await;
    let client = platform.client("timeouts");
    let op = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 20_000, "steps": 100}),
            &StartOptions::from(StartParams {
                timeout_ms: Some(300),
                max_attempts: Some(2),
                backoff: Some(BackoffKind::Fixed),
                backoff_ms: Some(50),
                ..StartParams::default()
            }),
        )
        .await
        .expect("started");
    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.attempt, 2);
    let error = done.error.expect("an error");
    assert_eq!(error.code, "timeout");
    assert!(error.retryable);
    let log = events(&client, &op.id).await;
    let retry = log
        .iter()
        .find(|e| e.event_type == EventType::Retrying)
        .expect("the first timeout was retried");
    assert_eq!(retry.data["error"]["code"], "timeout");
    let started = log
        .iter()
        .find(|e| e.event_type == EventType::Started)
        .expect("started");
    let ran = ms_between(&started.at, &retry.at);
    assert!(
        (250..10_000).contains(&ran),
        "the attempt ran about its timeout: {ran} ms"
    );
    platform.stop().await;
}

#[tokio::test]
async fn a_deadline_fails_the_operation_running_parked_or_queued() {
    let platform = Platform::builder()
        .config(|config| config.worker.concurrency = 2)
        .start()
        .await;
    let client = platform.client("deadlines");
    let deadline = |ms| {
        StartOptions::from(StartParams {
            deadline_ms: Some(ms),
            max_attempts: Some(3),
            ..StartParams::default()
        })
    };

    // Running: the worker stops it; no retry past the deadline.
    let running = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 20_000, "steps": 20}),
            &deadline(600),
        )
        .await
        .expect("started");
    let done = client.wait(&running.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.error.map(|e| e.code), Some("deadline_exceeded".into()));
    assert_eq!(done.attempt, 1);

    // Parked, waiting for its children: failed, the children cancelled.
    let parent = client
        .start(
            "demo.fanout",
            &json!({"children": 3, "child_duration_ms": 20_000, "child_steps": 20}),
            &deadline(800),
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &parent.id, LONG).await;
    assert_eq!(all[0].status, Status::Failed);
    assert_eq!(
        all[0].error.as_ref().map(|e| e.code.as_str()),
        Some("deadline_exceeded")
    );
    assert!(
        all[1..]
            .iter()
            .all(|child| child.status == Status::Cancelled)
    );

    // Queued behind busy slots: failed without ever starting.
    let blocker_input = json!({"duration_ms": 8_000, "steps": 8});
    let mut blockers: Vec<Operation> = Vec::new();
    for _ in 0..2 {
        blockers.push(
            client
                .start("demo.sleep", &blocker_input, &options())
                .await
                .expect("started"),
        );
    }
    for blocker in &blockers {
        eventually(LONG, "the blocker runs", || async {
            let op = client.get(&blocker.id).await.ok()?;
            (op.status == Status::Running).then_some(())
        })
        .await;
    }
    let queued = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 10, "steps": 1}),
            &deadline(500),
        )
        .await
        .expect("started");
    let done = client.wait(&queued.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Failed);
    assert_eq!(done.error.map(|e| e.code), Some("deadline_exceeded".into()));
    let log = events(&client, &queued.id).await;
    assert_eq!(
        count(&log, EventType::Started),
        0,
        "it never started: {log:?}"
    );
    let blocker = client.get(&blockers[0].id).await.expect("read");
    assert!(!blocker.done, "it failed while the slots were still busy");
    platform.stop().await;
}

fn people_csv(rows: usize, bad: &[usize]) -> String {
    let mut text = String::from("id,email,age\n");
    for row in 0..rows {
        if bad.contains(&row) {
            text.push_str(&format!("{row},not-an-email,x\n"));
        } else {
            text.push_str(&format!("{row},p{row}@example.com,{}\n", 20 + row % 50));
        }
    }
    text
}

fn people_columns() -> Value {
    json!([
        {"name": "id", "type": "integer"},
        {"name": "email", "type": "email"},
        {"name": "age", "type": "integer", "required": false},
    ])
}

#[tokio::test]
async fn data_import_validates_a_csv_in_batches_and_writes_the_valid_rows() {
    let data = tempfile::tempdir().expect("tempdir");
    let platform = Platform::builder()
        .config(|config| config.worker.data_dir = Some(data.path().display().to_string()))
        .start()
        .await;
    let client = platform.client("importer");
    let mut watch = platform.ws("importer").await;

    // From the request body, in batches of 10 rows.
    let op = client
        .start(
            "data.import",
            &json!({
                "csv": people_csv(25, &[3, 17, 24]),
                "batch_size": 10,
                "columns": people_columns(),
                "output": "people.jsonl",
            }),
            &options(),
        )
        .await
        .expect("started");
    watch.subscribe(&op.id, Some(0)).await;
    let frames = watch.events_until_terminal(&op.id).await;
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.children.total, 3, "25 rows in batches of 10");
    let result = &done.result;
    assert_eq!(result["rows"], 25);
    assert_eq!(result["valid"], 22);
    assert_eq!(result["invalid"], 3);
    let lines: Vec<u64> = result["invalid_rows"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|row| row["line"].as_u64())
        .collect();
    assert_eq!(
        lines,
        vec![5, 19, 26],
        "header on line 1, row n on line n + 2"
    );
    let reasons = result["invalid_rows"][0]["errors"].to_string();
    assert!(
        reasons.contains("email") && reasons.contains("age"),
        "{reasons}"
    );
    let partial: Vec<&Value> = frames
        .iter()
        .filter(|frame| frame["event"] == "progress")
        .map(|frame| &frame["data"]["data"]["totals"])
        .filter(|totals| totals.is_object())
        .collect();
    // Batches of 10, 10 and 5 rows finish in any order: the running totals
    // climb through sums of finished batches to 25.
    let rows: Vec<u64> = partial
        .iter()
        .filter_map(|totals| totals["rows"].as_u64())
        .collect();
    assert!(
        rows.iter().any(|&n| [5, 10, 15, 20].contains(&n)),
        "partial totals were visible while it ran: {partial:?}"
    );
    assert!(rows.is_sorted(), "totals only grow: {rows:?}");
    let written = std::fs::read_to_string(data.path().join("people.jsonl")).expect("output");
    let rows: Vec<Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON lines"))
        .collect();
    assert_eq!(rows.len(), 22);
    assert_eq!(
        rows[0],
        json!({"id": 0, "email": "p0@example.com", "age": 20})
    );
    assert_eq!(rows[21]["id"], 23, "in the file's order");
    let leftovers: Vec<_> = std::fs::read_dir(data.path())
        .expect("list")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "people.jsonl")
        .collect();
    assert!(
        leftovers.is_empty(),
        "part files are removed: {leftovers:?}"
    );

    // From a file in the data directory, without a header.
    std::fs::write(data.path().join("plain.csv"), "1,a@b.io\n2,c@d.io\nx,y\n").expect("write");
    let op = client
        .start(
            "data.import",
            &json!({
                "path": "plain.csv",
                "has_header": false,
                "batch_size": 2,
                "columns": [{"name": "n", "type": "integer"}, {"name": "mail", "type": "email"}],
            }),
            &options(),
        )
        .await
        .expect("started");
    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.result["rows"], 3);
    assert_eq!(done.result["invalid"], 1);
    assert_eq!(done.result["invalid_rows"][0]["line"], 3);
    assert_eq!(done.children.total, 2);
    platform.stop().await;
}

#[tokio::test]
async fn calc_primes_splits_into_children_and_sums_their_counts() {
    let platform = Platform::start().await;
    let client = platform.client("primes");
    let whole = client
        .start("calc.primes", &json!({"limit": 1_000_000}), &options())
        .await
        .expect("started");
    let split = client
        .start(
            "calc.primes",
            &json!({"limit": 2_000_000, "segments": 4}),
            &options(),
        )
        .await
        .expect("started");
    let whole = client.wait(&whole.id, LONG).await.expect("waited");
    assert_eq!(whole.status, Status::Succeeded, "{whole:?}");
    assert_eq!(whole.result["primes"], 78_498);
    assert_eq!(whole.result["largest"], 999_983);
    let log = events(&client, &whole.id).await;
    assert!(
        log.iter().any(
            |e| e.event_type == EventType::Progress && e.data["data"]["primes_so_far"].is_u64()
        ),
        "partial counts in the progress data"
    );
    let split = client.wait(&split.id, LONG).await.expect("waited");
    assert_eq!(split.status, Status::Succeeded, "{split:?}");
    assert_eq!(split.result["primes"], 148_933);
    assert_eq!(split.children.total, 4);
    assert_eq!(split.progress.data["totals"]["primes"], 148_933);
    platform.stop().await;
}

#[tokio::test]
async fn a_cancelled_sieve_gives_its_cores_back_promptly() {
    let platform = Platform::start().await;
    let client = platform.client("sieves");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Enough sieves of 10^11 (minutes each) to hold every core of the pool.
    let mut huge = Vec::new();
    for _ in 0..cores {
        huge.push(
            client
                .start(
                    "calc.primes",
                    &json!({"limit": 100_000_000_000u64}),
                    &options(),
                )
                .await
                .expect("started"),
        );
    }
    for op in &huge {
        eventually(LONG, "the sieve reports progress", || async {
            let op = client.get(&op.id).await.ok()?;
            op.progress.data["primes_so_far"].is_u64().then_some(())
        })
        .await;
    }
    for op in &huge {
        client.cancel(&op.id).await.expect("cancelled");
    }
    // Only a stopped sieve frees its core for this one.
    let small = client
        .start("calc.primes", &json!({"limit": 100_000}), &options())
        .await
        .expect("started");
    let done = client
        .wait(&small.id, Duration::from_secs(20))
        .await
        .expect("waited");
    assert_eq!(
        done.status,
        Status::Succeeded,
        "the cancelled sieves stopped"
    );
    assert_eq!(done.result["primes"], 9_592);
    platform.stop().await;
}

#[tokio::test]
async fn retention_removes_every_key_of_a_finished_tree() {
    let platform = Platform::builder()
        .config(|config| config.retention = Duration::from_secs(2))
        .start()
        .await;
    let client = platform.client("retained");
    let started = client
        .start(
            "demo.fanout",
            &json!({"children": 3, "child_duration_ms": 10}),
            &StartOptions {
                idempotency_key: Some("retention-test".into()),
                params: StartParams {
                    deadline_ms: Some(60_000),
                    ..StartParams::default()
                },
            },
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &started.id, LONG).await;
    assert_eq!(all[0].status, Status::Succeeded);
    let ids: Vec<String> = all.iter().map(|node| node.id.clone()).collect();
    let prefix = platform.config.redis_prefix.clone();
    let mut conn = platform.store.conn();
    let keys_now = scan(&mut conn, &prefix).await;
    assert!(
        keys_now.iter().any(|key| key.contains(&ids[1])),
        "the tree is there before its retention ends: {keys_now:?}"
    );
    let remaining = eventually(
        Duration::from_secs(15),
        "every key of the tree to expire",
        || {
            let mut conn = conn.clone();
            let (prefix, ids) = (prefix.clone(), ids.clone());
            async move {
                let keys = scan(&mut conn, &prefix).await;
                let left = keys.iter().any(|key| {
                    ids.iter().any(|id| key.contains(id))
                        || key.contains("{idx}")
                        || key.contains("idem")
                });
                (!left).then_some(keys)
            }
        },
    )
    .await;
    let infrastructure = [
        format!("{prefix}:{{q0}}:ready"),
        format!("{prefix}:kinds"),
        format!("{prefix}:queue:shards"),
    ];
    assert!(
        remaining.iter().all(|key| infrastructure.contains(key)),
        "only the queue stream and the kinds stay: {remaining:?}"
    );
    let (length, pending): (u64, Vec<redis::Value>) = redis::pipe()
        .cmd("XLEN")
        .arg(&infrastructure[0])
        .cmd("XPENDING")
        .arg(&infrastructure[0])
        .arg("workers")
        .query_async(&mut conn)
        .await
        .expect("queue read");
    assert_eq!(length, 0, "no entry of the tree is left in the queue");
    assert_eq!(
        pending.first(),
        Some(&redis::Value::Int(0)),
        "nothing pending"
    );
    platform.stop().await;
}

async fn scan(conn: &mut longrun_shared::store::RedisConn, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await
            .expect("scan");
        keys.extend(batch);
        if next == 0 {
            keys.sort();
            return keys;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn progress_of_many_fast_children_is_coalesced_on_the_parent() {
    let platform = Platform::start().await;
    let client = platform.client("coalesce");
    let op = client
        .start(
            "demo.fanout",
            &json!({"children": 1_000, "child_duration_ms": 0}),
            &options(),
        )
        .await
        .expect("started");
    let done = client.wait(&op.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.children.succeeded, 1_000);
    let log = events(&client, &op.id).await;
    let progress: Vec<f64> = log
        .iter()
        .filter(|e| e.event_type == EventType::Progress)
        .filter_map(|e| e.data["percent"].as_f64())
        .collect();
    assert!(
        progress.len() < 500,
        "coalesced to one per percent or per 50 ms, not one per child: {}",
        progress.len()
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "never decreasing"
    );
    assert_eq!(progress.last().copied(), Some(100.0));
    assert_eq!(nodes(&client, &op.id).await.len(), 1_001);
    platform.stop().await;
}
