//! `throughput`: N jobs of `demo.sleep {"duration_ms": 0, "steps": 1}`
//! (the closest to a no-op a user can start: it still reports one progress
//! step) are queued through the api while no worker runs; then W worker
//! processes at concurrency K are started and drain them.
//!
//! Time runs from the first `started` event to the N-th terminal event,
//! both seen on Redis pub/sub by this process (longrun: the owner's
//! channel; peer stack: its event channel), so process start-up is not
//! counted. Redis commands per job come from `INFO commandstats` deltas
//! over the drain (commands inside Lua scripts included). A second, smaller
//! drain under `MONITOR` splits them into commands sent by clients (each at
//! most one round trip) and commands run inside scripts; it is slower and
//! its speed is not reported.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::Report;
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::redis_probe::{self, Monitor};
use crate::stats::{rate, round};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Jobs to drain.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Jobs sampled under MONITOR afterwards (0: skip).
    #[arg(long, default_value_t = 2_000)]
    pub monitor_jobs: usize,
    /// Give up after this many seconds per drain.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
}

const OWNER: &str = "bench-throughput";

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    let mut platform = Platform::start(
        target,
        setup,
        Roles {
            api: true,
            ..Roles::default()
        },
    )?;
    let api = Api::new(&platform.api_url)?;
    let token = platform.token(OWNER)?;
    let mut probe = redis_probe::connect(&platform.redis_url()).await?;

    enqueue(&api, &token, args.jobs).await?;
    let before_calls = redis_probe::command_calls(&mut probe).await?;
    let before_cpu = platform.stats();
    let drained = drain(&mut platform, args, args.jobs).await?;
    let calls = redis_probe::calls_between(
        &before_calls,
        &redis_probe::command_calls(&mut probe).await?,
    );
    let cpu = cpu_between(&before_cpu, &platform.stats());
    platform.ensure_running()?;

    let monitored = if args.monitor_jobs > 0 {
        platform.stop_workers();
        enqueue(&api, &token, args.monitor_jobs).await?;
        let monitor = Monitor::start(platform.redis.port()).await?;
        let sample = drain(&mut platform, args, args.monitor_jobs).await?;
        let counts = monitor.finish().await?;
        let from_clients: u64 = counts.from_clients.values().sum();
        let per_job = |n: u64| round(n as f64 / sample.terminal.max(1) as f64, 2);
        Some(json!({
            "jobs": args.monitor_jobs,
            "finished": sample.terminal,
            "client_commands_per_job": per_job(from_clients),
            "script_commands_per_job": per_job(counts.in_scripts),
            "client_commands": counts.from_clients,
        }))
    } else {
        None
    };

    let total_calls: u64 = calls.values().sum();
    let commands_per_job = round(total_calls as f64 / drained.terminal.max(1) as f64, 2);
    let jobs_per_s = rate(drained.terminal, drained.seconds);
    let mut report = Report::new("throughput", target);
    report.set("jobs", args.jobs);
    report.set("workers", args.workers);
    report.set("concurrency", setup.worker_concurrency);
    report.set("succeeded", drained.succeeded);
    report.set("failed", drained.terminal - drained.succeeded);
    report.set("timed_out", drained.timed_out);
    report.set("seconds", round(drained.seconds, 3));
    report.set("jobs_per_s", jobs_per_s);
    report.set("redis_commands_per_job", commands_per_job);
    report.set("redis_commands", &calls);
    report.set("monitor_sample", &monitored);
    report.set("cpu_s", &cpu);
    report.row(
        "jobs / workers x concurrency",
        format!(
            "{} / {} x {}",
            args.jobs, args.workers, setup.worker_concurrency
        ),
    );
    report.row(
        "succeeded / failed / timed out",
        format!(
            "{} / {} / {}",
            drained.succeeded,
            drained.terminal - drained.succeeded,
            drained.timed_out
        ),
    );
    report.row("jobs/s", format!("{jobs_per_s} ({:.2} s)", drained.seconds));
    report.row("Redis commands per job (incl. in scripts)", commands_per_job.to_string());
    if let Some(sample) = &monitored {
        report.row(
            "client commands per job (MONITOR sample)",
            sample["client_commands_per_job"].to_string(),
        );
    }
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// Queues `count` jobs through the api, 50 requests in flight.
async fn enqueue(api: &Api, token: &str, count: usize) -> Result<()> {
    let input = json!({"duration_ms": 0, "steps": 1});
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (api, token, input, next) = (api.clone(), token.to_owned(), input.clone(), next.clone());
        tasks.spawn(async move {
            let mut refused = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                if !matches!(api.start(&token, "demo.sleep", &input).await, Started::Accepted { .. }) {
                    refused += 1;
                }
            }
            refused
        });
    }
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        refused += joined?;
    }
    if refused > 0 {
        bail!("{refused} of {count} starts were refused while queueing");
    }
    Ok(())
}

struct Drained {
    succeeded: u64,
    terminal: u64,
    seconds: f64,
    timed_out: bool,
}

#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    event: String,
    #[serde(default)]
    owner: Option<String>,
}

/// Starts the workers and counts events until `count` jobs are terminal.
async fn drain(platform: &mut Platform, args: &Args, count: usize) -> Result<Drained> {
    let client = redis::Client::open(platform.redis_url())?;
    let mut pubsub = client.get_async_pubsub().await?;
    let channel = match platform.target {
        Target::Longrun => longrun_shared::keys::Keys::new("lr").owner_channel(OWNER),
        Target::Peer => "operations:events".to_owned(),
    };
    pubsub.subscribe(&channel).await?;
    let mut messages = pubsub.into_on_message();
    let workers = args.workers;
    platform.start_workers(workers)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let (mut first, mut last) = (None, None);
    let (mut succeeded, mut terminal) = (0u64, 0u64);
    while terminal < count as u64 {
        let Ok(next) = tokio::time::timeout_at(deadline.into(), messages.next()).await else {
            break;
        };
        let Some(message) = next else { break };
        let Ok(head) = serde_json::from_slice::<EventHead>(message.get_payload_bytes()) else {
            continue;
        };
        if head.owner.as_deref().is_some_and(|owner| owner != OWNER) {
            continue;
        }
        match head.event.as_str() {
            "started" if first.is_none() => first = Some(Instant::now()),
            "succeeded" => {
                succeeded += 1;
                terminal += 1;
                last = Some(Instant::now());
            }
            "failed" | "cancelled" => {
                terminal += 1;
                last = Some(Instant::now());
            }
            _ => {}
        }
    }
    let seconds = match (first, last) {
        (Some(first), Some(last)) => (last - first).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Drained {
        succeeded,
        terminal,
        seconds,
        timed_out: terminal < count as u64,
    })
}
