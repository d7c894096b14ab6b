//! The [`Handler`] trait every operation kind implements, and the
//! [`Registry`] of kinds a worker runs.
//!
//! A handler gets the operation's input and a [`JobContext`]; it reports
//! progress through the context, may start children, and returns either a
//! result or "wait for my children". Errors say whether another attempt may
//! help ([`JobError::retryable`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use longrun_shared::kinds::KindSpec;
use longrun_shared::model::OperationError;
use serde_json::{Value, json};

use crate::context::JobContext;

/// What a handler's run ended with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Succeeded with this result.
    Done(Value),
    /// Wait for the children started with `ctx.spawn_children`, without
    /// holding a worker slot. With `resume`, [`Handler::resume`] runs once
    /// they are all done (given `state`); without, the operation finishes by
    /// itself: succeeded with the children's counts, or failed per the
    /// failure policy.
    WaitForChildren { resume: bool, state: Value },
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct JobError {
    pub code: String,
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl JobError {
    /// An error another attempt may get past (network trouble, a busy dependency).
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            code: code.into(),
            message: message.into(),
            retryable: true,
        }
    }

    /// An error no retry will fix (bad input, a missing file).
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        JobError {
            code: code.into(),
            message: message.into(),
            retryable: false,
        }
    }

    pub fn to_operation_error(&self) -> OperationError {
        OperationError {
            code: self.code.clone(),
            message: self.message.clone(),
            retryable: self.retryable,
        }
    }
}

/// An operation kind's implementation.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Name, description, input schema and defaults.
    fn spec(&self) -> KindSpec;

    /// Runs one attempt.
    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError>;

    /// Runs after all children are done, when `run` returned
    /// `WaitForChildren { resume: true, .. }`. The default succeeds with the
    /// children's counts.
    async fn resume(
        &self,
        ctx: JobContext,
        _input: Value,
        _state: Value,
    ) -> Result<Outcome, JobError> {
        let operation = ctx.operation().await?;
        Ok(Outcome::Done(json!({ "children": operation.children })))
    }
}

/// The kinds one worker process runs.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry with the built-in kinds (`demo.sleep`, `demo.fanout`,
    /// `data.import`, `calc.primes`).
    pub fn builtin() -> Self {
        let mut registry = Registry::new();
        crate::kinds::register_builtin(&mut registry);
        registry
    }

    /// Adds (or replaces) a kind.
    pub fn register(&mut self, handler: impl Handler) -> &mut Self {
        self.handlers.insert(handler.spec().kind, Arc::new(handler));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(kind).cloned()
    }

    pub fn specs(&self) -> Vec<KindSpec> {
        let mut specs: Vec<KindSpec> = self.handlers.values().map(|h| h.spec()).collect();
        specs.sort_by(|a, b| a.kind.cmp(&b.kind));
        specs
    }
}
