//! `demo.sleep`: sleeps `duration_ms` in `steps` equal steps, reporting
//! progress after each; fails its first `fail_times` attempts with a
//! retryable error. Result `{"slept_ms": N}`.

use std::time::Duration;

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::parse_input;

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SleepInput {
    pub duration_ms: u64,
    pub steps: u32,
    pub fail_times: u32,
}

impl Default for SleepInput {
    fn default() -> Self {
        SleepInput {
            duration_ms: 1_000,
            steps: 10,
            fail_times: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DemoSleep;

#[async_trait]
impl Handler for DemoSleep {
    fn spec(&self) -> KindSpec {
        kinds::builtin_spec(kinds::DEMO_SLEEP).expect("demo.sleep is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: SleepInput = parse_input(input)?;
        if ctx.attempt() <= input.fail_times {
            return Err(JobError::retryable(
                "demo_failure",
                format!(
                    "attempt {} fails on purpose (fail_times = {})",
                    ctx.attempt(),
                    input.fail_times
                ),
            ));
        }
        let steps = input.steps.max(1);
        let start = tokio::time::Instant::now();
        for step in 1..=steps {
            let due = start
                + Duration::from_millis(input.duration_ms * u64::from(step) / u64::from(steps));
            // A step already due (`duration_ms: 0`) does not wait for the
            // timer wheel's next tick (up to a millisecond per job).
            if due > tokio::time::Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = ctx.cancelled() => return Err(cancelled()),
                }
            } else if ctx.is_cancelled() {
                return Err(cancelled());
            }
            ctx.progress(
                f64::from(step) * 100.0 / f64::from(steps),
                format!("step {step}/{steps}"),
                Value::Null,
            );
        }
        Ok(Outcome::Done(json!({ "slept_ms": input.duration_ms })))
    }
}

fn cancelled() -> JobError {
    JobError::permanent("cancelled", "stopped on request")
}
