//! The soak's load: a steady stream of short `demo.sleep` starts (some of
//! them cancelled while they run) and a `demo.fanout` every few seconds,
//! spread over the owners. Every operation is long-polled (`/wait`) until
//! it is terminal, so the counters say how many ended and how, and every
//! new id is offered to the per-operation WebSocket followers ([`Feed`]).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::http_load::{Api, Started};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Plan {
    pub starts_per_s: f64,
    /// Percent of the sleeps that are cancelled while they run.
    pub cancel_percent: u32,
    pub fanout_every: Duration,
    /// Children of each fan-out, drawn from this range (inclusive).
    pub fanout_children: (u32, u32),
    /// Every n-th fan-out is cancelled a second after its start (0: none).
    pub fanout_cancel_every: u64,
}

/// What happened to the operations so far (roots: sleeps and fan-out parents).
#[derive(Debug, Default)]
pub struct Counters {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub cancelled: AtomicU64,
    pub start_errors: AtomicU64,
    pub cancel_requests: AtomicU64,
    /// Long polls that failed (each is retried).
    pub wait_errors: AtomicU64,
    pub fanouts: AtomicU64,
    pub children_started: AtomicU64,
    pub children_finished: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    fn finish(&self, status: &str) {
        add(&self.finished, 1);
        match status {
            "succeeded" => add(&self.succeeded, 1),
            "cancelled" => add(&self.cancelled, 1),
            _ => add(&self.failed, 1),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "started": get(&self.started),
            "finished": get(&self.finished),
            "not_terminal": get(&self.started).saturating_sub(get(&self.finished)),
            "succeeded": get(&self.succeeded),
            "cancelled": get(&self.cancelled),
            "failed": get(&self.failed),
            "start_errors": get(&self.start_errors),
            "cancel_requests": get(&self.cancel_requests),
            "wait_errors": get(&self.wait_errors),
            "fanouts": get(&self.fanouts),
            "children_started": get(&self.children_started),
            "children_finished": get(&self.children_finished),
        })
    }
}

/// The newest operations of each owner, numbered, for the followers.
#[derive(Debug)]
pub struct Feed {
    owners: Vec<Mutex<VecDeque<(u64, String)>>>,
    next: AtomicU64,
}

/// Operations kept per owner: followers only take the newest.
const FEED_DEPTH: usize = 8;

impl Feed {
    pub fn new(owners: usize) -> Feed {
        Feed {
            owners: (0..owners).map(|_| Mutex::default()).collect(),
            next: AtomicU64::new(0),
        }
    }

    fn offer(&self, owner: usize, id: &str) {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut recent) = self.owners[owner].lock() {
            recent.push_back((number, id.to_owned()));
            if recent.len() > FEED_DEPTH {
                recent.pop_front();
            }
        }
    }

    /// The owner's newest operation numbered `from` or later.
    pub fn newest_from(&self, owner: usize, from: u64) -> Option<(u64, String)> {
        let recent = self.owners[owner].lock().ok()?;
        recent.back().filter(|(number, _)| *number >= from).cloned()
    }
}

/// Everything the load's tasks share.
#[derive(Debug)]
pub struct Load {
    pub api: Api,
    /// One token per owner.
    pub tokens: Vec<String>,
    pub counters: Arc<Counters>,
    pub feed: Arc<Feed>,
    pub plan: Plan,
}

/// Starts operations until `until`; returns the tasks still following theirs.
pub async fn drive(load: Arc<Load>, until: Instant) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let mut starts = tokio::time::interval(Duration::from_secs_f64(1.0 / load.plan.starts_per_s));
    let mut fanouts = tokio::time::interval(load.plan.fanout_every);
    starts.set_missed_tick_behavior(MissedTickBehavior::Delay);
    fanouts.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut sleeps, mut parents) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => return tasks,
            _ = starts.tick() => {
                tasks.spawn(sleep_operation(load.clone(), sleeps));
                sleeps += 1;
            }
            _ = fanouts.tick() => {
                tasks.spawn(fanout_operation(load.clone(), parents));
                parents += 1;
            }
        }
        // Reap what finished, so a long run holds only what is in flight.
        while tasks.try_join_next().is_some() {}
    }
}

/// One `demo.sleep`; a `cancel_percent` share runs 5 s and is cancelled early.
async fn sleep_operation(load: Arc<Load>, number: u64) {
    let owner = (number % load.tokens.len() as u64) as usize;
    let (input, cancel_after) = {
        let mut rng = rand::rng();
        if rng.random_range(0..100) < load.plan.cancel_percent {
            let after = Duration::from_millis(rng.random_range(300..1_500));
            (json!({"duration_ms": 5_000, "steps": 10}), Some(after))
        } else {
            let duration: u64 = rng.random_range(200..2_000);
            (json!({"duration_ms": duration, "steps": 5}), None)
        }
    };
    let Some(id) = load.start(owner, "demo.sleep", &input).await else {
        return;
    };
    if let Some(after) = cancel_after {
        tokio::time::sleep(after).await;
        load.cancel(owner, &id).await;
    }
    if let Some(done) = load.until_done(owner, &id).await {
        load.counters.finish(done["status"].as_str().unwrap_or("?"));
    }
}

/// One `demo.fanout` of 100 ms children; every n-th is cancelled after 1 s.
async fn fanout_operation(load: Arc<Load>, number: u64) {
    let owner = (number.wrapping_mul(7) % load.tokens.len() as u64) as usize;
    let (low, high) = load.plan.fanout_children;
    let children = rand::rng().random_range(low..=high.max(low));
    let input = json!({"children": children, "child_duration_ms": 100, "child_steps": 1});
    let Some(id) = load.start(owner, "demo.fanout", &input).await else {
        return;
    };
    add(&load.counters.fanouts, 1);
    add(&load.counters.children_started, u64::from(children));
    let every = load.plan.fanout_cancel_every;
    if every > 0 && number % every == every - 1 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        load.cancel(owner, &id).await;
    }
    let Some(done) = load.until_done(owner, &id).await else {
        return;
    };
    load.counters.finish(done["status"].as_str().unwrap_or("?"));
    let finished = load.children_finished(owner, &id, done).await;
    add(&load.counters.children_finished, finished);
}

impl Load {
    async fn start(&self, owner: usize, kind: &str, input: &Value) -> Option<String> {
        match self.api.start(&self.tokens[owner], kind, input).await {
            Started::Accepted { id, .. } => {
                add(&self.counters.started, 1);
                self.feed.offer(owner, &id);
                Some(id)
            }
            Started::Refused { .. } | Started::Failed => {
                add(&self.counters.start_errors, 1);
                None
            }
        }
    }

    async fn cancel(&self, owner: usize, id: &str) {
        if self.api.cancel(&self.tokens[owner], id).await.is_ok() {
            add(&self.counters.cancel_requests, 1);
        }
    }

    /// Long-polls until the operation is done (at most 10 minutes).
    async fn until_done(&self, owner: usize, id: &str) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            match self.api.wait(&self.tokens[owner], id, 30_000).await {
                Ok(resource) if resource["done"] == true => return Some(resource),
                Ok(_) => {}
                Err(_) => {
                    add(&self.counters.wait_errors, 1);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        None
    }

    /// Children of a done parent that are terminal; a cancelled parent's
    /// children may still be stopping, so they get up to 30 s.
    async fn children_finished(&self, owner: usize, id: &str, mut parent: Value) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = &parent["children"];
            let total = counts["total"].as_u64().unwrap_or(0);
            let finished = ["succeeded", "failed", "cancelled"]
                .iter()
                .map(|status| counts[*status].as_u64().unwrap_or(0))
                .sum::<u64>();
            if finished >= total || Instant::now() >= deadline {
                return finished;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.api.get(&self.tokens[owner], id).await {
                Ok(resource) => parent = resource,
                Err(_) => return finished,
            }
        }
    }
}
