//! The client commands: start, status, watch, wait, cancel, delete, list,
//! events, children, kinds and token.

use std::io::Read;
use std::time::{Duration, Instant};

use longrun_client::{Client, ClientError, FailurePolicy, ListOptions, StartOptions};
use longrun_shared::auth::{TokenRequest, mint};
use longrun_shared::model::Operation;
use serde_json::{Value, json};

use crate::args::{
    ChildrenArgs, ClientArgs, EventsArgs, IdArgs, ListArgs, PolicyArg, StartArgs, StatusArgs,
    TokenArgs, WaitArgs, WatchArgs,
};
use crate::display::{self, Display, print_json};
use crate::failure::{Failure, exit};
use crate::settings;

type Outcome = Result<u8, Failure>;

pub fn token(args: &TokenArgs) -> Outcome {
    let secret = std::env::var("LONGRUN_JWT_SECRET").unwrap_or_default();
    if secret.len() < 16 {
        return Err(Failure::usage(
            "LONGRUN_JWT_SECRET must be set (at least 16 characters) to mint tokens; `longrun dev` prints it",
        ));
    }
    let issuer = std::env::var("LONGRUN_JWT_ISSUER")
        .ok()
        .filter(|v| !v.is_empty());
    let audience = std::env::var("LONGRUN_JWT_AUDIENCE")
        .ok()
        .filter(|v| !v.is_empty());
    let token = mint(
        &secret,
        &TokenRequest {
            sub: &args.sub,
            roles: args.roles.clone(),
            ttl: args.ttl,
            issuer: issuer.as_deref(),
            audience: audience.as_deref(),
        },
    )
    .map_err(|err| Failure::usage(format!("cannot mint a token: {err}")))?;
    if args.json {
        print_json(&json!({ "token": token }));
    } else {
        println!("{token}");
    }
    Ok(exit::OK)
}

fn read_input(raw: Option<&str>) -> Result<Value, Failure> {
    let text = match raw {
        None => return Ok(json!({})),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|err| {
                Failure::usage(format!("cannot read the input from stdin: {err}"))
            })?;
            text
        }
        Some(path) if path.starts_with('@') => std::fs::read_to_string(&path[1..])
            .map_err(|err| Failure::usage(format!("cannot read {}: {err}", &path[1..])))?,
        Some(text) => text.to_owned(),
    };
    serde_json::from_str(&text)
        .map_err(|err| Failure::usage(format!("the input is not valid JSON: {err}")))
}

pub async fn start(args: &StartArgs) -> Outcome {
    let input = read_input(args.input.as_deref())?;
    let client = settings::client(&args.client)?;
    let options = StartOptions {
        idempotency_key: args.idempotency_key.clone(),
        max_attempts: args.max_attempts,
        timeout_ms: args.timeout.map(|d| d.as_millis() as u64),
        deadline_ms: args.deadline.map(|d| d.as_millis() as u64),
        failure_policy: args.failure_policy.map(|policy| match policy {
            PolicyArg::FailFast => FailurePolicy::FailFast,
            PolicyArg::WaitAll => FailurePolicy::WaitAll,
            PolicyArg::IgnoreFailures => FailurePolicy::IgnoreFailures,
        }),
        ..StartOptions::default()
    };
    let operation = client.start(&args.kind, &input, &options).await?;
    if args.watch {
        if !args.client.json {
            eprintln!("started {}", operation.id);
        }
        return follow(
            &client,
            &operation.id,
            args.client.json,
            args.cancel_on_interrupt,
        )
        .await;
    }
    if args.client.json {
        print_json(&operation);
    } else {
        println!("{}", operation.id);
    }
    Ok(exit::OK)
}

pub async fn status(args: &StatusArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    if !args.watch {
        let operation = client.get(&args.id).await?;
        if args.client.json {
            print_json(&operation);
        } else {
            print_operation(&operation);
        }
        return Ok(exit::OK);
    }
    let json = args.client.json;
    let mut last_seq = 0;
    let operation = client
        .poll_until_done(&args.id, |operation| {
            if operation.seq != last_seq || operation.done {
                last_seq = operation.seq;
                if json {
                    print_json(operation);
                } else {
                    println!(
                        "{} {:.1}% {}",
                        operation.status,
                        operation.progress.percent,
                        operation.progress.message.as_deref().unwrap_or("")
                    );
                }
            }
        })
        .await?;
    if !json {
        println!("{}", display::final_line(&operation));
    }
    Ok(display::outcome_code(operation.status))
}

pub async fn watch(args: &WatchArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    follow(
        &client,
        &args.id,
        args.client.json,
        args.cancel_on_interrupt,
    )
    .await
}

/// Follows an operation to its end over the WebSocket; the exit code tells the outcome.
async fn follow(client: &Client, id: &str, json: bool, cancel_on_interrupt: bool) -> Outcome {
    let operation = client.get(id).await?;
    let display = Display::new(json, &operation);
    if operation.done && !json {
        return Ok(display.finish(&operation));
    }
    // JSON output is the whole log; the bar starts from the current state.
    let after_seq = if json { 0 } else { operation.seq };
    let mut events = client.watch(id, Some(after_seq));
    let interrupted = loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = tokio::signal::ctrl_c() => break true,
        };
        match next {
            Ok(Some(event)) => display.show_event(&event),
            Ok(None) => break false,
            Err(err) => {
                display.abandon();
                return Err(err.into());
            }
        }
    };
    if interrupted {
        display.abandon();
        if cancel_on_interrupt {
            let cancelled = client.cancel(id).await?;
            eprintln!("cancelled {id}");
            return Ok(display::outcome_code(cancelled.status));
        }
        eprintln!("stopped watching; {id} keeps running (`longrun cancel {id}` stops it)");
        return Ok(130);
    }
    let operation = client.get(id).await?;
    Ok(display.finish(&operation))
}

pub async fn wait(args: &WaitArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    let started = Instant::now();
    loop {
        let left = match args.timeout {
            Some(limit) => match limit.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => {
                    let operation = client.get(&args.id).await?;
                    return finish_wait(&operation, args.client.json);
                }
            },
            None => Duration::from_secs(60),
        };
        match client
            .wait(&args.id, left.min(Duration::from_secs(60)))
            .await
        {
            Ok(operation) if operation.done => return finish_wait(&operation, args.client.json),
            Ok(_) => {}
            Err(ClientError::Problem {
                problem,
                retry_after: Some(seconds),
            }) if problem.code == longrun_shared::problem::Code::Unavailable => {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn finish_wait(operation: &Operation, json: bool) -> Outcome {
    if json {
        print_json(operation);
    } else if operation.done {
        println!("{}", display::final_line(operation));
    } else {
        println!("still {} after the timeout", operation.status);
    }
    Ok(display::outcome_code(operation.status))
}

pub async fn cancel(args: &IdArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    let operation = client.cancel(&args.id).await?;
    if args.client.json {
        print_json(&operation);
    } else {
        println!("{} {}", operation.id, operation.status);
    }
    Ok(exit::OK)
}

pub async fn delete(args: &IdArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    client.delete(&args.id).await?;
    if args.client.json {
        print_json(&json!({ "deleted": args.id }));
    } else {
        println!("deleted {}", args.id);
    }
    Ok(exit::OK)
}

pub async fn list(args: &ListArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    let page = client
        .list(&ListOptions {
            status: args.status,
            kind: args.kind.clone(),
            cursor: args.cursor.clone(),
            limit: Some(args.limit),
            owner: None,
        })
        .await?;
    if args.client.json {
        print_json(&page);
        return Ok(exit::OK);
    }
    print_table(&page.operations);
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor}");
    }
    Ok(exit::OK)
}

fn print_table(operations: &[Operation]) {
    println!(
        "{:<36}  {:<14}  {:<9}  {:>6}  CREATED",
        "ID", "KIND", "STATUS", "%"
    );
    for op in operations {
        println!(
            "{:<36}  {:<14}  {:<9}  {:>6.1}  {}",
            op.id,
            op.kind,
            op.status.as_str(),
            op.progress.percent,
            op.created_at.get(..19).unwrap_or(&op.created_at)
        );
    }
}

fn print_operation(op: &Operation) {
    println!("id        {}", op.id);
    println!("kind      {}", op.kind);
    println!("status    {}", op.status);
    println!(
        "progress  {:.1}% {}",
        op.progress.percent,
        op.progress.message.as_deref().unwrap_or("")
    );
    println!("attempt   {}/{}", op.attempt, op.max_attempts);
    if op.children.total > 0 {
        let c = &op.children;
        println!(
            "children  {} total: {} queued, {} running, {} succeeded, {} failed, {} cancelled",
            c.total, c.queued, c.running, c.succeeded, c.failed, c.cancelled
        );
    }
    if op.done {
        println!("outcome   {}", display::final_line(op));
    }
}

pub async fn events(args: &EventsArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    let page = client.events(&args.id, args.after_seq, args.limit).await?;
    if args.client.json {
        print_json(&page);
        return Ok(exit::OK);
    }
    for event in &page.events {
        println!(
            "{:>5}  {}  {:<14}  {}",
            event.seq,
            event.at,
            serde_json::to_value(event.event_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            display::compact(&event.data)
        );
    }
    Ok(exit::OK)
}

pub async fn children(args: &ChildrenArgs) -> Outcome {
    let client = settings::client(&args.client)?;
    let page = client
        .children(&args.id, args.cursor.as_deref(), args.limit)
        .await?;
    if args.client.json {
        print_json(&page);
        return Ok(exit::OK);
    }
    print_table(&page.operations);
    if let Some(cursor) = page.next_cursor {
        println!("more: --cursor {cursor}");
    }
    Ok(exit::OK)
}

pub async fn kinds(args: &ClientArgs) -> Outcome {
    let client = settings::client(args)?;
    let kinds = client.kinds().await?;
    if args.json {
        print_json(&json!({ "kinds": kinds }));
        return Ok(exit::OK);
    }
    for kind in kinds {
        println!("{}\n  {}", kind.kind, kind.description);
        let schema =
            serde_json::to_string_pretty(&kind.input_schema["properties"]).unwrap_or_default();
        for line in schema.lines() {
            println!("    {line}");
        }
        println!();
    }
    Ok(exit::OK)
}
