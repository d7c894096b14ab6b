//! `demo.fanout`: starts `children` `demo.sleep` children and waits for them
//! without holding a worker slot. Its progress follows the children's; it
//! succeeds when all succeed and fails (after they all finish) when any
//! failed — or as the request's failure policy says.

use std::collections::HashSet;

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::parse_input;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FanoutInput {
    pub children: u32,
    pub child_duration_ms: u64,
    pub child_steps: u32,
    pub fail_children: Vec<u32>,
}

impl Default for FanoutInput {
    fn default() -> Self {
        FanoutInput {
            children: 10,
            child_duration_ms: 100,
            child_steps: 1,
            fail_children: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DemoFanout;

#[async_trait]
impl Handler for DemoFanout {
    fn spec(&self) -> KindSpec {
        kinds::builtin()
            .into_iter()
            .find(|spec| spec.kind == kinds::DEMO_FANOUT)
            .expect("demo.fanout is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: FanoutInput = parse_input(input)?;
        let failing: HashSet<u32> = input.fail_children.iter().copied().collect();
        let inputs: Vec<Value> = (0..input.children)
            .map(|index| {
                json!({
                    "duration_ms": input.child_duration_ms,
                    "steps": input.child_steps.max(1),
                    // More failures than attempts: the child fails for good.
                    "fail_times": if failing.contains(&index) { 100 } else { 0 },
                })
            })
            .collect();
        ctx.spawn_children(kinds::DEMO_SLEEP, inputs).await?;
        Ok(Outcome::WaitForChildren {
            resume: false,
            state: Value::Null,
        })
    }
}
