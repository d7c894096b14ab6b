//! The platform on a real Redis Cluster (three masters, one binary-wide
//! cluster, each test under its own key prefix): operations run end to
//! end through the real services, a fan-out's children spread over the
//! queue shards and the cluster's nodes, a tree cancels as one, a child is
//! found by its id, retention empties every node, and a cluster node named
//! without cluster mode is refused at start.

use std::collections::HashSet;
use std::time::Duration;

use longrun_client::{ListOptions, StartOptions, StartParams};
use longrun_shared::model::{EventType, Status};
use longrun_tests::audit::logged_once;
use longrun_tests::cluster::shared_cluster;
use longrun_tests::tree::{count, events, wait_tree_done};
use longrun_tests::ws::seqs;
use longrun_tests::{Platform, PlatformBuilder, eventually, process};
use serde_json::json;

use crate::LONGRUN;

const LONG: Duration = Duration::from_secs(30);

/// api + gateway + `workers` workers on the shared cluster.
fn on_cluster(workers: usize) -> PlatformBuilder {
    Platform::builder_on(&shared_cluster().urls())
        .workers(workers)
        .config(|config| config.redis.cluster = Some(true))
}

#[tokio::test]
async fn an_operation_on_a_cluster_streams_every_event_in_order() {
    let platform = on_cluster(1).start().await;
    assert!(platform.store.is_cluster());
    assert_eq!(
        platform.store.queue_shards(),
        16,
        "16 shards by default on a cluster"
    );
    let client = platform.client("cl-sleep");
    // An operation whose slot is on another node than the one the
    // gateway's pub/sub connection uses (the first listed): its events
    // cross the cluster to reach the subscriber.
    let cluster = shared_cluster();
    let first_node = cluster.nodes()[0].port();
    let mut op = None;
    for _ in 0..30 {
        let started = client
            .start(
                "demo.sleep",
                &json!({"duration_ms": 300, "steps": 6}),
                &StartOptions::default(),
            )
            .await
            .expect("started");
        let key = platform.store.keys().op_channel(&started.id, &started.id);
        if cluster.owner_of(&key).await != first_node {
            op = Some(started);
            break;
        }
    }
    let op = op.expect("an operation on another node");
    let mut ws = platform.ws("cl-sleep").await;
    ws.subscribe(&op.id, Some(0)).await;
    let frames = ws.events_until_terminal(&op.id).await;
    let done = client.get(&op.id).await.expect("read");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.result["slept_ms"], 300);
    assert_eq!(
        seqs(&frames),
        (1..=done.seq).collect::<Vec<_>>(),
        "gap-free"
    );
    assert_eq!(frames[0]["event"], "created");
    assert_eq!(
        count(&events(&client, &op.id).await, EventType::Succeeded),
        1
    );
    platform.stop().await;
}

#[tokio::test]
async fn a_fanout_spreads_its_children_over_the_shards_and_nodes() {
    let cluster = shared_cluster();
    let platform = on_cluster(2).start().await;
    let client = platform.client("cl-fanout");
    let op = client
        .start(
            "demo.fanout",
            &json!({"children": 48, "child_duration_ms": 20, "child_steps": 2}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &op.id, LONG).await;
    assert_eq!(all[0].status, Status::Succeeded, "{:?}", all[0]);
    assert_eq!(all[0].children.succeeded, 48);
    let kids = &all[1..];
    assert_eq!(kids.len(), 48);
    for kid in kids {
        assert_eq!(kid.status, Status::Succeeded);
        logged_once(&client, &kid.id).await;
    }
    // Every key of the tree shares one slot (each transition is one script
    // on one node), while its queue entries spread over the shards.
    // (A child's small `root` index entry, which finds the tree from the
    // child's id, is the only key in the child's own slot.)
    let prefix = &platform.config.redis_prefix;
    let root_tag = format!("{prefix}:{{{}}}:", op.id);
    let mentioning: Vec<String> = cluster
        .keys(&format!("{prefix}:*"))
        .await
        .into_iter()
        .filter(|key| all.iter().any(|node| key.contains(&node.id)))
        .collect();
    let (tree_keys, elsewhere): (Vec<String>, Vec<String>) = mentioning
        .into_iter()
        .partition(|key| key.starts_with(&root_tag));
    for key in &elsewhere {
        assert!(
            kids.iter()
                .any(|kid| *key == platform.store.keys().root_of(&kid.id)),
            "only a child's root index lives outside the tree's slot: {key}"
        );
    }
    // The root, 48 children: an operation hash and an event log each.
    assert!(tree_keys.len() >= 2 * 49, "{tree_keys:?}");
    let mut slots = HashSet::new();
    for key in &tree_keys {
        slots.insert(cluster.slot_of(key).await);
    }
    assert_eq!(slots.len(), 1, "one slot for the whole tree: {tree_keys:?}");
    let shards: HashSet<u32> = kids
        .iter()
        .map(|kid| platform.store.shard_of(&kid.id))
        .collect();
    assert!(shards.len() >= 8, "children on many shards: {shards:?}");
    let mut nodes = HashSet::new();
    for shard in &shards {
        nodes.insert(cluster.owner_of(&platform.store.keys().ready(*shard)).await);
    }
    assert_eq!(
        nodes.len(),
        cluster.nodes().len(),
        "every master holds some of the tree's queue shards"
    );
    platform.stop().await;
}

#[tokio::test]
async fn cancelling_a_tree_on_a_cluster_cancels_every_node_of_it_once() {
    let platform = on_cluster(1).start().await;
    let client = platform.client("cl-cancel");
    let op = client
        .start(
            "demo.fanout",
            &json!({"children": 12, "child_duration_ms": 30_000, "child_steps": 30}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    eventually(LONG, "children running", || async {
        let root = client.get(&op.id).await.ok()?;
        (root.children.running >= 4).then_some(())
    })
    .await;
    client.cancel(&op.id).await.expect("cancelled");
    let all = wait_tree_done(&client, &op.id, Duration::from_secs(10)).await;
    assert_eq!(all.len(), 13);
    for node in &all {
        assert_eq!(node.status, Status::Cancelled, "{node:?}");
        let log = events(&client, &node.id).await;
        assert_eq!(count(&log, EventType::Cancelled), 1, "{log:?}");
        assert_eq!(count(&log, EventType::Succeeded), 0);
    }
    // The running handlers were told (the cancel signal crossed the
    // cluster): the worker's slots come free and new work runs at once.
    let next = client
        .start(
            "demo.sleep",
            &json!({"duration_ms": 0, "steps": 1}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    let done = client.wait(&next.id, LONG).await.expect("waited");
    assert_eq!(done.status, Status::Succeeded);
    platform.stop().await;
}

#[tokio::test]
async fn a_child_is_read_by_its_id_and_only_roots_are_listed() {
    let platform = on_cluster(1).start().await;
    let client = platform.client("cl-read");
    let op = client
        .start(
            "demo.fanout",
            &json!({"children": 5, "child_duration_ms": 10}),
            &StartOptions::default(),
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &op.id, LONG).await;
    let child = client.get(&all[3].id).await.expect("a child by its id");
    assert_eq!(child.parent_id.as_deref(), Some(op.id.as_str()));
    assert_eq!(child.status, Status::Succeeded);
    let page = client
        .events(&child.id, 0, 100)
        .await
        .expect("the child's events");
    assert_eq!(page.events.len() as u64, child.seq);
    let listed = client.list(&ListOptions::default()).await.expect("listed");
    let ids: Vec<&str> = listed.operations.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec![op.id.as_str()], "the root, not its children");
    let other = platform.client("cl-someone-else");
    assert!(
        other.get(&child.id).await.is_err(),
        "another owner sees nothing"
    );
    platform.stop().await;
}

#[tokio::test]
async fn retention_on_a_cluster_empties_every_node() {
    let cluster = shared_cluster();
    let platform = on_cluster(1)
        .config(|config| config.retention = Duration::from_secs(1))
        .start()
        .await;
    let client = platform.client("cl-retained");
    let op = client
        .start(
            "demo.fanout",
            &json!({"children": 6, "child_duration_ms": 10}),
            &StartOptions {
                idempotency_key: Some("cluster-retention".into()),
                params: StartParams {
                    deadline_ms: Some(60_000),
                    ..StartParams::default()
                },
            },
        )
        .await
        .expect("started");
    let all = wait_tree_done(&client, &op.id, LONG).await;
    assert_eq!(all[0].status, Status::Succeeded);
    let prefix = platform.config.redis_prefix.clone();
    let ids: Vec<String> = all.iter().map(|node| node.id.clone()).collect();
    let pattern = format!("{prefix}:*");
    assert!(
        cluster
            .keys(&pattern)
            .await
            .iter()
            .any(|key| key.contains(&ids[2])),
        "the tree is there before its retention ends"
    );
    // Queue streams, the kinds and the shard count are the deployment's,
    // not the tree's: they stay.
    let infrastructure = |key: &String| {
        key.ends_with(":ready") || key.ends_with(":kinds") || key.ends_with(":queue:shards")
    };
    let left = eventually(
        Duration::from_secs(15),
        "every key of the tree to expire, on every node",
        || {
            let pattern = pattern.clone();
            async move {
                let keys = cluster.keys(&pattern).await;
                keys.iter().all(infrastructure).then_some(keys)
            }
        },
    )
    .await;
    assert!(
        !left.iter().any(|key| ids.iter().any(|id| key.contains(id))),
        "{left:?}"
    );
    platform.stop().await;
}

#[tokio::test]
async fn a_cluster_node_named_as_a_single_server_is_refused_at_start() {
    let cluster = shared_cluster();
    let env = vec![
        ("REDIS_URL".to_owned(), cluster.nodes()[0].url()),
        ("LONGRUN_REDIS_CLUSTER".to_owned(), "false".to_owned()),
        (
            "LONGRUN_JWT_SECRET".to_owned(),
            longrun_tests::SECRET.to_owned(),
        ),
        (
            "LONGRUN_REDIS_PREFIX".to_owned(),
            longrun_tests::unique_prefix(),
        ),
    ];
    let output = process::run(LONGRUN, &env, &["worker"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {stderr}");
    assert!(stderr.contains("LONGRUN_REDIS_CLUSTER=true"), "{stderr}");
}
