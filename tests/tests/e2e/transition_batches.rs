//! The batch scripts: a worker claims the entries of one queue read, and
//! records the results of jobs that finished together, in one script call
//! each (`shared/lua/batch.lua`). Every operation of a batch still gets
//! its own outcome, as if it had been called alone.

use longrun_client::StartOptions;
use longrun_shared::model::{EventType, Status};
use longrun_shared::store::queue::QueueEntry;
use longrun_shared::store::transitions::Claim;
use longrun_tests::{Platform, stand_in};
use redis::AsyncCommands;
use serde_json::json;

#[tokio::test]
async fn every_operation_of_a_batch_gets_its_own_outcome() {
    let platform = Platform::queue_only().await;
    let client = platform.client("batcher");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let op = client
            .start(
                "demo.sleep",
                &json!({"duration_ms": 0, "steps": 1}),
                &StartOptions::default(),
            )
            .await
            .expect("start");
        ids.push(op.id);
    }
    client.cancel(&ids[1]).await.expect("cancel");

    // One claim call for the three entries: run, drop (cancelled), run.
    // (The api may queue an entry twice when it had to load the scripts
    // first; the claim of the second is `busy`. Claim each operation once.)
    let mut entries = stand_in::read_new(&platform.store).await;
    let mut seen = std::collections::HashSet::new();
    entries.retain(|entry| seen.insert(entry.op_id.clone()));
    // An entry whose operation key holds no hash: its claim raises a Redis
    // error inside the batch, which must stay that entry's alone.
    let broken = QueueEntry {
        shard: 0,
        entry_id: "0-1".into(),
        op_id: "not-a-hash".into(),
        root: "not-a-hash".into(),
        generation: 1,
    };
    let _: () = platform
        .store
        .conn()
        .set(platform.store.keys().op("not-a-hash", "not-a-hash"), "x")
        .await
        .expect("set");
    entries.insert(1, broken);
    for id in &ids {
        assert!(
            entries.iter().any(|entry| &entry.op_id == id),
            "{id} is queued"
        );
    }
    let claims = platform
        .store
        .claim_batch(&entries, "batcher-worker", 60_000)
        .await
        .expect("the batch runs");
    let mut jobs = Vec::new();
    for (entry, claim) in entries.iter().zip(claims) {
        if entry.op_id == "not-a-hash" {
            let err = claim.expect_err("a claim on a string key fails");
            assert!(err.to_string().contains("WRONGTYPE"), "{err}");
            continue;
        }
        let (claim, _) = claim.expect("each claim has its outcome");
        match claim {
            Claim::Run(job) => {
                assert_eq!(job.attempt, 1);
                assert_eq!(job.kind, "demo.sleep");
                assert_eq!(job.input, json!({"duration_ms": 0, "steps": 1}));
                jobs.push(job);
            }
            Claim::Drop => assert_eq!(entry.op_id, ids[1], "only the cancelled one drops"),
            other => panic!("unexpected claim of {}: {other:?}", entry.op_id),
        }
    }
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        jobs[0].entry.op_id, ids[0],
        "claims come back in entry order"
    );

    // One results call: the first with its last progress, the second with
    // an attempt it does not hold (fenced) — each gets its own word.
    let mut stale = jobs[1].clone();
    stale.attempt += 1;
    let outcomes = platform
        .store
        .complete_batch(&[
            (
                jobs[0].clone(),
                json!({"answer": 42}),
                Some((100.0, Some("done".into()), json!(null))),
            ),
            (stale, json!({"answer": 0}), None),
        ])
        .await
        .expect("the batch runs");
    let words: Vec<&str> = outcomes
        .iter()
        .map(|outcome| {
            outcome
                .as_ref()
                .expect("each has its outcome")
                .word
                .as_str()
        })
        .collect();
    assert_eq!(words, ["ok", "fenced"]);

    let done = client.get(&ids[0]).await.expect("get");
    assert_eq!(done.status, Status::Succeeded);
    assert_eq!(done.result, json!({"answer": 42}));
    assert_eq!(done.progress.percent, 100.0);
    let events = client.all_events(&ids[0], 0).await.expect("events");
    let seqs: Vec<u64> = events.iter().map(|event| event.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "one seq per event, none skipped");
    let types: Vec<EventType> = events.iter().map(|event| event.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::Created,
            EventType::Started,
            EventType::Progress,
            EventType::Succeeded
        ]
    );
    assert_eq!(
        done.updated_at, events[3].at,
        "updated_at is the last event's time"
    );
    let still = client.get(&ids[2]).await.expect("get");
    assert_eq!(
        still.status,
        Status::Running,
        "a fenced result changes nothing"
    );
    assert_eq!(
        client.get(&ids[1]).await.expect("get").status,
        Status::Cancelled
    );
}
