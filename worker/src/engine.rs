//! The engine: takes work from the queue, runs handlers, reports outcomes.
//!
//! One worker process runs these tasks around a shared [`Engine`] (see
//! [`crate::loops`]):
//!
//! - **intake** reads new queue entries (as many as there are free slots,
//!   which it holds) and claims them in one pipelined round trip; the same
//!   round trip as the read carries the housekeeping of finished jobs
//!   (acknowledgements, TTLs), so a no-op job costs three round trips:
//!   read, claim, complete. Every quarter lease it first reaps: takes over
//!   entries whose worker stopped renewing its lease (`XAUTOCLAIM`); the
//!   claim script turns them into a `retrying` event and a new attempt, or
//!   drops them when they are already done;
//! - **heartbeat** renews the leases of running jobs; a job whose claim was
//!   lost, or whose operation was finished by someone else, is told to stop;
//! - **scheduler** moves retries whose backoff is over onto the queue,
//!   enforces overall deadlines and removes expired operations from the
//!   list indexes, sleeping until the earliest one is due;
//! - **cancel listener** fires the cancellation token of running handlers
//!   named on the cancel channel, whichever process cancelled them;
//! - **housekeeper** sends the housekeeping batch when no read carried it.
//!
//! Each job runs its handler in a task of its own, so a timeout, a
//! cancellation or a shutdown can abort it after its grace period.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use longrun_shared::config::WorkerConfig;
use longrun_shared::model::OperationError;
use longrun_shared::store::Outcome as ScriptOutcome;
use longrun_shared::store::connection::retry_delay;
use longrun_shared::store::queue::{EntryRef, Housekeeping, QueueEntry};
use longrun_shared::store::transitions::{Claim, ClaimedJob, FailOutcome, Lease, Settled};
use longrun_shared::{Store, store::StoreError, store::StoreResult};
use rand::Rng;
use redis::AsyncCommands;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::completer::Completer;
use crate::context::JobContext;
use crate::handler::{JobError, Outcome, Registry};

/// Entries read per intake round trip, at most.
pub(crate) const MAX_BATCH: usize = 256;
/// How long one blocking read waits for work.
pub(crate) const READ_BLOCK_MS: u64 = 1_000;
/// Grace a handler gets when the process hands its work back on shutdown
/// (at most half the shutdown grace).
const HAND_BACK_GRACE: Duration = Duration::from_millis(500);
/// How long a cancel signal for an operation not (yet) running here is
/// remembered, for a claim whose reply was still on its way.
const SIGNAL_MEMORY: Duration = Duration::from_secs(30);

/// Why a running handler was told to stop.
pub(crate) mod reason {
    pub const CANCELLED: &str = "cancelled";
    pub const LOST_CLAIM: &str = "lost_claim";
    pub const TIMEOUT: &str = "timeout";
    pub const DEADLINE: &str = "deadline_exceeded";
    pub const SHUTDOWN: &str = "shutdown";
}

/// The jobs of this process, and the cancel signals that arrived for
/// operations not registered yet. One lock for both, so a signal and a
/// registration cannot pass each other.
#[derive(Default)]
struct Jobs {
    running: HashMap<String, JobContext>,
    signals: HashMap<String, Instant>,
}

/// The state every task of one worker process shares.
pub struct Engine {
    store: Store,
    /// Records the results of jobs that finish together in one call.
    completer: Completer,
    registry: Arc<Registry>,
    config: WorkerConfig,
    consumer: String,
    slots: Arc<Semaphore>,
    jobs: std::sync::Mutex<Jobs>,
    housekeeping: std::sync::Mutex<Housekeeping>,
    housekeeping_wake: Notify,
    delayed_wake: Notify,
    /// Set once the cancel listener is subscribed.
    listening: AtomicBool,
    listening_wake: Notify,
    /// Fired when the process stops claiming work.
    stopping: CancellationToken,
    /// Fired when the shutdown grace is over: running jobs hand their work back.
    hand_back: CancellationToken,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Engine {
    pub(crate) fn new(store: Store, registry: Registry, config: WorkerConfig) -> Arc<Engine> {
        let consumer = config.worker_id.clone().unwrap_or_else(default_worker_id);
        Arc::new(Engine {
            slots: Arc::new(Semaphore::new(config.concurrency)),
            completer: Completer::start(store.clone()),
            store,
            registry: Arc::new(registry),
            consumer,
            config,
            jobs: std::sync::Mutex::new(Jobs::default()),
            housekeeping: std::sync::Mutex::new(Housekeeping::default()),
            housekeeping_wake: Notify::new(),
            delayed_wake: Notify::new(),
            listening: AtomicBool::new(false),
            listening_wake: Notify::new(),
            stopping: CancellationToken::new(),
            hand_back: CancellationToken::new(),
            tasks: std::sync::Mutex::new(JoinSet::new()),
        })
    }

    /// This process's consumer name in the queue's group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }

    /// Number of jobs this process holds right now (running or about to).
    pub fn in_flight(&self) -> usize {
        lock(&self.jobs).running.len()
    }

    // ----- housekeeping -------------------------------------------------

    /// Acknowledges a handled queue entry (batched).
    fn ack(&self, entry: &QueueEntry) {
        self.housekeep(|batch| batch.acks.push(entry.reference()));
    }

    /// Queues the follow-ups of a transition (batched).
    fn follow_up(&self, outcome: &ScriptOutcome) {
        if outcome.expire_keys.is_empty()
            && outcome.finished_roots.is_empty()
            && outcome.acks.is_empty()
        {
            return;
        }
        self.housekeep(|batch| batch.add_outcome(outcome));
    }

    fn housekeep(&self, add: impl FnOnce(&mut Housekeeping)) {
        add(&mut lock(&self.housekeeping));
        self.housekeeping_wake.notify_one();
    }

    /// Takes the housekeeping batch to send (with a read, or on its own).
    pub(crate) fn take_housekeeping(&self) -> Housekeeping {
        std::mem::take(&mut *lock(&self.housekeeping))
    }

    /// Puts back a batch whose sending failed (every command in it is
    /// idempotent, so sending it twice is harmless).
    pub(crate) fn return_housekeeping(&self, batch: Housekeeping) {
        if !batch.is_empty() {
            lock(&self.housekeeping).absorb(batch);
        }
    }

    pub(crate) async fn housekeeping_due(&self) {
        self.housekeeping_wake.notified().await;
    }

    // ----- claiming and running -----------------------------------------

    /// Takes up to `max` free slots (at least one, waiting for it unless
    /// the process stops claiming); a claim is only made with a slot in
    /// hand, so a claimed job never waits for one.
    pub(crate) async fn take_slots(&self, max: usize) -> Vec<OwnedSemaphorePermit> {
        let first = tokio::select! {
            permit = self.slots.clone().acquire_owned() => permit.ok(),
            _ = self.stopping.cancelled() => None,
        };
        let mut slots: Vec<OwnedSemaphorePermit> = first.into_iter().collect();
        while slots.len() < max {
            match self.slots.clone().try_acquire_owned() {
                Ok(permit) => slots.push(permit),
                Err(_) => break,
            }
        }
        slots
    }

    /// Takes the free slots there are now, up to `max`, without waiting.
    pub(crate) fn free_slots(&self, max: usize) -> Vec<OwnedSemaphorePermit> {
        std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok())
            .take(max)
            .collect()
    }

    /// Claims entries and starts a job for each one that runs, in one of
    /// `slots` (a job claimed beyond them, a resumed parent, waits for one).
    pub(crate) async fn dispatch(
        self: &Arc<Self>,
        entries: Vec<QueueEntry>,
        mut slots: Vec<OwnedSemaphorePermit>,
    ) {
        if entries.is_empty() {
            return;
        }
        // A claim whose reply was lost (the connection dropped) is made
        // again: the claim script hands this worker its own live claim back
        // as the same attempt, so no attempt is spent on a Redis hiccup.
        let claims = match self
            .outlast_redis_outage("claiming", None, || {
                self.store
                    .claim_batch(&entries, &self.consumer, self.lease_ms())
            })
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
                Ok((claim, outcome)) => {
                    self.follow_up(&outcome);
                    match claim {
                        Claim::Run(job) => self.start(job, false, slots.pop()),
                        Claim::Resume(job) => self.start(job, true, slots.pop()),
                        Claim::Drop => self.ack(entry),
                        Claim::Park | Claim::Busy => {}
                    }
                }
                Err(err) => warn!(operation_id = %entry.op_id, error = %err, "claim failed"),
            }
        }
    }

    fn start(self: &Arc<Self>, job: ClaimedJob, resume: bool, slot: Option<OwnedSemaphorePermit>) {
        let data_dir = self
            .config
            .data_dir
            .as_deref()
            .map(std::path::PathBuf::from);
        let ctx = JobContext::new(self.store.clone(), self.registry.clone(), job, data_dir);
        {
            let mut jobs = lock(&self.jobs);
            if jobs.running.get(ctx.id()).is_some_and(|running| {
                running.attempt() == ctx.attempt() && !running.is_cancelled() && !resume
            }) {
                // This very attempt already runs here (a claim made again
                // after its first reply was lost): nothing to start.
                debug!(operation_id = %ctx.id(), "attempt already running here");
                return;
            }
            jobs.running.insert(ctx.id().to_owned(), ctx.clone());
            // A cancel signal may have overtaken the claim's reply.
            if jobs.signals.remove(ctx.id()).is_some() {
                ctx.cancel(reason::CANCELLED);
            }
        }
        metrics::gauge!("longrun_worker_jobs_in_flight").set(self.in_flight() as f64);
        let span = info_span!(
            "job",
            operation_id = %ctx.id(),
            kind = %ctx.job().kind,
            attempt = ctx.attempt(),
            request_id = %ctx.request_id(),
        );
        let engine = self.clone();
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(
            async move {
                let slot = match slot {
                    Some(slot) => Some(slot),
                    None => tokio::select! {
                        slot = engine.slots.clone().acquire_owned() => slot.ok(),
                        _ = engine.hand_back.cancelled() => None,
                    },
                };
                match slot {
                    Some(slot) => engine.execute(&ctx, resume, slot).await,
                    None => engine.hand_back_job(&ctx).await,
                }
                engine.forget(&ctx);
            }
            .instrument(span),
        );
    }

    fn forget(&self, ctx: &JobContext) {
        let mut jobs = lock(&self.jobs);
        // A resumed parent may already run under the same id.
        if jobs
            .running
            .get(ctx.id())
            .is_some_and(|current| current.same(ctx))
        {
            jobs.running.remove(ctx.id());
        }
        let count = jobs.running.len();
        drop(jobs);
        metrics::gauge!("longrun_worker_jobs_in_flight").set(count as f64);
    }

    /// Runs one attempt (or a parent's continuation) to its outcome.
    /// The slot is given back as soon as the handler is done, so the next
    /// job starts while this one's outcome is on its way to Redis.
    async fn execute(self: &Arc<Self>, ctx: &JobContext, resume: bool, slot: OwnedSemaphorePermit) {
        let job = ctx.job().clone();
        let started = Instant::now();
        if self.hand_back.is_cancelled() {
            self.hand_back_job(ctx).await;
            return;
        }
        if ctx.is_cancelled() {
            // Stopped before it got a slot.
            let stopped = ctx
                .cancel_reason()
                .unwrap_or_else(|| reason::CANCELLED.into());
            self.after_stop(ctx, &stopped, false).await;
            return;
        }
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
        let (limit, limit_reason) = self.time_limit(ctx);
        let stopped = tokio::select! {
            joined = &mut task => {
                drop(slot);
                flusher.stop().await;
                // A handler that stopped because it was told to is settled
                // by why it was told, not by what it returned.
                if let Some(stopped) = ctx.cancel_reason() {
                    record(&job.kind, started, &stopped);
                    self.after_stop(ctx, &stopped, false).await;
                    return;
                }
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
            self.hand_back_grace()
        } else {
            self.config.cancel_grace
        };
        let aborted = tokio::time::timeout(grace, &mut task).await.is_err();
        if aborted {
            task.abort();
            warn!(reason = %stopped, "handler did not stop within its grace period; aborted");
        }
        drop(slot);
        flusher.stop().await;
        record(&job.kind, started, &stopped);
        self.after_stop(ctx, &stopped, aborted).await;
    }

    /// What follows a handler that was told to stop.
    async fn after_stop(self: &Arc<Self>, ctx: &JobContext, stopped: &str, aborted: bool) {
        let job = ctx.job();
        match stopped {
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
            reason::SHUTDOWN => self.hand_back_job(ctx).await,
            // Finished by someone else (cancelled, failed by a deadline or a
            // failing sibling): the entry is done with.
            reason::CANCELLED => {
                if !aborted {
                    info!("handler stopped after cancellation");
                }
                self.ack(&job.entry);
            }
            // Lost claim: another worker may hold this very entry; leave it.
            _ => debug!("handler stopped: the claim was lost"),
        }
    }

    /// The time this attempt may still run, and what passing it means.
    fn time_limit(&self, ctx: &JobContext) -> (Duration, &'static str) {
        const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);
        let job = ctx.job();
        let since_claim = ctx.claimed_at().elapsed();
        let attempt = (job.timeout_ms > 0)
            .then(|| Duration::from_millis(job.timeout_ms).saturating_sub(since_claim));
        let deadline = job
            .deadline_left_ms
            .map(|left| Duration::from_millis(left).saturating_sub(since_claim));
        match (attempt, deadline) {
            (Some(a), Some(d)) if d < a => (d, reason::DEADLINE),
            (Some(a), _) => (a, reason::TIMEOUT),
            (None, Some(d)) => (d, reason::DEADLINE),
            (None, None) => (FOREVER, reason::TIMEOUT),
        }
    }

    fn hand_back_grace(&self) -> Duration {
        HAND_BACK_GRACE.min(self.config.shutdown_grace / 2)
    }

    async fn settle(self: &Arc<Self>, ctx: &JobContext, result: Result<Outcome, JobError>) {
        let job = ctx.job();
        match result {
            Ok(Outcome::Done(value)) => {
                let final_progress = ctx
                    .take_pending()
                    .map(|report| (report.percent, report.message, report.data));
                let completed = self
                    .outlast_redis_outage("recording the result", Some(ctx), || {
                        self.completer.complete((
                            job.clone(),
                            value.clone(),
                            final_progress.clone(),
                        ))
                    })
                    .await;
                match completed {
                    Ok(outcome) if outcome.word == "ok" => {
                        self.ack(&job.entry);
                        self.follow_up(&outcome);
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
                let parked = self
                    .outlast_redis_outage("parking", Some(ctx), || {
                        self.store.wait_for_children(job, resume, &state)
                    })
                    .await;
                match parked {
                    Ok(Some((settled, outcome))) => {
                        if settled == Settled::Finished {
                            self.ack(&job.entry);
                        }
                        // Waiting: the entry stays pending, parked; Resume:
                        // `after` takes it and runs the continuation.
                        self.follow_up(&outcome);
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
        let failed = self
            .outlast_redis_outage("recording the failure", Some(ctx), || {
                self.store.fail(job, &operation_error, delay)
            })
            .await;
        match failed {
            Ok((FailOutcome::Retry { generation, due_ms }, outcome)) => {
                debug!(code = %error.code, delay_ms = delay, "attempt failed; retrying");
                let (root, id) = (&job.entry.root, &job.entry.op_id);
                let item = [(root.as_str(), id.as_str(), generation)];
                let requeued = if delay == 0 {
                    self.outlast_redis_outage("requeueing", None, || self.store.enqueue(&item))
                        .await
                } else {
                    let result = self
                        .outlast_redis_outage("requeueing", None, || {
                            self.store.delay(root, id, generation, due_ms)
                        })
                        .await;
                    self.delayed_wake.notify_one();
                    result
                };
                match requeued {
                    // The old entry is acknowledged only once the new one
                    // exists; if it does not, the reaper takes the old one
                    // and the claim script requeues the operation.
                    Ok(()) => self.ack(&job.entry),
                    Err(err) => warn!(error = %err, "could not requeue; the reaper will"),
                }
                self.follow_up(&outcome);
                self.after(&outcome).await;
            }
            Ok((FailOutcome::Failed, outcome)) => {
                info!(code = %error.code, "operation failed: {}", error.message);
                self.ack(&job.entry);
                self.follow_up(&outcome);
                self.after(&outcome).await;
            }
            Ok((FailOutcome::Fenced, _)) => debug!("failure refused: the claim was lost"),
            Err(err) => warn!(error = %err, "could not record the failure; the lease will expire"),
        }
    }

    /// Gives the operation back without consuming its attempt (shutdown).
    async fn hand_back_job(&self, ctx: &JobContext) {
        let job = ctx.job();
        let handed = self
            .outlast_redis_outage("handing back", Some(ctx), || self.store.handoff(job))
            .await;
        match handed {
            Ok(Some(generation)) => {
                let item = [(
                    job.entry.root.as_str(),
                    job.entry.op_id.as_str(),
                    generation,
                )];
                let requeued = self
                    .outlast_redis_outage("requeueing", None, || self.store.enqueue(&item))
                    .await;
                match requeued {
                    Ok(()) => {
                        info!("handed the operation back to the queue");
                        self.ack(&job.entry);
                    }
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
            if self.stopping.is_cancelled() {
                // Its parked entry stays pending; a live worker's reaper
                // takes it once it has been idle for a lease.
                debug!(parent = %parent, "stopping: leaving the parent's resumption to others");
                continue;
            }
            match self
                .store
                .take_entry(&self.consumer, &EntryRef::parse(entry_id))
                .await
            {
                Ok(Some(entry)) => {
                    let slots = self.free_slots(1);
                    Box::pin(self.dispatch(vec![entry], slots)).await
                }
                Ok(None) => debug!(parent = %parent, "parked entry already taken"),
                Err(err) => {
                    warn!(parent = %parent, error = %err, "could not resume; the reaper will")
                }
            }
        }
    }

    /// Runs a Redis call, and again while Redis is unreachable (a restart,
    /// a failover, a dropped connection), pausing with exponential backoff
    /// and jitter: a result reached while Redis was away is reported once
    /// it is back. Every call made this way is safe to repeat (a repeated
    /// transition is fenced by the attempt). Gives up when the job's claim
    /// is known lost or the process hands its work back; the lease then
    /// expires and another attempt runs.
    async fn outlast_redis_outage<T, F, Fut>(
        &self,
        what: &str,
        ctx: Option<&JobContext>,
        mut call: F,
    ) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = StoreResult<T>>,
    {
        let mut failures: u32 = 0;
        loop {
            let err: StoreError = match call().await {
                Err(err) if err.is_transient() => err,
                other => {
                    if failures > 0 {
                        info!("{what}: Redis is back");
                    }
                    return other;
                }
            };
            let lost =
                ctx.is_some_and(|ctx| ctx.cancel_reason().as_deref() == Some(reason::LOST_CLAIM));
            if lost || self.hand_back.is_cancelled() {
                return Err(err);
            }
            failures += 1;
            if failures == 1 {
                warn!(error = %err, "{what}: Redis is unreachable; retrying until it is back");
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_delay(failures, Duration::from_secs(2))) => {}
                _ = self.hand_back.cancelled() => {}
            }
        }
    }

    // ----- signals and leases ---------------------------------------------

    /// Tells running handlers of these operations to stop; remembers the
    /// others for a while (a claim of one may be on its way back).
    pub(crate) fn cancel_running(&self, ids: &str) {
        let now = Instant::now();
        let mut jobs = lock(&self.jobs);
        for id in ids.split_whitespace() {
            match jobs.running.get(id) {
                Some(ctx) => ctx.cancel(reason::CANCELLED),
                None => {
                    jobs.signals.insert(id.to_owned(), now);
                }
            }
        }
        if jobs.signals.len() > 1_000 {
            jobs.signals
                .retain(|_, at| now.duration_since(*at) < SIGNAL_MEMORY);
        }
    }

    pub(crate) fn mark_listening(&self) {
        self.listening.store(true, Ordering::Release);
        self.listening_wake.notify_waiters();
    }

    /// Waits (a bounded time) until the cancel listener is subscribed, so
    /// the first claims do not miss their cancel signals.
    pub(crate) async fn wait_listening(&self, limit: Duration) {
        let wait = async {
            while !self.listening.load(Ordering::Acquire) {
                let notified = self.listening_wake.notified();
                if self.listening.load(Ordering::Acquire) {
                    break;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }

    /// Renews the leases of running jobs; stops the ones whose claim is gone.
    pub(crate) async fn renew_leases(&self) -> StoreResult<()> {
        let held: Vec<JobContext> = lock(&self.jobs).running.values().cloned().collect();
        if held.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(QueueEntry, u32)> = held
            .iter()
            .map(|ctx| (ctx.job().entry.clone(), ctx.attempt()))
            .collect();
        let leases = self.store.heartbeat(&pairs, self.lease_ms()).await?;
        let mut kept = Vec::new();
        for (ctx, lease) in held.iter().zip(leases) {
            match lease {
                Lease::Held => kept.push(ctx.job().entry.reference()),
                // Its signal was missed (the listener was reconnecting).
                Lease::Finished => ctx.cancel(reason::CANCELLED),
                Lease::Lost => ctx.cancel(reason::LOST_CLAIM),
            }
        }
        self.store.touch(&self.consumer, &kept).await
    }

    pub(crate) async fn wait_for_due(&self, wait: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.delayed_wake.notified() => {}
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn config(&self) -> &WorkerConfig {
        &self.config
    }

    // ----- shutdown -------------------------------------------------------

    /// Stops claiming: intake, reaper and scheduler end.
    pub(crate) fn stop_claiming(&self) {
        self.stopping.cancel();
    }

    pub(crate) fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Lets running jobs finish until the shutdown grace is nearly over,
    /// then makes the rest hand their work back, and waits for that; all
    /// within the grace period.
    pub(crate) async fn drain(&self, deadline: tokio::time::Instant) {
        let hand_back_at = deadline
            .checked_sub(self.hand_back_grace())
            .unwrap_or(deadline);
        while self.in_flight() > 0 && tokio::time::Instant::now() < hand_back_at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.in_flight() > 0 {
            info!(
                jobs = self.in_flight(),
                "grace period nearly over; handing work back"
            );
        }
        self.hand_back.cancel();
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        while tasks.join_next().await.is_some() {}
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

fn record(kind: &str, started: Instant, how: &str) {
    metrics::histogram!("longrun_worker_job_seconds", "kind" => kind.to_owned(), "end" => how.to_owned())
        .record(started.elapsed().as_secs_f64());
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
