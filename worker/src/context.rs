//! [`JobContext`]: what a running handler can do — report progress, start
//! children, notice cancellation.
//!
//! Progress is cheap to report: `progress` only stores the latest report and
//! wakes a per-job flusher that writes at most one report per
//! [`PROGRESS_INTERVAL`] (each 10 ms after it was made at the earliest);
//! the last report is never dropped (a pending one is written together with
//! the result). The percent never decreases within one attempt.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use longrun_shared::Store;
use longrun_shared::kinds::FailurePolicy;
use longrun_shared::model::{Operation, OperationPage};
use longrun_shared::store::connection::retry_delay;
use longrun_shared::store::transitions::{ChildOptions, ClaimedJob};
use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::handler::{JobError, Registry};

/// At most one progress write per operation per this interval.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

/// A report waits this long before it is written, so a job that ends right
/// after reporting sends it with its result, not in a round trip of its own.
const WRITE_DELAY: Duration = Duration::from_millis(10);

/// Children per spawn script call.
const SPAWN_BATCH: usize = 1_000;

/// A progress report not yet written.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub percent: f64,
    pub message: Option<String>,
    pub data: Value,
}

#[derive(Default)]
struct ProgressSlot {
    pending: Option<Report>,
    highest: f64,
}

struct Inner {
    store: Store,
    registry: Arc<Registry>,
    job: ClaimedJob,
    token: CancellationToken,
    progress: std::sync::Mutex<ProgressSlot>,
    wake: Notify,
    batches: AtomicU64,
    reason: std::sync::Mutex<Option<String>>,
    claimed_at: Instant,
    data_dir: Option<PathBuf>,
}

/// The handle a handler uses while it runs. Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("id", &self.id())
            .field("attempt", &self.attempt())
            .finish()
    }
}

impl JobContext {
    pub(crate) fn new(
        store: Store,
        registry: Arc<Registry>,
        job: ClaimedJob,
        data_dir: Option<PathBuf>,
    ) -> Self {
        JobContext {
            inner: Arc::new(Inner {
                store,
                registry,
                job,
                token: CancellationToken::new(),
                progress: std::sync::Mutex::new(ProgressSlot::default()),
                wake: Notify::new(),
                batches: AtomicU64::new(0),
                reason: std::sync::Mutex::new(None),
                claimed_at: Instant::now(),
                data_dir,
            }),
        }
    }

    /// The operation's id.
    pub fn id(&self) -> &str {
        &self.inner.job.entry.op_id
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.inner.job.attempt
    }

    pub fn max_attempts(&self) -> u32 {
        self.inner.job.max_attempts
    }

    /// The request id of the HTTP call that started the operation (or its root).
    pub fn request_id(&self) -> &str {
        &self.inner.job.request_id
    }

    /// What a failed child does to this operation (the request's
    /// `failure_policy`); children started with
    /// [`spawn_children`](Self::spawn_children) inherit it.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.job.policy
    }

    /// The directory `LONGRUN_DATA_DIR` names, where kinds may read and
    /// write files; `None` when file access is off.
    pub fn data_dir(&self) -> Option<&Path> {
        self.inner.data_dir.as_deref()
    }

    /// When this worker claimed the attempt.
    pub(crate) fn claimed_at(&self) -> Instant {
        self.inner.claimed_at
    }

    /// True when both handles belong to the same run.
    pub(crate) fn same(&self, other: &JobContext) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn job(&self) -> &ClaimedJob {
        &self.inner.job
    }

    /// Reports progress: `percent` (0–100), a message and any JSON data
    /// (partial results). Never blocks; see the module docs.
    pub fn progress(&self, percent: f64, message: impl Into<String>, data: Value) {
        let message = message.into();
        let mut slot = lock(&self.inner.progress);
        let percent = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        slot.highest = slot.highest.max(percent);
        slot.pending = Some(Report {
            percent: slot.highest,
            message: (!message.is_empty()).then_some(message),
            data,
        });
        drop(slot);
        self.inner.wake.notify_one();
    }

    /// Resolves when the operation was cancelled, its attempt timed out or
    /// its claim was lost; the handler should stop soon after (it is
    /// aborted after the grace period).
    pub async fn cancelled(&self) {
        self.inner.token.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Why the handler was told to stop, once it was.
    pub fn cancel_reason(&self) -> Option<String> {
        lock(&self.inner.reason).clone()
    }

    pub(crate) fn cancel(&self, reason: &str) {
        lock(&self.inner.reason).get_or_insert_with(|| reason.to_owned());
        self.inner.token.cancel();
    }

    /// Reads the operation as it is now (e.g. its children's counts).
    pub async fn operation(&self) -> Result<Operation, JobError> {
        let job = &self.inner.job;
        self.inner
            .store
            .get_in(&job.entry.root, &job.entry.op_id)
            .await
            .map_err(redis_error)?
            .map(|stored| stored.operation)
            .ok_or_else(|| JobError::permanent("not_found", "the operation was deleted"))
    }

    /// A page of this operation's children, in creation order.
    pub async fn children(&self, offset: u64, limit: usize) -> Result<OperationPage, JobError> {
        let job = &self.inner.job;
        let (operations, next) = self
            .inner
            .store
            .children(&job.entry.root, &job.entry.op_id, offset, limit)
            .await
            .map_err(redis_error)?;
        Ok(OperationPage {
            operations,
            next_cursor: next.map(|n| n.to_string()),
        })
    }

    /// The running sum of the numeric `totals` this operation's succeeded
    /// children returned in their results (see the module docs of
    /// [`crate::handler`]); `{}` when none did.
    pub async fn child_totals(&self) -> Result<Value, JobError> {
        let job = &self.inner.job;
        self.inner
            .store
            .child_totals(&job.entry.root, &job.entry.op_id)
            .await
            .map_err(redis_error)
    }

    /// Starts one child of `kind` per input, with the kind's default retry
    /// settings and this operation's failure policy, and puts them on the
    /// queue (1,000 per round trip). Safe to repeat in a re-run of the
    /// handler: the n-th call of an attempt maps to the n-th call of the
    /// first attempt, whose children are reused rather than created twice,
    /// so a handler must start the same children in the same order on
    /// every run. Fails once the operation is cancelled or finished: no
    /// child starts after that.
    pub async fn spawn_children(&self, kind: &str, inputs: Vec<Value>) -> Result<usize, JobError> {
        let defaults = self
            .inner
            .registry
            .get(kind)
            .map(|handler| handler.spec().defaults)
            .ok_or_else(|| {
                JobError::permanent("unknown_kind", format!("no handler for `{kind}`"))
            })?;
        let options = ChildOptions {
            max_attempts: defaults.max_attempts,
            backoff: defaults.backoff,
            timeout_ms: defaults.timeout_ms,
            policy: self.failure_policy(),
        };
        self.spawn_children_with(kind, inputs, &options).await
    }

    /// [`spawn_children`](Self::spawn_children) with explicit options.
    pub async fn spawn_children_with(
        &self,
        kind: &str,
        inputs: Vec<Value>,
        options: &ChildOptions,
    ) -> Result<usize, JobError> {
        let store = &self.inner.store;
        let mut created = 0;
        for chunk in inputs.chunks(SPAWN_BATCH) {
            let batch = self.inner.batches.fetch_add(1, Ordering::Relaxed);
            // A spawn is idempotent per batch number: while Redis is
            // unreachable the same batch is sent again until it answers.
            let mut failures: u32 = 0;
            let spawned = loop {
                match store
                    .spawn(&self.inner.job, batch, kind, chunk, options)
                    .await
                {
                    Err(err) if err.is_transient() && !self.is_cancelled() => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(operation_id = %self.id(), error = %err,
                                "starting children: Redis is unreachable; retrying until it is back");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(retry_delay(failures, Duration::from_secs(2))) => {}
                            _ = self.cancelled() => {}
                        }
                    }
                    other => break other,
                }
            };
            spawned.map_err(redis_error)?.ok_or_else(|| {
                JobError::permanent("cancelled", "the operation no longer runs here")
            })?;
            created += chunk.len();
        }
        Ok(created)
    }

    /// Starts the task that writes progress reports, one per interval.
    pub(crate) fn start_flusher(&self) -> Flusher {
        let ctx = self.clone();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = ctx.inner.wake.notified() => {}
                }
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tokio::time::sleep(WRITE_DELAY) => {}
                }
                let report = lock(&ctx.inner.progress).pending.take();
                if let Some(report) = report {
                    ctx.write(&report).await;
                }
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    _ = tokio::time::sleep(PROGRESS_INTERVAL) => {}
                }
            }
        });
        Flusher {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    async fn write(&self, report: &Report) {
        let result = self
            .inner
            .store
            .progress(
                &self.inner.job,
                report.percent,
                report.message.as_deref(),
                &report.data,
            )
            .await;
        match result {
            Ok(Some(_)) => {}
            Ok(None) => self.cancel("lost_claim"),
            Err(err) => {
                tracing::warn!(operation_id = %self.id(), error = %err, "progress write failed");
                // Keep it for the next write unless a newer report came in.
                let mut slot = lock(&self.inner.progress);
                if slot.pending.is_none() {
                    slot.pending = Some(report.clone());
                }
            }
        }
    }

    /// The report not written yet, taken out.
    pub(crate) fn take_pending(&self) -> Option<Report> {
        lock(&self.inner.progress).pending.take()
    }
}

/// Stops the flusher; any write in flight completes first.
pub(crate) struct Flusher {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Flusher {
    pub(crate) async fn stop(&self) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn redis_error(err: impl std::fmt::Display) -> JobError {
    JobError::retryable("redis_unavailable", err.to_string())
}
