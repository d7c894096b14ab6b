//! `demo.fanout`: starts `children` children and waits for them without
//! holding a worker slot. Its progress follows the children's; it succeeds
//! when all succeed and fails (after they all finish) when any failed — or
//! as the request's failure policy says, which its children inherit.
//!
//! By default the children are `demo.sleep` jobs built from
//! `child_duration_ms`, `child_steps` and `fail_children`. With
//! `child_kind: "demo.fanout"` and `child_input` (the same input for every
//! child) or `child_inputs` (one per child) the children are fan-outs
//! themselves, so a request can build a tree of any depth, e.g. to see a
//! failure deep in a tree reach the root.

use std::collections::HashSet;

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::demo_sleep::SleepInput;
use crate::kinds::parse_input;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutInput {
    pub children: u32,
    pub child_duration_ms: u64,
    pub child_steps: u32,
    pub fail_children: Vec<u32>,
    pub child_kind: String,
    pub child_input: Option<Map<String, Value>>,
    pub child_inputs: Option<Vec<Map<String, Value>>>,
}

impl Default for FanoutInput {
    fn default() -> Self {
        FanoutInput {
            children: 10,
            child_duration_ms: 100,
            child_steps: 1,
            fail_children: Vec::new(),
            child_kind: kinds::DEMO_SLEEP.into(),
            child_input: None,
            child_inputs: None,
        }
    }
}

impl FanoutInput {
    /// The inputs of the children, checked against their kind.
    fn child_inputs(&self) -> Result<Vec<Value>, JobError> {
        let inputs: Vec<Value> = match (&self.child_inputs, &self.child_input) {
            (Some(each), _) => each.iter().cloned().map(Value::Object).collect(),
            (None, Some(one)) => (0..self.children)
                .map(|_| Value::Object(one.clone()))
                .collect(),
            (None, None) => {
                let failing: HashSet<u32> = self.fail_children.iter().copied().collect();
                (0..self.children)
                    .map(|index| {
                        json!({
                            "duration_ms": self.child_duration_ms,
                            "steps": self.child_steps.max(1),
                            // More failures than attempts: the child fails for good.
                            "fail_times": if failing.contains(&index) { 100 } else { 0 },
                        })
                    })
                    .collect()
            }
        };
        for (index, input) in inputs.iter().enumerate() {
            match self.child_kind.as_str() {
                kinds::DEMO_SLEEP => check::<SleepInput>(index, input)?,
                kinds::DEMO_FANOUT => check::<FanoutInput>(index, input)?,
                other => {
                    return Err(JobError::permanent(
                        "invalid_input",
                        format!("child_kind `{other}` is not demo.sleep or demo.fanout"),
                    ));
                }
            }
        }
        Ok(inputs)
    }
}

fn check<T: DeserializeOwned>(index: usize, input: &Value) -> Result<(), JobError> {
    serde_json::from_value::<T>(input.clone())
        .map(drop)
        .map_err(|err| {
            JobError::permanent(
                "invalid_input",
                format!("the input of child {index} does not fit: {err}"),
            )
        })
}

#[derive(Debug, Clone, Copy)]
pub struct DemoFanout;

#[async_trait]
impl Handler for DemoFanout {
    fn spec(&self) -> KindSpec {
        kinds::builtin_spec(kinds::DEMO_FANOUT).expect("demo.fanout is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: FanoutInput = parse_input(input)?;
        let inputs = input.child_inputs()?;
        ctx.spawn_children(&input.child_kind, inputs).await?;
        Ok(Outcome::WaitForChildren {
            resume: false,
            state: Value::Null,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> FanoutInput {
        serde_json::from_value(value).expect("parses")
    }

    #[test]
    fn the_contract_input_builds_sleep_children() {
        let input = parse(json!({"children": 3, "child_duration_ms": 5, "fail_children": [1]}));
        let inputs = input.child_inputs().expect("valid");
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs[0]["fail_times"], 0);
        assert_eq!(inputs[1]["fail_times"], 100);
        assert_eq!(inputs[2]["duration_ms"], 5);
    }

    #[test]
    fn fanout_children_take_their_own_inputs() {
        let input = parse(json!({
            "child_kind": "demo.fanout",
            "child_inputs": [{"children": 2}, {"children": 1, "fail_children": [0]}],
        }));
        let inputs = input.child_inputs().expect("valid");
        assert_eq!(inputs.len(), 2);
        assert_eq!(inputs[1]["fail_children"], json!([0]));
    }

    #[test]
    fn a_child_input_that_does_not_fit_is_a_permanent_error() {
        let input =
            parse(json!({"child_kind": "demo.fanout", "child_input": {"nope": 1}, "children": 2}));
        let err = input.child_inputs().expect_err("refused");
        assert!(!err.retryable);
        assert!(err.message.contains("child 0"), "{}", err.message);
    }
}
