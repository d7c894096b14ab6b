//! `longrun start KIND [INPUT|@file.json|-]`: starts an operation, prints
//! its id (or follows it with `--watch`).

use std::io::Read;

use longrun_client::{StartOptions, StartParams};
use longrun_shared::kinds::split_kind;
use serde_json::{Value, json};

use crate::args::StartArgs;
use crate::commands::{Outcome, follow};
use crate::failure::{Failure, exit};
use crate::output;
use crate::settings::Context;

pub async fn start(ctx: &Context, args: &StartArgs) -> Outcome {
    if split_kind(&args.kind).is_none() {
        return Err(Failure::usage(format!(
            "`{}` is not a kind: kinds look like module.operation, e.g. demo.sleep \
             (`longrun kinds` lists them)",
            args.kind
        )));
    }
    let input = read_input(args.input.as_deref())?;
    let started = ctx
        .client
        .start_full(&args.kind, &input, &options(args))
        .await
        .map_err(|err| {
            let mut failure = Failure::from(err);
            failure.message = failure.message.replace(
                "`longrun kinds KIND`",
                &format!("`longrun kinds {}`", args.kind),
            );
            failure
        })?;
    let operation = started.operation;
    if !started.created && !ctx.json {
        note!(
            "an operation with this idempotency key exists already: {}",
            operation.id
        );
    }
    if args.watch {
        if !ctx.json {
            note!("started {}", operation.id);
        }
        return follow::follow(ctx, &operation.id, args.cancel_on_interrupt).await;
    }
    if ctx.json {
        output::json(&operation);
    } else {
        say!("{}", operation.id);
    }
    Ok(exit::OK)
}

fn options(args: &StartArgs) -> StartOptions {
    let millis = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    StartOptions {
        idempotency_key: args.idempotency_key.clone(),
        params: StartParams {
            max_attempts: args.max_attempts,
            timeout_ms: millis(args.timeout),
            deadline_ms: millis(args.deadline),
            backoff: args.backoff.map(Into::into),
            backoff_ms: millis(args.backoff_base),
            backoff_max_ms: millis(args.backoff_max),
            failure_policy: args.failure_policy.map(Into::into),
        },
    }
}

/// The input: none (`{}`), JSON text, `@path` or `-` (stdin).
fn read_input(raw: Option<&str>) -> Result<Value, Failure> {
    let (text, origin) = match raw {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|err| {
                Failure::usage(format!("cannot read the input from stdin: {err}"))
            })?;
            (text, "stdin".to_owned())
        }
        Some(raw) => match raw.strip_prefix('@') {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| Failure::usage(format!("cannot read {path}: {err}")))?;
                (text, path.to_owned())
            }
            None => (raw.to_owned(), "the input".to_owned()),
        },
    };
    serde_json::from_str(&text).map_err(|err| {
        Failure::usage(format!(
            "{origin} is not valid JSON ({err}); pass JSON text, @file.json or - for stdin"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_comes_from_text_or_a_file() {
        assert_eq!(read_input(None).expect("none"), json!({}));
        assert_eq!(
            read_input(Some(r#"{"steps":3}"#)).expect("text"),
            json!({"steps": 3})
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("input.json");
        std::fs::write(&path, r#"{"duration_ms": 10}"#).expect("write");
        let at = format!("@{}", path.display());
        assert_eq!(
            read_input(Some(&at)).expect("file"),
            json!({"duration_ms": 10})
        );
    }

    #[test]
    fn bad_input_is_a_usage_error_naming_where_it_came_from() {
        let err = read_input(Some("{steps: 3}")).expect_err("not JSON");
        assert_eq!(err.code, exit::USAGE);
        assert!(
            err.message.starts_with("the input is not valid JSON"),
            "{}",
            err.message
        );
        let err = read_input(Some("@/no/such/file.json")).expect_err("missing");
        assert!(
            err.message.contains("/no/such/file.json"),
            "{}",
            err.message
        );
    }
}
