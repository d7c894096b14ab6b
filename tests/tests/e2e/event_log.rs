//! The event log: a Redis list of frames, read by index. An operation that
//! lived through the upgrade from the stream log (its first events in the
//! stream older versions kept, `P:{root}:ev:ID`, the rest in the list)
//! reads back whole and in order — over HTTP, page by page from any
//! `after_seq`, and over the WebSocket from seq 0 — and its stream expires
//! and is deleted with it.

use longrun_shared::Store;
use longrun_shared::model::{EventFrame, EventType};
use longrun_tests::ws::seqs;
use longrun_tests::{Platform, StandIn};
use serde_json::json;

use crate::realtime_delivery::{contiguous, queued};

/// Moves every event logged so far into a legacy stream, as a version
/// before the list would have written them. Returns how many moved.
async fn move_log_to_legacy_stream(store: &Store, id: &str) -> u64 {
    let keys = store.keys();
    let mut conn = store.conn();
    let frames: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.log(id, id))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("log read");
    let mut pipe = redis::pipe();
    for frame in &frames {
        let frame: EventFrame = serde_json::from_str(frame).expect("a frame");
        let event_type = serde_json::to_value(frame.event).expect("a type name");
        pipe.cmd("XADD")
            .arg(keys.legacy_log(id, id))
            .arg(format!("{}-0", frame.seq))
            .arg("t")
            .arg(event_type.as_str().expect("a string"))
            .arg("at")
            .arg(&frame.at)
            .arg("d")
            .arg(frame.data.to_string())
            .ignore();
    }
    pipe.cmd("DEL").arg(keys.log(id, id)).ignore();
    let _: () = pipe.query_async(&mut conn).await.expect("log moved");
    frames.len() as u64
}

async fn pttl(store: &Store, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut store.conn())
        .await
        .expect("pttl")
}

#[tokio::test]
async fn an_operation_whose_log_began_as_a_stream_reads_back_whole_and_in_order() {
    let platform = Platform::builder().workers(0).start().await;
    let client = platform.client("ulla");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;
    for step in 1..=3 {
        worker.progress(f64::from(step) * 2.0, &json!({})).await;
    }
    let moved = move_log_to_legacy_stream(&platform.store, &op.id).await;
    assert_eq!(moved, 5, "created, started and three progress events");

    // The new version goes on appending to the list.
    for step in 4..=40 {
        worker.progress(f64::from(step) * 2.0, &json!({})).await;
    }
    worker.complete(&json!({"rows": 40})).await;
    let last = client.get(&op.id).await.expect("resource").seq;
    assert_eq!(last, 43);

    // Page by page over HTTP, from every starting point.
    for after in 0..=last {
        let page = client.events(&op.id, after, 7).await.expect("page");
        let expected: Vec<u64> = (after + 1..=last).take(7).collect();
        let got: Vec<u64> = page.events.iter().map(|event| event.seq).collect();
        assert_eq!(got, expected, "the page after seq {after}");
    }
    let all = client.all_events(&op.id, 0).await.expect("all events");
    assert_eq!(
        all.iter().map(|event| event.seq).collect::<Vec<_>>(),
        contiguous(1, last)
    );
    assert_eq!(all[0].event_type, EventType::Created);
    assert_eq!(all[5].data["percent"], 8.0, "the first event of the list");

    // Replayed over the WebSocket from the start.
    let mut ws = platform.ws("ulla").await;
    ws.subscribe(&op.id, Some(0)).await;
    let replayed = ws.events_until_terminal(&op.id).await;
    assert_eq!(seqs(&replayed), contiguous(1, last));

    // Both logs expire with the finished operation and go with its delete.
    let keys = platform.store.keys();
    let (list, stream) = (keys.log(&op.id, &op.id), keys.legacy_log(&op.id, &op.id));
    assert!(pttl(&platform.store, &list).await > 0, "the list expires");
    assert!(
        pttl(&platform.store, &stream).await > 0,
        "the stream expires"
    );
    client.delete(&op.id).await.expect("deleted");
    assert_eq!(pttl(&platform.store, &list).await, -2, "the list is gone");
    assert_eq!(
        pttl(&platform.store, &stream).await,
        -2,
        "the stream is gone"
    );
}

#[tokio::test]
async fn a_log_reads_by_index_and_says_nothing_new_past_its_end() {
    let platform = Platform::builder().workers(0).start().await;
    let client = platform.client("uwe");
    let op = queued(&client).await;
    let worker = StandIn::claim(&platform.store, &op.id).await;
    worker.run_fast(20, &json!({"n": 1})).await;
    let last = client.get(&op.id).await.expect("resource").seq;
    assert_eq!(last, 23, "created, started, 20 progress, succeeded");

    let middle = client.events(&op.id, 7, 5).await.expect("page");
    let got: Vec<u64> = middle.events.iter().map(|event| event.seq).collect();
    assert_eq!(got, contiguous(8, 12));
    assert_eq!(middle.next_seq, 12);
    for after in [last, last + 1, last + 1_000] {
        let page = client.events(&op.id, after, 10).await.expect("page");
        assert!(page.events.is_empty(), "nothing after seq {after}");
    }
    // Stored as the very frames subscribers receive.
    let keys = platform.store.keys();
    let frame: String = redis::cmd("LINDEX")
        .arg(keys.log(&op.id, &op.id))
        .arg(0)
        .query_async(&mut platform.store.conn())
        .await
        .expect("first entry");
    let frame: serde_json::Value = serde_json::from_str(&frame).expect("json");
    assert_eq!(frame["type"], "event");
    assert_eq!(frame["seq"], 1);
    assert_eq!(frame["event"], "created");
}
