//! State transitions of operations, each one Lua script on the tree's slot
//! (see `shared/lua/`). Every transition bumps the operation's seq, appends
//! its event to the log and publishes it, atomically.
//!
//! The worker-side transitions are fenced: they carry the attempt number of
//! the claim, and the scripts refuse them once that claim was lost (lease
//! expired, operation cancelled or taken over by another worker). They
//! return the script's [`Outcome`] and leave its follow-ups (keys to
//! expire, finished roots) to the caller, who batches them into a
//! [`Housekeeping`](super::queue::Housekeeping) round trip.

use redis::Value;
use serde_json::Value as Json;
use uuid::Uuid;

use super::connection::add_barrier;
use super::queue::{Housekeeping, QueueEntry};
use super::scripts::{self, Outcome};
use super::{Store, StoreError, StoreResult};
use crate::kinds::{Backoff, FailurePolicy};
use crate::model::{ChildCounts, Operation, Progress, Status};

/// What the api knows about an operation it starts.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub id: String,
    pub kind: String,
    pub owner: String,
    pub input: Json,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout_ms: u64,
    pub deadline_ms: u64,
    pub policy: FailurePolicy,
    pub request_id: String,
    pub idempotency_key: Option<String>,
}

/// A new UUIDv7 operation id.
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// True for the canonical lowercase hyphenated UUID form ids take.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 36 && Uuid::try_parse(id).is_ok_and(|uuid| uuid.hyphenated().to_string() == id)
}

/// The result of a claim attempt on a queue entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// A new attempt: run the handler.
    Run(ClaimedJob),
    /// A parent whose children are done: run the handler's continuation.
    Resume(ClaimedJob),
    /// A parent still waiting for children: leave the entry pending.
    Park,
    /// Another worker holds a live lease: leave the entry alone.
    Busy,
    /// Nothing to run (terminal, deleted, stale, or failed just now): acknowledge.
    Drop,
}

/// Everything a worker needs to run one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub entry: QueueEntry,
    pub attempt: u32,
    pub kind: String,
    pub input: Json,
    pub backoff: Backoff,
    pub timeout_ms: u64,
    /// Absolute deadline in ms since the epoch (Redis clock); 0 for none.
    pub deadline_ms: u64,
    /// State the handler saved when it started waiting for children.
    pub state: Json,
    pub max_attempts: u32,
    pub request_id: String,
    /// What a failed child does to this operation.
    pub policy: FailurePolicy,
    /// Time left until the overall deadline when the claim was made
    /// (measured on the Redis clock, so workers' clocks need not agree).
    pub deadline_left_ms: Option<u64>,
}

/// How a failed attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    /// Requeued as generation `generation`, due at `due_ms` (Redis clock).
    Retry {
        generation: u64,
        due_ms: u64,
    },
    Failed,
    Fenced,
}

/// What a parent's handler does when it returns while children run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Waiting,
    Finished,
    Resume,
}

/// What a heartbeat found out about one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still held; renewed.
    Held,
    /// Lost: the lease ran out and another worker may have the operation.
    Lost,
    /// The operation is terminal (cancelled, failed by a deadline…) or gone.
    Finished,
}

/// A created child, ready to be put on the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    pub id: String,
    pub generation: u64,
}

/// Options children of one spawn batch share.
#[derive(Debug, Clone)]
pub struct ChildOptions {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout_ms: u64,
    pub policy: FailurePolicy,
}

fn json(value: &Json) -> String {
    value.to_string()
}

impl Store {
    /// Creates a root operation and queues it, in one round trip.
    pub async fn create(&self, new: &NewOperation) -> StoreResult<Operation> {
        let keys = self.keys();
        let id = new.id.as_str();
        let opts = serde_json::json!({ "backoff": new.backoff }).to_string();
        let idem = new
            .idempotency_key
            .as_deref()
            .map(|key| keys.idempotency(&new.owner, key))
            .unwrap_or_default();
        let mut args = self.base_args(id);
        args.extend([
            id.to_owned(),
            new.kind.clone(),
            new.owner.clone(),
            json(&new.input),
            new.max_attempts.to_string(),
            opts,
            new.timeout_ms.to_string(),
            new.deadline_ms.to_string(),
            new.policy.as_str().to_owned(),
            new.request_id.clone(),
            idem,
        ]);
        let now = args[2].clone();
        // On NOSCRIPT the whole pipeline is sent again: its queue entry may
        // have been read and dropped before the operation existed. A
        // duplicate entry is harmless (the claim script runs one).
        let build = || {
            let mut pipe = redis::pipe();
            scripts::CREATE.add_call(&mut pipe, keys.op(id, id), &args);
            pipe.cmd("ZADD")
                .arg(keys.owner_index(&new.owner))
                .arg(0)
                .arg(id)
                .ignore()
                .cmd("ZADD")
                .arg(keys.all_index())
                .arg(0)
                .arg(id)
                .ignore();
            // On a cluster these live on other nodes: the entry and the
            // deadline must not exist before the operation does.
            add_barrier(&mut pipe);
            self.add_entry(&mut pipe, id, id, 1);
            if new.deadline_ms > 0 {
                // Enforced by the workers' schedulers even while the
                // operation waits in the queue or for its children.
                pipe.zadd(
                    keys.deadlines(self.shard_of(id)),
                    format!("{id}|{id}"),
                    unix_ms().saturating_add(new.deadline_ms),
                )
                .ignore();
            }
            pipe
        };
        let created: (Vec<u64>,) = self.query_loading_library(build).await?;
        let seq = created.0.first().copied().unwrap_or(1);
        Ok(Operation {
            id: id.to_owned(),
            kind: new.kind.clone(),
            status: Status::Queued,
            done: false,
            progress: Progress::default(),
            attempt: 0,
            max_attempts: new.max_attempts,
            parent_id: None,
            children: ChildCounts::default(),
            result: Json::Null,
            error: None,
            created_at: now.clone(),
            started_at: None,
            finished_at: None,
            updated_at: now,
            seq,
            owner: new.owner.clone(),
        })
    }

    /// Reserves an idempotency key for `id`. Returns the id of the operation
    /// the key already started, if any.
    pub async fn reserve_idempotency_key(
        &self,
        owner: &str,
        key: &str,
        id: &str,
    ) -> StoreResult<Option<String>> {
        let name = self.keys().idempotency(owner, key);
        // Kept at least as long as a finished operation is; the worker that
        // finishes the operation shortens it to the retention from then.
        let ttl_ms = self.retention_ms().saturating_mul(2).max(60_000);
        let (set, existing): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&name)
            .arg(id)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .cmd("GET")
            .arg(&name)
            .query_async(&mut self.conn())
            .await?;
        Ok(match set {
            Some(_) => None,
            None => existing.filter(|existing| existing != id),
        })
    }

    /// Releases an idempotency key whose operation could not be created.
    pub async fn release_idempotency_key(&self, owner: &str, key: &str) -> StoreResult<()> {
        let _: () = redis::cmd("DEL")
            .arg(self.keys().idempotency(owner, key))
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Cancels an operation and its descendants. `Ok(false)` when it was
    /// already terminal; `Err` only for Redis trouble. `None` when missing.
    pub async fn cancel(&self, root: &str, id: &str, reason: &str) -> StoreResult<Option<bool>> {
        let mut args = self.base_args(root);
        args.extend([id.to_owned(), reason.to_owned()]);
        let outcome = self
            .transition(&scripts::CANCEL, root, id, &args, 0)
            .await?;
        Ok(match outcome.word.as_str() {
            "ok" => Some(true),
            "conflict" => Some(false),
            _ => None,
        })
    }

    /// Deletes a terminal operation and its subtree. `Some(false)` when it
    /// is not terminal; `None` when missing.
    pub async fn delete(&self, root: &str, id: &str, owner: &str) -> StoreResult<Option<bool>> {
        let mut args = self.base_args(root);
        args.push(id.to_owned());
        let reply = self
            .run(&scripts::DELETE, &self.keys().op(root, id), &args)
            .await?;
        let items = scripts::strings(reply)?;
        match items.first().map(String::as_str) {
            Some("ok") => {}
            Some("conflict") => return Ok(Some(false)),
            _ => return Ok(None),
        }
        let idem = items.get(1).cloned().unwrap_or_default();
        let deleted = items.get(3..).unwrap_or_default();
        let mut pipe = redis::pipe();
        for child in deleted.iter().filter(|node| node.as_str() != id) {
            pipe.del(self.keys().root_of(child)).ignore();
        }
        if !idem.is_empty() {
            pipe.del(idem).ignore();
        }
        pipe.zrem(self.keys().owner_index(owner), id).ignore();
        pipe.zrem(self.keys().all_index(), id).ignore();
        let shard = self.shard_of(id);
        pipe.zrem(self.keys().deadlines(shard), format!("{id}|{id}"))
            .ignore();
        pipe.zrem(self.keys().expiring(shard), format!("{id}{owner}"))
            .ignore();
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(Some(true))
    }

    /// Runs a transition and its follow-ups.
    pub(crate) async fn transition(
        &self,
        function: &scripts::Function,
        root: &str,
        id: &str,
        args: &[String],
        fixed: usize,
    ) -> StoreResult<Outcome> {
        let outcome = self
            .transition_only(function, root, id, args, fixed)
            .await?;
        self.follow_up(&outcome).await?;
        Ok(outcome)
    }

    /// Runs a transition; its follow-ups are the caller's.
    async fn transition_only(
        &self,
        function: &scripts::Function,
        root: &str,
        id: &str,
        args: &[String],
        fixed: usize,
    ) -> StoreResult<Outcome> {
        let reply = self.run(function, &self.keys().op(root, id), args).await?;
        Outcome::parse(reply, fixed)
    }

    /// The follow-ups of a transition, in their own round trip: keys that
    /// live outside the tree's slot (a child's root index, a root's
    /// idempotency key) get the retention TTL of the operations that just
    /// finished (the script cannot reach them on a cluster), and finished
    /// roots are scheduled to leave the list indexes when they expire.
    pub async fn follow_up(&self, outcome: &Outcome) -> StoreResult<()> {
        let mut housekeeping = Housekeeping::default();
        housekeeping.add_outcome(outcome);
        self.housekeep(&housekeeping).await
    }

    /// Claims a batch of queue entries in one round trip. Each claim comes
    /// with the script's outcome, whose follow-ups are the caller's (a
    /// claim may fail an operation that passed its deadline or ran out of
    /// attempts).
    pub async fn claim_batch(
        &self,
        entries: &[QueueEntry],
        worker: &str,
        lease_ms: u64,
    ) -> StoreResult<Vec<StoreResult<(Claim, Outcome)>>> {
        let items: Vec<_> = entries
            .iter()
            .map(|entry| {
                (
                    self.keys().op(&entry.root, &entry.op_id),
                    entry.root.clone(),
                    vec![
                        entry.op_id.clone(),
                        entry.generation.to_string(),
                        worker.to_owned(),
                        lease_ms.to_string(),
                        entry.reference().to_string(),
                    ],
                )
            })
            .collect();
        let replies = self
            .run_batch(&scripts::CLAIM, &scripts::CLAIM_BATCH, &items)
            .await?;
        Ok(entries
            .iter()
            .zip(replies)
            .map(|(entry, reply)| {
                let outcome = Outcome::parse(reply?, 11)?;
                Ok((claim_from(entry, &outcome), outcome))
            })
            .collect())
    }

    /// Renews the leases of held claims; returns, per entry, what became of it.
    pub async fn heartbeat(
        &self,
        held: &[(QueueEntry, u32)],
        lease_ms: u64,
    ) -> StoreResult<Vec<Lease>> {
        let calls: Vec<_> = held
            .iter()
            .map(|(entry, attempt)| {
                let mut args = self.base_args(&entry.root);
                args.extend([attempt.to_string(), lease_ms.to_string()]);
                (
                    &*scripts::HEARTBEAT,
                    self.keys().op(&entry.root, &entry.op_id),
                    args,
                )
            })
            .collect();
        let replies = self.run_many(&calls).await?;
        Ok(replies
            .into_iter()
            .map(|reply| match reply {
                Ok(Value::Int(1)) => Lease::Held,
                Ok(Value::Int(2)) => Lease::Finished,
                // An error: keep going; the next beat tells.
                Err(_) => Lease::Held,
                Ok(_) => Lease::Lost,
            })
            .collect())
    }

    /// Records a progress report. `Ok(None)` when fenced out.
    pub async fn progress(
        &self,
        job: &ClaimedJob,
        percent: f64,
        message: Option<&str>,
        data: &Json,
    ) -> StoreResult<Option<u64>> {
        let mut args = self.base_args(&job.entry.root);
        args.extend([
            job.entry.op_id.clone(),
            job.attempt.to_string(),
            format_percent(percent),
            json(&message.map_or(Json::Null, |m| Json::String(m.to_owned()))),
            json(data),
        ]);
        let reply = self
            .run(
                &scripts::PROGRESS,
                &self.keys().op(&job.entry.root, &job.entry.op_id),
                &args,
            )
            .await?;
        let seq: u64 = scripts::string(reply)?.parse().unwrap_or(0);
        Ok((seq > 0).then_some(seq))
    }

    /// The attempt succeeded. `final_progress` is a progress report not yet
    /// written, recorded first. Returns the outcome (word `ok` or `fenced`).
    pub async fn complete(
        &self,
        job: &ClaimedJob,
        result: &Json,
        final_progress: Option<(f64, Option<&str>, &Json)>,
    ) -> StoreResult<Outcome> {
        let mut args = self.base_args(&job.entry.root);
        args.extend(complete_args(job, result, final_progress));
        self.transition_only(
            &scripts::COMPLETE,
            &job.entry.root,
            &job.entry.op_id,
            &args,
            0,
        )
        .await
    }

    /// Records many results at once (one script call on one server); each
    /// gets its own outcome, as [`Store::complete`] gives it.
    pub async fn complete_batch(
        &self,
        done: &[Completion],
    ) -> StoreResult<Vec<StoreResult<Outcome>>> {
        let items: Vec<_> = done
            .iter()
            .map(|(job, result, progress)| {
                let progress = progress
                    .as_ref()
                    .map(|(percent, message, data)| (*percent, message.as_deref(), data));
                (
                    self.keys().op(&job.entry.root, &job.entry.op_id),
                    job.entry.root.clone(),
                    complete_args(job, result, progress),
                )
            })
            .collect();
        let replies = self
            .run_batch(&scripts::COMPLETE, &scripts::COMPLETE_BATCH, &items)
            .await?;
        Ok(replies
            .into_iter()
            .map(|reply| Outcome::parse(reply?, 0))
            .collect())
    }

    /// The attempt failed; a retryable error with attempts left is requeued
    /// (the caller puts the new generation on the queue).
    pub async fn fail(
        &self,
        job: &ClaimedJob,
        error: &crate::model::OperationError,
        retry_delay_ms: u64,
    ) -> StoreResult<(FailOutcome, Outcome)> {
        let mut args = self.base_args(&job.entry.root);
        args.extend([
            job.entry.op_id.clone(),
            job.attempt.to_string(),
            serde_json::to_string(error).map_err(|e| StoreError::data(e.to_string()))?,
            if error.retryable { "1" } else { "0" }.to_owned(),
            retry_delay_ms.to_string(),
        ]);
        let outcome = self
            .transition_only(&scripts::FAIL, &job.entry.root, &job.entry.op_id, &args, 2)
            .await?;
        let fail = match outcome.word.as_str() {
            "retry" => FailOutcome::Retry {
                generation: outcome.value(0).parse().unwrap_or(0),
                due_ms: outcome.value(1).parse().unwrap_or(0),
            },
            "failed" => FailOutcome::Failed,
            _ => FailOutcome::Fenced,
        };
        Ok((fail, outcome))
    }

    /// Gives a claimed operation back without consuming its attempt.
    /// Returns the new generation to enqueue, `None` when fenced.
    pub async fn handoff(&self, job: &ClaimedJob) -> StoreResult<Option<u64>> {
        let mut args = self.base_args(&job.entry.root);
        args.extend([job.entry.op_id.clone(), job.attempt.to_string()]);
        let outcome = self
            .transition_only(
                &scripts::HANDOFF,
                &job.entry.root,
                &job.entry.op_id,
                &args,
                1,
            )
            .await?;
        Ok((outcome.word == "ok").then(|| outcome.value(0).parse().unwrap_or(0)))
    }

    /// Creates a batch of children of a claimed parent (at most 1,000) and
    /// puts them on the queue, in one round trip. Idempotent per `batch`: a
    /// re-run gets the children the first run created (and requeues those
    /// never claimed). `None` when the parent's claim was lost (e.g. it was
    /// cancelled): nothing was created.
    pub async fn spawn(
        &self,
        parent: &ClaimedJob,
        batch: u64,
        kind: &str,
        inputs: &[Json],
        options: &ChildOptions,
    ) -> StoreResult<Option<Vec<ChildRef>>> {
        let root = &parent.entry.root;
        let ids: Vec<String> = inputs.iter().map(|_| new_id()).collect();
        let mut args = self.base_args(root);
        args.extend([
            parent.entry.op_id.clone(),
            parent.attempt.to_string(),
            batch.to_string(),
            kind.to_owned(),
            options.max_attempts.to_string(),
            serde_json::json!({ "backoff": options.backoff }).to_string(),
            options.timeout_ms.to_string(),
            options.policy.as_str().to_owned(),
            inputs.len().to_string(),
        ]);
        args.extend(ids.iter().cloned());
        args.extend(inputs.iter().map(json));
        let build = || {
            let mut pipe = redis::pipe();
            // The root index of each child exists before the child does; a
            // dangling one (if the script refuses) is removed below.
            let backstop_ms = self.retention_ms().saturating_mul(2).max(60_000) + 7 * 86_400_000;
            for id in &ids {
                pipe.cmd("SET")
                    .arg(self.keys().root_of(id))
                    .arg(root)
                    .arg("PX")
                    .arg(backstop_ms)
                    .ignore();
            }
            add_barrier(&mut pipe);
            scripts::SPAWN.add_call(&mut pipe, self.keys().op(root, &parent.entry.op_id), &args);
            // Queue entries for the new children, in the same round trip;
            // an entry of a child never created is dropped at claim time.
            add_barrier(&mut pipe);
            for id in &ids {
                self.add_entry(&mut pipe, root, id, 1);
            }
            pipe
        };
        let (reply,): (Value,) = self.query_loading_library(build).await?;
        let outcome = Outcome::parse(reply, 1)?;
        let children = spawned_children(outcome.value(0));
        if outcome.word != "ok" {
            // Refused, or a re-run that got the first run's children: the
            // root indexes of this call's ids point at nothing.
            let mut cleanup = redis::pipe();
            for id in &ids {
                cleanup.del(self.keys().root_of(id)).ignore();
            }
            let _: () = cleanup.query_async(&mut self.conn()).await?;
        }
        match outcome.word.as_str() {
            "ok" => Ok(Some(children)),
            "again" => {
                let requeue: Vec<(&str, &str, u64)> = children
                    .iter()
                    .map(|child| (root.as_str(), child.id.as_str(), child.generation))
                    .collect();
                self.enqueue(&requeue).await?;
                Ok(Some(children))
            }
            _ => Ok(None),
        }
    }

    /// The parent's handler returned while children run: park it. Returns how
    /// it settled, or `None` when fenced.
    pub async fn wait_for_children(
        &self,
        job: &ClaimedJob,
        resume: bool,
        state: &Json,
    ) -> StoreResult<Option<(Settled, Outcome)>> {
        let mut args = self.base_args(&job.entry.root);
        args.extend([
            job.entry.op_id.clone(),
            job.attempt.to_string(),
            if resume { "1" } else { "0" }.to_owned(),
            json(state),
        ]);
        let outcome = self
            .transition_only(
                &scripts::WAIT_CHILDREN,
                &job.entry.root,
                &job.entry.op_id,
                &args,
                1,
            )
            .await?;
        if outcome.word != "ok" {
            return Ok(None);
        }
        let settled = match outcome.value(0) {
            "finished" => Settled::Finished,
            "resume" => Settled::Resume,
            _ => Settled::Waiting,
        };
        Ok(Some((settled, outcome)))
    }
}

/// Reads the "id generation id generation …" list a spawn reply carries.
fn spawned_children(pairs: &str) -> Vec<ChildRef> {
    let words: Vec<&str> = pairs.split_whitespace().collect();
    words
        .chunks_exact(2)
        .map(|pair| ChildRef {
            id: pair[0].to_owned(),
            generation: pair[1].parse().unwrap_or(1),
        })
        .collect()
}

fn claim_from(entry: &QueueEntry, outcome: &Outcome) -> Claim {
    let job = || ClaimedJob {
        entry: entry.clone(),
        attempt: outcome.value(0).parse().unwrap_or(1),
        kind: outcome.value(1).to_owned(),
        input: serde_json::from_str(outcome.value(2)).unwrap_or(Json::Null),
        backoff: serde_json::from_str::<Json>(outcome.value(3))
            .ok()
            .and_then(|opts| serde_json::from_value(opts["backoff"].clone()).ok())
            .unwrap_or_default(),
        timeout_ms: outcome.value(4).parse().unwrap_or(0),
        deadline_ms: outcome.value(5).parse().unwrap_or(0),
        state: serde_json::from_str(outcome.value(6)).unwrap_or(Json::Null),
        max_attempts: outcome.value(7).parse().unwrap_or(1),
        request_id: outcome.value(8).to_owned(),
        policy: parse_policy(outcome.value(9)),
        deadline_left_ms: outcome
            .value(10)
            .parse::<i64>()
            .ok()
            .and_then(|left| u64::try_from(left).ok()),
    };
    match outcome.word.as_str() {
        "run" => Claim::Run(job()),
        "resume" => Claim::Resume(job()),
        "park" => Claim::Park,
        "busy" => Claim::Busy,
        _ => Claim::Drop,
    }
}

fn parse_policy(name: &str) -> FailurePolicy {
    match name {
        "fail_fast" => FailurePolicy::FailFast,
        "ignore_failures" => FailurePolicy::IgnoreFailures,
        _ => FailurePolicy::WaitAll,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// Percent as a JSON number: finite, within 0..=100.
fn format_percent(percent: f64) -> String {
    let clamped = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    let rounded = (clamped * 1000.0).round() / 1000.0;
    rounded.to_string()
}

/// A finished job for [`Store::complete_batch`]: the job, its result and
/// its last progress report not written yet (percent, message, data).
pub type Completion = (ClaimedJob, Json, Option<(f64, Option<String>, Json)>);

/// `complete.lua`'s own arguments (after the common four).
fn complete_args(
    job: &ClaimedJob,
    result: &Json,
    final_progress: Option<(f64, Option<&str>, &Json)>,
) -> Vec<String> {
    let mut args = vec![
        job.entry.op_id.clone(),
        job.attempt.to_string(),
        json(result),
    ];
    match final_progress {
        Some((percent, message, data)) => args.extend([
            format_percent(percent),
            json(&message.map_or(Json::Null, |m| Json::String(m.to_owned()))),
            json(data),
        ]),
        None => args.extend([String::new(), "null".into(), "null".into()]),
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_canonical_uuids() {
        let id = new_id();
        assert!(is_valid_id(&id));
        assert!(!is_valid_id(&id.to_uppercase()));
        assert!(!is_valid_id("lr:{x}:op"));
        assert!(!is_valid_id(""));
    }

    #[test]
    fn percent_is_clamped_and_finite() {
        assert_eq!(format_percent(42.5), "42.5");
        assert_eq!(format_percent(f64::NAN), "0");
        assert_eq!(format_percent(250.0), "100");
        assert_eq!(format_percent(-3.0), "0");
        assert_eq!(format_percent(100.0 / 3.0), "33.333");
    }
}
