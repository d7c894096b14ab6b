//! `longrun wait`: long polls until the operation is done or the timeout
//! passed (exit 3).

use crate::args::WaitArgs;
use crate::commands::{Outcome, operation_id};
use crate::output;
use crate::render::{final_line, outcome_code, progress_text};
use crate::settings::Context;

pub async fn wait(ctx: &Context, args: &WaitArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    let operation = ctx.client.wait_until_done(&id, args.timeout).await?;
    if ctx.json {
        output::json(&operation);
    } else if operation.done {
        say!("{}", final_line(&operation));
    } else {
        let waited = args
            .timeout
            .map(|limit| humantime::format_duration(limit).to_string())
            .unwrap_or_default();
        say!(
            "timed out after {waited}: {id} is still {} ({})",
            operation.status,
            progress_text(
                operation.progress.percent,
                operation.progress.message.as_deref()
            )
        );
    }
    Ok(outcome_code(operation.status))
}
