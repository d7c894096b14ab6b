//! Records the results of jobs that finish together in one Redis call.
//!
//! A finished job hands its result to the completer and waits for its
//! outcome. The completer sends what is waiting at once when no call is in
//! flight, and otherwise gathers the results that arrive meanwhile into
//! the next call: an idle worker adds no delay, a busy one pays the
//! script's fixed cost once per batch instead of once per job
//! ([`Store::complete_batch`]).

use longrun_shared::Store;
use longrun_shared::store::Outcome;
use longrun_shared::store::transitions::Completion;
use longrun_shared::store::{StoreError, StoreResult};
use tokio::sync::{mpsc, oneshot};

/// Results recorded per call, at most.
const MAX_BATCH: usize = 256;

struct Request {
    done: Completion,
    reply: oneshot::Sender<StoreResult<Outcome>>,
}

/// The handle jobs use; the task behind it lives as long as a handle does.
#[derive(Clone)]
pub(crate) struct Completer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Completer {
    pub(crate) fn start(store: Store) -> Completer {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(store, queue));
        Completer { requests }
    }

    /// Records one job's result; its outcome as [`Store::complete`] gives it.
    pub(crate) async fn complete(&self, done: Completion) -> StoreResult<Outcome> {
        let (reply, outcome) = oneshot::channel();
        if self.requests.send(Request { done, reply }).is_err() {
            return Err(StoreError::data("the completer stopped"));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(StoreError::data("the completer stopped")))
    }
}

async fn run(store: Store, mut queue: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (done, replies): (Vec<Completion>, Vec<_>) = batch
            .drain(..)
            .map(|request| (request.done, request.reply))
            .unzip();
        match store.complete_batch(&done).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}
