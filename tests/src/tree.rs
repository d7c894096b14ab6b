//! Reading whole operations for assertions: every event of an operation,
//! every node of a tree.

use std::time::Duration;

use longrun_client::Client;
use longrun_shared::model::{Event, EventType, Operation};

/// Every event of an operation, in order.
pub async fn events(client: &Client, id: &str) -> Vec<Event> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = client.events(id, after, 1_000).await.expect("events read");
        if page.events.is_empty() {
            return all;
        }
        after = page.next_seq;
        all.extend(page.events);
    }
}

/// How many events of `event_type` an operation's log holds.
pub fn count(events: &[Event], event_type: EventType) -> usize {
    events
        .iter()
        .filter(|event| event.event_type == event_type)
        .count()
}

/// Every child of an operation, in creation order.
pub async fn children(client: &Client, id: &str) -> Vec<Operation> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = client
            .children(id, cursor.as_deref(), 1_000)
            .await
            .expect("children read");
        all.extend(page.operations);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// The root and every descendant, breadth first.
pub async fn nodes(client: &Client, root: &str) -> Vec<Operation> {
    let mut all = vec![client.get(root).await.expect("root read")];
    let mut index = 0;
    while index < all.len() {
        if all[index].children.total > 0 {
            let id = all[index].id.clone();
            all.extend(children(client, &id).await);
        }
        index += 1;
    }
    all
}

/// Waits until every node of the tree is terminal; returns them.
pub async fn wait_tree_done(client: &Client, root: &str, limit: Duration) -> Vec<Operation> {
    let deadline = tokio::time::Instant::now() + limit;
    let root_done = client.wait(root, limit).await.expect("root waited");
    assert!(
        root_done.done,
        "the root finished within {limit:?}: {root_done:?}"
    );
    loop {
        let all = nodes(client, root).await;
        if all.iter().all(|node| node.done) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes still not terminal: {:?}",
            all.iter()
                .filter(|node| !node.done)
                .map(|node| (&node.id, node.status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Milliseconds between two RFC 3339 timestamps (`b` - `a`).
pub fn ms_between(a: &str, b: &str) -> i64 {
    let parse = |t: &str| humantime::parse_rfc3339(t).expect("an RFC 3339 timestamp");
    let (a, b) = (parse(a), parse(b));
    match b.duration_since(a) {
        Ok(later) => later.as_millis() as i64,
        Err(earlier) => -(earlier.duration().as_millis() as i64),
    }
}
