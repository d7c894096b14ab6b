//! `e2e`: K clients, each its own owner with a WebSocket subscribed to its
//! owner's events, each POSTing `demo.sleep {"duration_ms": 0, "steps":
//! S}` and waiting for that operation's terminal event, N times in all.
//! Reports POST → terminal-event latency p50/p95/p99/max and failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::{Report, connect_many};
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::stats::{Summary, round};
use crate::ws::{Incoming, WsClient};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Operations in flight (one client each).
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Operations in all.
    #[arg(long, default_value_t = 1_000)]
    pub iterations: usize,
    /// Progress steps of each operation.
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Subscribe to each operation after its POST (longrun: with `after_seq: 0`,
    /// replaying its log; the peer's ack carries a snapshot) instead of to the owner beforehand.
    #[arg(long)]
    pub per_operation: bool,
}

#[derive(Default)]
struct Outcome {
    latencies_ms: Vec<f64>,
    failures: Vec<String>,
    /// Operations whose end was learnt from a subscribe answer's snapshot, not from an event.
    via_snapshot: u64,
}

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    let mut platform = Platform::start(target, setup, Roles::full())?;
    let api = Api::new(&platform.api_url)?;
    let owner = |i: usize| format!("bench-e2e-{i}");
    let clients = connect_many(
        target,
        &platform.ws_url,
        args.concurrency,
        !args.per_operation,
        |i| platform.token(&owner(i)),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let next = Arc::new(AtomicUsize::new(0));
    let input = json!({"duration_ms": 0, "steps": args.steps});
    let before = platform.stats();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(300);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let (api, token, input, next) = (
            api.clone(),
            platform.token(&owner(index))?,
            input.clone(),
            next.clone(),
        );
        let (iterations, per_operation) = (args.iterations, args.per_operation);
        tasks.spawn(async move {
            let mut outcome = Outcome::default();
            let mut client = client;
            while next.fetch_add(1, Ordering::Relaxed) < iterations && Instant::now() < deadline {
                match round_trip(&api, &token, &input, &mut client, per_operation).await {
                    Ok((latency, true)) => {
                        outcome.latencies_ms.push(latency);
                        outcome.via_snapshot += 1;
                    }
                    Ok((latency, false)) => outcome.latencies_ms.push(latency),
                    Err(err) => outcome.failures.push(err.to_string()),
                }
            }
            client.close().await;
            outcome
        });
    }
    let mut all = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined?;
        all.latencies_ms.extend(outcome.latencies_ms);
        all.failures.extend(outcome.failures);
        all.via_snapshot += outcome.via_snapshot;
    }
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_between(&before, &platform.stats());
    platform.ensure_running()?;

    let latency = Summary::of(all.latencies_ms);
    let mut report = Report::new("e2e", target);
    report.set("concurrency", args.concurrency);
    report.set("iterations", args.iterations);
    report.set("steps", args.steps);
    report.set(
        "subscribe",
        if args.per_operation {
            "operation"
        } else {
            "owner"
        },
    );
    report.set("terminal_via_snapshot", all.via_snapshot);
    report.set("completed", latency.n);
    report.set("failures", all.failures.len());
    report.set(
        "failure_examples",
        all.failures.iter().take(3).collect::<Vec<_>>(),
    );
    report.set("seconds", round(elapsed, 3));
    report.set("post_to_terminal_ms", &latency);
    report.set("cpu_s", &cpu);
    report.row(
        "operations / in flight",
        format!(
            "{} / {} ({} steps each)",
            args.iterations, args.concurrency, args.steps
        ),
    );
    report.row(
        "completed / failures",
        format!("{} / {}", latency.n, all.failures.len()),
    );
    report.row("POST -> terminal ms p50/p95/p99/max", latency.line());
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// One POST and the wait for its terminal event: the latency in ms, and
/// whether the end was learnt from a subscribe answer's snapshot.
async fn round_trip(
    api: &Api,
    token: &str,
    input: &serde_json::Value,
    client: &mut WsClient,
    per_operation: bool,
) -> Result<(f64, bool)> {
    let began = Instant::now();
    let id = match api.start(token, "demo.sleep", input).await {
        Started::Accepted { id, .. } => id,
        Started::Refused { status } => anyhow::bail!("POST answered {status}"),
        Started::Failed => anyhow::bail!("POST failed"),
    };
    if per_operation {
        client.subscribe_operation(&id, Some(0)).await?;
    }
    loop {
        let remaining = Duration::from_secs(30).saturating_sub(began.elapsed());
        match client.next_within(remaining).await? {
            Some(Incoming::Event(event)) if event.operation_id == id && event.is_terminal() => {
                return Ok((began.elapsed().as_secs_f64() * 1000.0, false));
            }
            Some(Incoming::Subscribed { done: true }) => {
                return Ok((began.elapsed().as_secs_f64() * 1000.0, true));
            }
            Some(Incoming::Closed(code)) => anyhow::bail!("the WebSocket closed ({code:?})"),
            Some(Incoming::Error(message)) => anyhow::bail!("error frame: {message}"),
            Some(_) => {}
            None => anyhow::bail!("no terminal event within 30 s"),
        }
    }
}
