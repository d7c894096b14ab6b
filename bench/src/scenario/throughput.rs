//! `throughput`: N jobs of `demo.sleep {"duration_ms": 0, "steps": 1}`
//! (the closest to a no-op a user can start: it still reports one progress
//! step) are queued through the api while no worker runs; then W worker
//! processes at concurrency K are started and drain them.
//!
//! Time runs from the first job's start to the last job's end as the
//! system recorded them (longrun: the `at` of the `started` and terminal
//! events in the operations' logs; peer stack: BullMQ's `processedOn` and
//! `finishedOn`), so process start-up is not counted. Completion is found by
//! polling Redis every 20 ms (longrun: the queue's consumer group has
//! nothing pending or unread; peer: BullMQ's completed and failed sets), so
//! no extra subscriber loads Redis during the drain. Redis commands per job come from `INFO commandstats` deltas
//! over the drain (commands inside Lua scripts included). A second, smaller
//! drain under `MONITOR` splits them into commands sent by clients (each at
//! most one round trip) and commands run inside scripts; it is slower and
//! its speed is not reported.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use std::collections::HashMap;

use longrun_shared::keys::Keys;
use longrun_shared::model::{EventFrame, EventType};
use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::Report;
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::redis_probe::{self, Monitor, MonitorCounts};
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

    let ids = enqueue(&api, &token, args.jobs).await?;
    let before_stats = redis_probe::command_stats(&mut probe).await?;
    let before_cpu = platform.stats();
    let (drained, _) = drain(&mut platform, args, &ids, None).await?;
    let redis_probe::CommandStats { calls, usec } = redis_probe::command_stats(&mut probe)
        .await?
        .since(&before_stats);
    let cpu = cpu_between(&before_cpu, &platform.stats());
    platform.ensure_running()?;

    let monitored = if args.monitor_jobs > 0 {
        platform.stop_workers();
        let ids = enqueue(&api, &token, args.monitor_jobs).await?;
        let monitor = Monitor::start(platform.redis.port()).await?;
        let (sample, counts) = drain(&mut platform, args, &ids, Some(monitor)).await?;
        let counts = counts.unwrap_or_default();
        let from_clients: u64 = counts.from_clients.values().sum();
        let per_job = |n: u64| round(n as f64 / sample.terminal.max(1) as f64, 2);
        Some(json!({
            "jobs": args.monitor_jobs,
            "finished": sample.terminal,
            "client_commands_per_job": per_job(from_clients),
            "script_commands_per_job": per_job(counts.in_scripts),
            "client_commands": counts.from_clients,
            "left_out_probe_commands": redis_probe::PROBE_COMMANDS,
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
    report.set("redis_usec", &usec);
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
    report.row(
        "Redis commands per job (incl. in scripts)",
        commands_per_job.to_string(),
    );
    if let Some(sample) = &monitored {
        report.row(
            "client commands per job (MONITOR sample)",
            sample["client_commands_per_job"].to_string(),
        );
    }
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// Queues `count` jobs through the api, 50 requests in flight; their ids.
async fn enqueue(api: &Api, token: &str, count: usize) -> Result<Vec<String>> {
    let input = json!({"duration_ms": 0, "steps": 1});
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (api, token, input, next) =
            (api.clone(), token.to_owned(), input.clone(), next.clone());
        tasks.spawn(async move {
            let (mut ids, mut refused) = (Vec::new(), 0u64);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                match api.start(&token, "demo.sleep", &input).await {
                    Started::Accepted { id, .. } => ids.push(id),
                    _ => refused += 1,
                }
            }
            (ids, refused)
        });
    }
    let (mut ids, mut refused) = (Vec::with_capacity(count), 0);
    while let Some(joined) = tasks.join_next().await {
        let (some, failed) = joined?;
        ids.extend(some);
        refused += failed;
    }
    if refused > 0 {
        bail!("{refused} of {count} starts were refused while queueing");
    }
    Ok(ids)
}

struct Drained {
    succeeded: u64,
    terminal: u64,
    seconds: f64,
    timed_out: bool,
}

/// Starts the workers, waits until the queue is drained (then stops
/// `monitor`, before reading), and reads when the jobs ran from what the
/// system recorded.
async fn drain(
    platform: &mut Platform,
    args: &Args,
    ids: &[String],
    monitor: Option<Monitor>,
) -> Result<(Drained, Option<MonitorCounts>)> {
    let mut probe = redis_probe::connect(&platform.redis_url()).await?;
    let finished_before = finished(platform.target, &mut probe).await?;
    platform.start_workers(args.workers)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut timed_out = true;
    while Instant::now() < deadline {
        if drained(
            platform.target,
            &mut probe,
            finished_before,
            ids.len() as u64,
        )
        .await?
        {
            timed_out = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = match monitor {
        Some(monitor) => Some(monitor.finish().await?),
        None => None,
    };
    let spans = match platform.target {
        Target::Longrun => longrun_spans(&mut probe, ids).await?,
        Target::Peer => peer_spans(&mut probe, ids).await?,
    };
    let first = spans.iter().filter_map(|s| s.start_ms).reduce(f64::min);
    let last = spans.iter().filter_map(|s| s.end_ms).reduce(f64::max);
    let drained = Drained {
        succeeded: spans.iter().filter(|s| s.succeeded).count() as u64,
        terminal: spans.iter().filter(|s| s.end_ms.is_some()).count() as u64,
        seconds: first.zip(last).map_or(0.0, |(a, b)| (b - a) / 1000.0),
        timed_out,
    };
    Ok((drained, counts))
}

/// Jobs the peer stack finished so far (longrun: unused, 0).
async fn finished(target: Target, probe: &mut MultiplexedConnection) -> Result<u64> {
    Ok(match target {
        Target::Longrun => 0,
        Target::Peer => {
            let (completed, failed): (u64, u64) = redis::pipe()
                .cmd("ZCARD")
                .arg(PEER_COMPLETED)
                .cmd("ZCARD")
                .arg(PEER_FAILED)
                .query_async(probe)
                .await?;
            completed + failed
        }
    })
}

const PEER_COMPLETED: &str = "bull:operations:completed";
const PEER_FAILED: &str = "bull:operations:failed";

/// True once every queued job is finished.
async fn drained(
    target: Target,
    probe: &mut MultiplexedConnection,
    finished_before: u64,
    count: u64,
) -> Result<bool> {
    match target {
        Target::Peer => Ok(finished(target, probe).await? >= finished_before + count),
        Target::Longrun => {
            // Nothing pending (claimed, not acknowledged) and nothing unread (lag 0;
            // workers delete acknowledged entries, after which Redis may not know the
            // lag, but then the stream is empty).
            let ready = Keys::new("lr").ready(0);
            let length: u64 = redis::cmd("XLEN").arg(&ready).query_async(probe).await?;
            let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(&ready)
                .query_async(probe)
                .await?;
            let number = |group: &HashMap<String, redis::Value>, field: &str| match group.get(field)
            {
                Some(redis::Value::Int(n)) => Some(*n),
                _ => None,
            };
            Ok(groups.iter().any(|group| {
                number(group, "pending") == Some(0)
                    && (number(group, "lag") == Some(0) || length == 0)
            }))
        }
    }
}

/// When one job started and ended (ms since the epoch).
struct Span {
    start_ms: Option<f64>,
    end_ms: Option<f64>,
    succeeded: bool,
}

/// From each operation's event log: the first `started` and the terminal event.
async fn longrun_spans(probe: &mut MultiplexedConnection, ids: &[String]) -> Result<Vec<Span>> {
    let keys = Keys::new("lr");
    let mut spans = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.lrange(keys.log(id, id), 0, -1);
        }
        let logs: Vec<Vec<String>> = pipe.query_async(probe).await?;
        for log in logs {
            let mut span = Span {
                start_ms: None,
                end_ms: None,
                succeeded: false,
            };
            for frame in log {
                let Ok(frame) = serde_json::from_str::<EventFrame>(&frame) else {
                    continue;
                };
                let at = rfc3339_ms(&frame.at);
                match frame.event {
                    EventType::Started if span.start_ms.is_none() => span.start_ms = at,
                    EventType::Succeeded => {
                        span.end_ms = at;
                        span.succeeded = true;
                    }
                    EventType::Failed | EventType::Cancelled => span.end_ms = at,
                    _ => {}
                }
            }
            spans.push(span);
        }
    }
    Ok(spans)
}

/// From BullMQ's job hashes: `processedOn` and `finishedOn`.
async fn peer_spans(probe: &mut MultiplexedConnection, ids: &[String]) -> Result<Vec<Span>> {
    let mut spans = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("bull:operations:{id}"))
                .arg("processedOn")
                .arg("finishedOn")
                .arg("failedReason");
        }
        let rows: Vec<(Option<f64>, Option<f64>, Option<String>)> = pipe.query_async(probe).await?;
        for (processed, finished, failed) in rows {
            spans.push(Span {
                start_ms: processed,
                end_ms: finished,
                succeeded: finished.is_some() && failed.is_none(),
            });
        }
    }
    Ok(spans)
}

fn rfc3339_ms(at: &str) -> Option<f64> {
    let time = humantime::parse_rfc3339(at).ok()?;
    Some(
        time.duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64()
            * 1000.0,
    )
}
