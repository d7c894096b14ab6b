//! `initiate`: C keep-alive HTTP clients each starting `demo.sleep
//! {"duration_ms": 0, "steps": 1}` one after the other for T seconds,
//! against the whole deployed platform (api, one worker, gateway), after a
//! warm-up that is not measured. Reports req/s, latency p50/p95/p99/max,
//! errors by status, how long the backlog took to drain, and CPU seconds
//! per process, and what Redis ran meanwhile (`INFO commandstats`: calls
//! and microseconds per command, the jobs' execution included).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::Report;
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::redis_probe;
use crate::stats::{Summary, rate, round};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Unmeasured warm-up seconds before.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_seconds: f64,
    /// Upper bound on measured requests.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_requests: u64,
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    refused: BTreeMap<u16, u64>,
    failed: u64,
    last_id: Option<String>,
}

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    let mut platform = Platform::start(target, setup, Roles::full())?;
    let api = Api::new(&platform.api_url)?;
    let token = platform.token("bench-initiate")?;
    let input = json!({"duration_ms": 0, "steps": 1});

    if args.warmup_seconds > 0.0 {
        load(
            &api,
            &token,
            &input,
            args.clients,
            args.warmup_seconds,
            u64::MAX,
        )
        .await;
    }
    let mut probe = redis_probe::connect(&platform.redis_url()).await?;
    let before_stats = redis_probe::command_stats(&mut probe).await?;
    let before = platform.stats();
    let began = Instant::now();
    let tally = load(
        &api,
        &token,
        &input,
        args.clients,
        args.seconds,
        args.max_requests,
    )
    .await;
    let elapsed = began.elapsed().as_secs_f64();
    let cpu = cpu_between(&before, &platform.stats());
    let redis = redis_probe::command_stats(&mut probe)
        .await?
        .since(&before_stats);
    let drain_ms = drain(&api, &token, tally.last_id.as_deref()).await;
    platform.ensure_running()?;

    let accepted = tally.latencies_ms.len() as u64;
    let errors = tally.failed + tally.refused.values().sum::<u64>();
    let latency = Summary::of(tally.latencies_ms);
    let mut report = Report::new("initiate", target);
    report.set("clients", args.clients);
    report.set("seconds", round(elapsed, 3));
    report.set("accepted", accepted);
    report.set("errors", errors);
    report.set("refused_by_status", &tally.refused);
    report.set("failed_requests", tally.failed);
    report.set("requests_per_s", rate(accepted, elapsed));
    report.set("latency_ms", &latency);
    report.set("backlog_drain_ms", drain_ms);
    report.set("cpu_s", &cpu);
    report.set("redis_commands", &redis.calls);
    report.set("redis_usec", &redis.usec);
    report.row("clients", args.clients.to_string());
    report.row(
        "accepted / errors",
        format!("{accepted} / {errors} in {elapsed:.1} s"),
    );
    report.row("req/s", format!("{}", rate(accepted, elapsed)));
    report.row("latency ms p50/p95/p99/max", latency.line());
    report.row(
        "backlog drained after",
        drain_ms.map_or("not within 120 s".into(), |ms| format!("{ms} ms")),
    );
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// Runs `clients` loops of sequential starts for `seconds`.
async fn load(
    api: &Api,
    token: &str,
    input: &serde_json::Value,
    clients: usize,
    seconds: f64,
    max_requests: u64,
) -> Tally {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (api, token, input, sent) =
            (api.clone(), token.to_owned(), input.clone(), sent.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < end && sent.fetch_add(1, Ordering::Relaxed) < max_requests {
                match api.start(&token, "demo.sleep", &input).await {
                    Started::Accepted { id, latency } => {
                        tally.latencies_ms.push(latency.as_secs_f64() * 1000.0);
                        tally.last_id = Some(id);
                    }
                    Started::Refused { status } => *tally.refused.entry(status).or_default() += 1,
                    Started::Failed => tally.failed += 1,
                }
            }
            tally
        });
    }
    let mut all = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        let Ok(tally) = joined else {
            all.failed += 1;
            continue;
        };
        all.latencies_ms.extend(tally.latencies_ms);
        for (status, count) in tally.refused {
            *all.refused.entry(status).or_default() += count;
        }
        all.failed += tally.failed;
        if tally.last_id.is_some() {
            all.last_id = tally.last_id;
        }
    }
    all
}

/// How long until the last accepted operation is done (polled every 50 ms, at most 120 s).
async fn drain(api: &Api, token: &str, last_id: Option<&str>) -> Option<u64> {
    let id = last_id?;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(120) {
        if let Ok(operation) = api.get(token, id).await
            && operation["done"] == true
        {
            return Some(began.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
