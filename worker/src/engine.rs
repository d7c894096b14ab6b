//! The engine: takes work from the queue, runs handlers, reports outcomes.
//!
//! One worker process runs these tasks around a shared [`Engine`]:
//!
//! - **intake** reads new queue entries (as many as there are free slots)
//!   and claims them in one pipelined round trip;
//! - **reaper** takes over entries whose worker stopped renewing its lease
//!   (`XAUTOCLAIM`); the claim script turns them into a `retrying` event and
//!   a new attempt, or drops them when they are already done;
//! - **heartbeat** renews the leases of running jobs; a job whose claim was
//!   lost is told to stop;
//! - **scheduler** moves retries whose backoff is over onto the queue,
//!   sleeping until the earliest one is due;
//! - **cancel listener** fires the cancellation token of running handlers
//!   named on the cancel channel, whichever process cancelled them;
//! - **acker** acknowledges handled entries in batches.
//!
//! Each job runs its handler in a task of its own, so a timeout, a
//! cancellation or a shutdown can abort it after its grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use longrun_shared::config::WorkerConfig;
use longrun_shared::model::OperationError;
use longrun_shared::store::Outcome as ScriptOutcome;
use longrun_shared::store::queue::QueueEntry;
use longrun_shared::store::transitions::{Claim, ClaimedJob, FailOutcome, Settled};
use longrun_shared::{Store, store::StoreResult};
use rand::Rng;
use redis::AsyncCommands;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::context::{JobContext, redis_error};
use crate::handler::{JobError, Outcome, Registry};

/// Entries read per intake round trip, at most.
pub(crate) const MAX_BATCH: usize = 256;
/// How long one blocking read waits for work.
pub(crate) const READ_BLOCK_MS: u64 = 1_000;
/// Grace a handler gets when the process hands its work back on shutdown.
const HAND_BACK_GRACE: Duration = Duration::from_millis(500);

/// Why a running handler was told to stop.
mod reason {
    pub const CANCELLED: &str = "cancelled";
    pub const LOST_CLAIM: &str = "lost_claim";
    pub const TIMEOUT: &str = "timeout";
    pub const DEADLINE: &str = "deadline_exceeded";
    pub const SHUTDOWN: &str = "shutdown";
}

/// The state every task of one worker process shares.
pub struct Engine {
    store: Store,
    registry: Arc<Registry>,
    config: WorkerConfig,
    consumer: String,
    slots: Arc<Semaphore>,
    running: std::sync::Mutex<HashMap<String, JobContext>>,
    acks: mpsc::UnboundedSender<String>,
    delayed_wake: Notify,
    /// Fired when the shutdown grace is over: running jobs hand their work back.
    hand_back: CancellationToken,
    jobs: std::sync::Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        store: Store,
        registry: Registry,
        config: WorkerConfig,
        acks: mpsc::UnboundedSender<String>,
    ) -> Arc<Engine> {
        let consumer = config.worker_id.clone().unwrap_or_else(default_worker_id);
        Arc::new(Engine {
            slots: Arc::new(Semaphore::new(config.concurrency)),
            store,
            registry: Arc::new(registry),
            consumer,
            config,
            running: std::sync::Mutex::new(HashMap::new()),
            acks,
            delayed_wake: Notify::new(),
            hand_back: CancellationToken::new(),
            jobs: std::sync::Mutex::new(JoinSet::new()),
        })
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, JobContext>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of jobs this process runs right now.
    pub fn in_flight(&self) -> usize {
        self.running().len()
    }

    fn ack(&self, entry: &QueueEntry) {
        let _ = self.acks.send(entry.entry_id.clone());
    }

    /// Claims entries and starts a job for each one that runs.
    pub(crate) async fn dispatch(self: &Arc<Self>, entries: Vec<QueueEntry>) {
        if entries.is_empty() {
            return;
        }
        let claims = match self
            .store
            .claim_batch(&entries, &self.consumer, self.lease_ms())
            .await
        {
            Ok(claims) => claims,
            Err(err) => {
                // The entries stay pending; a reaper retries them after the lease.
                warn!(error = %err, "claiming failed");
                return;
            }
        };
        for (entry, claim) in entries.iter().zip(claims) {
            match claim {
                Ok(Claim::Run(job)) => self.start(job, false),
                Ok(Claim::Resume(job)) => self.start(job, true),
                Ok(Claim::Drop) => self.ack(entry),
                Ok(Claim::Park | Claim::Busy) => {}
                Err(err) => warn!(operation_id = %entry.op_id, error = %err, "claim failed"),
            }
        }
    }

    fn start(self: &Arc<Self>, job: ClaimedJob, resume: bool) {
        let ctx = JobContext::new(self.store.clone(), self.registry.clone(), job);
        self.running().insert(ctx.id().to_owned(), ctx.clone());
        metrics::gauge!("longrun_worker_jobs_in_flight").set(self.in_flight() as f64);
        let span = info_span!(
            "job",
            operation_id = %ctx.id(),
            kind = %ctx.job().kind,
            attempt = ctx.attempt(),
            request_id = %ctx.request_id(),
        );
        let engine = self.clone();
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while jobs.try_join_next().is_some() {}
        jobs.spawn(
            async move {
                let Ok(_slot) = engine.slots.clone().acquire_owned().await else {
                    return;
                };
                engine.execute(&ctx, resume).await;
                let mut running = engine.running();
                // A resumed parent may already run under the same id.
                if running
                    .get(ctx.id())
                    .is_some_and(|current| current.same(&ctx))
                {
                    running.remove(ctx.id());
                }
                drop(running);
                metrics::gauge!("longrun_worker_jobs_in_flight").set(engine.in_flight() as f64);
            }
            .instrument(span),
        );
    }

    /// Runs one attempt (or a parent's continuation) to its outcome.
    async fn execute(self: &Arc<Self>, ctx: &JobContext, resume: bool) {
        let job = ctx.job().clone();
        let started = std::time::Instant::now();
        let Some(handler) = self.registry.get(&job.kind) else {
            let error =
                JobError::permanent("unknown_kind", format!("no worker runs `{}`", job.kind));
            self.settle_failure(ctx, &error).await;
            return;
        };
        debug!(resume, "job started");
        let flusher = ctx.start_flusher();
        let (input, state) = (job.input.clone(), job.state.clone());
        let task_ctx = ctx.clone();
        let mut task: JoinHandle<Result<Outcome, JobError>> = tokio::spawn(
            async move {
                if resume {
                    handler.resume(task_ctx, input, state).await
                } else {
                    handler.run(task_ctx, input).await
                }
            }
            .in_current_span(),
        );
        let (limit, limit_reason) = self.time_limit(&job);
        let stopped = tokio::select! {
            joined = &mut task => {
                flusher.stop().await;
                let result = joined.unwrap_or_else(|err| Err(panicked(err)));
                self.settle(ctx, result).await;
                record(&job.kind, started, "finished");
                return;
            }
            _ = tokio::time::sleep(limit) => { ctx.cancel(limit_reason); limit_reason.to_owned() }
            _ = ctx.cancelled() => ctx.cancel_reason().unwrap_or_else(|| reason::CANCELLED.into()),
            _ = self.hand_back.cancelled() => { ctx.cancel(reason::SHUTDOWN); reason::SHUTDOWN.into() }
        };
        let grace = if stopped == reason::SHUTDOWN {
            HAND_BACK_GRACE
        } else {
            self.config.cancel_grace
        };
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            warn!(reason = %stopped, "handler did not stop within its grace period; aborted");
        }
        flusher.stop().await;
        record(&job.kind, started, &stopped);
        match stopped.as_str() {
            reason::TIMEOUT => {
                let error = JobError::retryable(
                    "timeout",
                    format!(
                        "the attempt ran longer than its timeout of {} ms",
                        job.timeout_ms
                    ),
                );
                self.settle_failure(ctx, &error).await;
            }
            reason::DEADLINE => {
                let error =
                    JobError::permanent("deadline_exceeded", "the operation passed its deadline");
                self.settle_failure(ctx, &error).await;
            }
            reason::SHUTDOWN => self.hand_back(ctx).await,
            // Cancelled: the operation is terminal, the entry is done with.
            reason::CANCELLED => self.ack(&job.entry),
            // Lost claim: another worker may hold this very entry; leave it.
            _ => {}
        }
    }

    /// The time this attempt may still run, and what passing it means.
    fn time_limit(&self, job: &ClaimedJob) -> (Duration, &'static str) {
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);
        let attempt = (job.timeout_ms > 0).then(|| Duration::from_millis(job.timeout_ms));
        let deadline = (job.deadline_ms > 0)
            .then(|| Duration::from_millis(job.deadline_ms.saturating_sub(unix_ms())));
        match (attempt, deadline) {
            (Some(a), Some(d)) if d < a => (d, reason::DEADLINE),
            (Some(a), _) => (a, reason::TIMEOUT),
            (None, Some(d)) => (d, reason::DEADLINE),
            (None, None) => (FOREVER, reason::TIMEOUT),
        }
    }

    async fn settle(self: &Arc<Self>, ctx: &JobContext, result: Result<Outcome, JobError>) {
        let job = ctx.job();
        match result {
            Ok(Outcome::Done(value)) => {
                let pending = ctx.take_pending();
                let final_progress = pending
                    .as_ref()
                    .map(|report| (report.percent, report.message.as_deref(), &report.data));
                match self.store.complete(job, &value, final_progress).await {
                    Ok(outcome) if outcome.word == "ok" => {
                        self.ack(&job.entry);
                        self.after(&outcome).await;
                    }
                    Ok(_) => debug!("result refused: the claim was lost"),
                    Err(err) => {
                        warn!(error = %err, "could not record the result; the lease will expire")
                    }
                }
            }
            Ok(Outcome::WaitForChildren { resume, state }) => {
                self.flush_pending(ctx).await;
                match self.store.wait_for_children(job, resume, &state).await {
                    Ok(Some((settled, outcome))) => {
                        match settled {
                            Settled::Waiting => {}
                            Settled::Finished => self.ack(&job.entry),
                            Settled::Resume => {}
                        }
                        self.after(&outcome).await;
                    }
                    Ok(None) => debug!("wait refused: the claim was lost"),
                    Err(err) => warn!(error = %err, "could not park; the lease will expire"),
                }
            }
            Err(error) => {
                self.flush_pending(ctx).await;
                self.settle_failure(ctx, &error).await;
            }
        }
    }

    async fn flush_pending(&self, ctx: &JobContext) {
        if let Some(report) = ctx.take_pending() {
            let _ = self
                .store
                .progress(
                    ctx.job(),
                    report.percent,
                    report.message.as_deref(),
                    &report.data,
                )
                .await;
        }
    }

    async fn settle_failure(self: &Arc<Self>, ctx: &JobContext, error: &JobError) {
        let job = ctx.job();
        let delay = job
            .backoff
            .delay_ms(job.attempt, rand::rng().random::<f64>());
        let operation_error: OperationError = error.to_operation_error();
        match self.store.fail(job, &operation_error, delay).await {
            Ok((FailOutcome::Retry { generation, due_ms }, outcome)) => {
                let requeued = if delay == 0 {
                    self.store
                        .enqueue(&[(&job.entry.root, &job.entry.op_id, generation)])
                        .await
                } else {
                    let result = self
                        .store
                        .delay(&job.entry.root, &job.entry.op_id, generation, due_ms)
                        .await;
                    self.delayed_wake.notify_one();
                    result
                };
                match requeued {
                    // The old entry is acknowledged only once the new one exists.
                    Ok(()) => self.ack(&job.entry),
                    Err(err) => warn!(error = %err, "could not requeue; the reaper will"),
                }
                self.after(&outcome).await;
            }
            Ok((FailOutcome::Failed, outcome)) => {
                info!(code = %error.code, "operation failed: {}", error.message);
                self.ack(&job.entry);
                self.after(&outcome).await;
            }
            Ok((FailOutcome::Fenced, _)) => debug!("failure refused: the claim was lost"),
            Err(err) => warn!(error = %err, "could not record the failure; the lease will expire"),
        }
    }

    /// Gives the operation back without consuming its attempt (shutdown).
    async fn hand_back(&self, ctx: &JobContext) {
        let job = ctx.job();
        match self.store.handoff(job).await {
            Ok(Some(generation)) => {
                match self
                    .store
                    .enqueue(&[(&job.entry.root, &job.entry.op_id, generation)])
                    .await
                {
                    Ok(()) => self.ack(&job.entry),
                    Err(err) => {
                        warn!(error = %err, "handed back, but could not requeue; the reaper will")
                    }
                }
            }
            Ok(None) => {}
            Err(err) => {
                warn!(error = %err, "could not hand the operation back; its lease will expire")
            }
        }
    }

    /// Follow-ups of a transition: parents whose handler resumes now.
    async fn after(self: &Arc<Self>, outcome: &ScriptOutcome) {
        for (parent, entry_id) in &outcome.ready_parents {
            match self.store.take_entry(&self.consumer, entry_id).await {
                Ok(Some(entry)) => self.dispatch(vec![entry]).await,
                Ok(None) => debug!(parent = %parent, "parked entry already taken"),
                Err(err) => {
                    warn!(parent = %parent, error = %err, "could not resume; the reaper will")
                }
            }
        }
    }

    /// Tells running handlers of these operations to stop.
    pub(crate) fn cancel_running(&self, ids: &str) {
        let running = self.running();
        for id in ids.split_whitespace() {
            if let Some(ctx) = running.get(id) {
                ctx.cancel(reason::CANCELLED);
            }
        }
    }

    /// Renews the leases of running jobs; stops the ones whose claim is gone.
    pub(crate) async fn renew_leases(&self) -> StoreResult<()> {
        let held: Vec<JobContext> = self.running().values().cloned().collect();
        if held.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(QueueEntry, u32)> = held
            .iter()
            .map(|ctx| (ctx.job().entry.clone(), ctx.attempt()))
            .collect();
        let alive = self.store.heartbeat(&pairs, self.lease_ms()).await?;
        let mut kept = Vec::new();
        for (ctx, ok) in held.iter().zip(alive) {
            if ok {
                kept.push(ctx.job().entry.entry_id.as_str());
            } else if !ctx.is_cancelled() {
                ctx.cancel(reason::LOST_CLAIM);
            }
        }
        self.store.touch(&self.consumer, &kept).await
    }

    pub(crate) async fn wait_for_due_retry(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.delayed_wake.notified() => {}
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn slots(&self) -> &Arc<Semaphore> {
        &self.slots
    }

    pub(crate) fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Waits for running jobs to finish within `grace`, then makes the rest
    /// hand their work back, and waits for that.
    pub(crate) async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.in_flight() > 0 {
            info!(
                jobs = self.in_flight(),
                "grace period over; handing work back"
            );
        }
        self.hand_back.cancel();
        let mut jobs = std::mem::take(
            &mut *self
                .jobs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while jobs.join_next().await.is_some() {}
    }

    /// Advertises this worker's kinds so the api can accept them.
    pub(crate) async fn advertise_kinds(&self) -> StoreResult<()> {
        let mut conn = self.store.conn();
        for spec in self.registry.specs() {
            let json = serde_json::to_string(&spec).unwrap_or_default();
            let _: () = conn
                .hset(self.store.keys().kinds(), &spec.kind, json)
                .await?;
        }
        Ok(())
    }
}

fn panicked(err: tokio::task::JoinError) -> JobError {
    if err.is_cancelled() {
        JobError::retryable("aborted", "the handler was aborted")
    } else {
        JobError::retryable("panic", "the handler panicked")
    }
}

fn record(kind: &str, started: std::time::Instant, how: &str) {
    metrics::histogram!("longrun_worker_job_seconds", "kind" => kind.to_owned(), "end" => how.to_owned())
        .record(started.elapsed().as_secs_f64());
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::rng().random::<u16>()
    )
}

/// Converts a Redis error for a handler.
pub(crate) fn job_error(err: impl std::fmt::Display) -> JobError {
    redis_error(err)
}
