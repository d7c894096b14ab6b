//! Following an operation to its end: `watch` and `start --watch` over the
//! WebSocket, `status --watch` by polling. Ctrl-C stops following and
//! leaves the operation running (exit 130), unless `--cancel-on-interrupt`.

use longrun_client::{Client, Code, EventType, WatchUpdate};

use crate::args::{StatusArgs, WatchArgs};
use crate::commands::{Outcome, operation_id};
use crate::display::Live;
use crate::failure::exit;
use crate::output;
use crate::render::{final_line, outcome_code};
use crate::settings::Context;

pub async fn watch(ctx: &Context, args: &WatchArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    follow(ctx, &id, args.cancel_on_interrupt).await
}

/// Follows `id` over the WebSocket until its terminal event; the exit
/// code tells the outcome. As NDJSON, every event from seq 1.
pub async fn follow(ctx: &Context, id: &str, cancel_on_interrupt: bool) -> Outcome {
    let mut interrupt = Interrupt::new();
    let operation = ctx.client.get(id).await?;
    let mut live = Live::new(ctx.json, &operation);
    if operation.done && !ctx.json {
        return Ok(live.finish(&operation));
    }
    let after_seq = if ctx.json { 0 } else { operation.seq };
    let mut watch = ctx.client.watch(id, Some(after_seq));
    let mut terminal = None;
    loop {
        let update = tokio::select! {
            update = watch.next_update() => update,
            () = interrupt.recv() => {
                live.abandon();
                return interrupted(ctx, id, cancel_on_interrupt).await;
            }
        };
        match update {
            Ok(Some(update)) => {
                if let WatchUpdate::Event(event) = &update
                    && event.event_type.is_terminal()
                {
                    terminal = Some(event.event_type);
                }
                live.update(&update);
            }
            Ok(None) => break,
            Err(err) => {
                live.abandon();
                return Err(err.into());
            }
        }
    }
    match (ctx.json, terminal) {
        (true, Some(EventType::Succeeded)) => Ok(exit::OK),
        (true, Some(EventType::Failed)) => Ok(exit::FAILED),
        (true, Some(EventType::Cancelled)) => Ok(exit::CANCELLED),
        _ => {
            let operation = ctx.client.get(id).await?;
            Ok(live.finish(&operation))
        }
    }
}

/// `status --watch`: polls (honouring `Retry-After`) until done.
pub async fn poll(ctx: &Context, args: &StatusArgs) -> Outcome {
    let id = operation_id(&args.id)?;
    let mut interrupt = Interrupt::new();
    let first = ctx.client.get(&id).await?;
    let mut live = Live::new(ctx.json, &first);
    live.state(&first);
    if first.done {
        return Ok(live.finish(&first));
    }
    let polled = {
        let polling = ctx.client.poll_until_done(&id, |op| live.state(op));
        tokio::select! {
            polled = polling => Some(polled),
            () = interrupt.recv() => None,
        }
    };
    match polled {
        Some(Ok(operation)) => Ok(live.finish(&operation)),
        Some(Err(err)) => {
            live.abandon();
            Err(err.into())
        }
        None => {
            live.abandon();
            interrupted(ctx, &id, args.cancel_on_interrupt).await
        }
    }
}

/// After Ctrl-C: say that the operation goes on, or cancel it.
async fn interrupted(ctx: &Context, id: &str, cancel: bool) -> Outcome {
    if !cancel {
        note!("stopped watching {id}: it keeps running (`longrun cancel {id}` stops it)");
        return Ok(exit::INTERRUPTED);
    }
    cancel_now(&ctx.client, id, ctx.json).await
}

async fn cancel_now(client: &Client, id: &str, json: bool) -> Outcome {
    match client.cancel(id).await {
        Ok(operation) => {
            note!("interrupted: cancelled {id} and its children");
            if json {
                output::json(&operation);
            }
            Ok(exit::CANCELLED)
        }
        Err(err) if err.code() == Some(Code::Conflict) => {
            let operation = client.get(id).await?;
            note!(
                "interrupted: {id} had already finished: {}",
                final_line(&operation)
            );
            Ok(outcome_code(operation.status))
        }
        Err(err) => Err(err.into()),
    }
}

/// Ctrl-C, caught from the moment it is made (a signal in between two
/// polls is not lost).
struct Interrupt {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Interrupt {
                signal: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Interrupt {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        match &mut self.signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
