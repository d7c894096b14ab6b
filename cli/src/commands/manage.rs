//! `longrun cancel` and `longrun delete`.

use longrun_client::{ClientError, Code};
use serde_json::json;

use crate::args::IdArgs;
use crate::commands::{Outcome, operation_id};
use crate::failure::{Failure, exit};
use crate::output;
use crate::settings::Context;

pub async fn cancel(ctx: &Context, args: &IdArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    let operation = ctx
        .client
        .cancel(&id)
        .await
        .map_err(|err| conflict(err, |detail| format!("nothing to cancel: {detail}")))?;
    if ctx.json {
        output::json(&operation);
    } else if operation.children.total > 0 {
        say!(
            "cancelled {id} ({} of its {} children cancelled)",
            operation.children.cancelled,
            operation.children.total
        );
    } else {
        say!("cancelled {id}");
    }
    Ok(exit::OK)
}

pub async fn delete(ctx: &Context, args: &IdArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    ctx.client.delete(&id).await.map_err(|err| {
        conflict(err, |detail| {
            format!(
                "cannot delete {id} yet: {detail} — only a finished operation can be deleted \
                 (`longrun cancel {id}` stops it)"
            )
        })
    })?;
    if ctx.json {
        output::json(&json!({"id": id, "deleted": true}));
    } else {
        say!("deleted {id}");
    }
    Ok(exit::OK)
}

/// A 409 told in the command's own words; other errors as usual.
fn conflict(err: ClientError, explain: impl FnOnce(&str) -> String) -> Failure {
    match err.problem() {
        Some(problem) if problem.code == Code::Conflict => {
            Failure::usage(explain(problem.detail.trim()))
        }
        _ => Failure::from(err),
    }
}
