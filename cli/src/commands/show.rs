//! The read-only commands: `status` (without --watch), `list`, `events`,
//! `children` and `kinds`.

use longrun_client::{EventPage, ListOptions, OperationPage};
use serde_json::json;

use crate::args::{ChildrenArgs, EventsArgs, KindsArgs, ListArgs, StatusArgs};
use crate::commands::{Outcome, follow, operation_id};
use crate::failure::{Failure, exit};
use crate::output;
use crate::render::{event_line, kind_lines, operation_details, operations_table};
use crate::settings::Context;

pub async fn status(ctx: &Context, args: &StatusArgs) -> Outcome {
    if args.watch {
        return follow::poll(ctx, args).await;
    }
    let id = operation_id(&args.id)?;
    let operation = ctx.client.get(&id).await?;
    if ctx.json {
        output::json(&operation);
    } else {
        for line in operation_details(&operation) {
            say!("{line}");
        }
    }
    Ok(exit::OK)
}

pub async fn list(ctx: &Context, args: &ListArgs) -> Outcome {
    let page = ctx
        .client
        .list(&ListOptions {
            status: args.status,
            kind: args.kind.clone(),
            cursor: args.cursor.clone(),
            limit: Some(usize::from(args.limit)),
            owner: args.owner.clone(),
        })
        .await?;
    print_page(
        ctx,
        &page,
        "longrun list",
        "no operations (`longrun start KIND` starts one)",
    );
    Ok(exit::OK)
}

pub async fn children(ctx: &Context, args: &ChildrenArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    let page = ctx
        .client
        .children(&id, args.cursor.as_deref(), usize::from(args.limit))
        .await?;
    let again = format!("longrun children {id}");
    print_page(ctx, &page, &again, "no children");
    Ok(exit::OK)
}

fn print_page(ctx: &Context, page: &OperationPage, again: &str, empty: &str) {
    if ctx.json {
        output::json(page);
        return;
    }
    if page.operations.is_empty() {
        note!("{empty}");
        return;
    }
    for line in operations_table(&page.operations) {
        say!("{line}");
    }
    if let Some(cursor) = &page.next_cursor {
        note!("more: {again} --cursor {cursor}");
    }
}

pub async fn events(ctx: &Context, args: &EventsArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    let page = match args.limit {
        Some(limit) => {
            ctx.client
                .events(&id, args.after_seq, usize::from(limit))
                .await?
        }
        None => {
            let events = ctx.client.all_events(&id, args.after_seq).await?;
            let next_seq = events.last().map_or(args.after_seq, |event| event.seq);
            EventPage { events, next_seq }
        }
    };
    if ctx.json {
        output::json(&page);
        return Ok(exit::OK);
    }
    for event in &page.events {
        say!("{}", event_line(event));
    }
    Ok(exit::OK)
}

pub async fn kinds(ctx: &Context, args: &KindsArgs) -> Outcome {
    let mut kinds = ctx.client.kinds().await?;
    if let Some(wanted) = &args.kind {
        kinds.retain(|spec| &spec.kind == wanted);
        if kinds.is_empty() {
            return Err(Failure::usage(format!(
                "no kind `{wanted}` here (`longrun kinds` lists them)"
            )));
        }
    }
    if ctx.json {
        output::json(&json!({ "kinds": kinds }));
        return Ok(exit::OK);
    }
    for (index, spec) in kinds.iter().enumerate() {
        if index > 0 {
            say!("");
        }
        for line in kind_lines(spec, args.kind.is_some()) {
            say!("{line}");
        }
    }
    Ok(exit::OK)
}
