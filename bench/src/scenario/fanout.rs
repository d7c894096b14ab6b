//! `fanout`: one `demo.fanout` parent with N children of `demo.sleep
//! {"duration_ms": 0, "steps": 1}`, on W worker processes: wall time from
//! the POST to the parent's terminal state (seen through the api's long
//! poll), Redis memory and keys before, right after, and once retention
//! expired the tree, and Redis commands per operation. longrun only: the
//! peer's equivalent is a BullMQ flow (`bench/peers/queue-bench.mjs`).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::{Report, mib};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::redis_probe;
use crate::stats::round;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Children per parent; several sizes run one after the other, each on a fresh platform.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub children: Vec<u32>,
    /// Worker processes.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Retention of terminal operations, seconds (LONGRUN_RETENTION_S).
    #[arg(long, default_value_t = 15)]
    pub retention_s: u64,
    /// Don't wait for retention to expire the tree.
    #[arg(long)]
    pub skip_retention: bool,
    /// Give up on one parent after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
}

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    if target != Target::Longrun {
        bail!(
            "fanout measures longrun; the peer's is `node bench/peers/queue-bench.mjs --only flow`"
        );
    }
    let mut runs = Vec::new();
    let mut report = Report::new("fanout", target);
    for &children in &args.children {
        let run = one(setup, args, children).await?;
        report.row(
            format!("{children} children"),
            format!(
                "{} | {} ms to parent {} | Redis {} -> {} -> {} after retention | {} cmds/op",
                if run["timed_out"] == true {
                    "TIMED OUT"
                } else {
                    "ok"
                },
                run["wall_ms"],
                run["parent_status"].as_str().unwrap_or("?"),
                mib(run["redis_memory_before"].as_u64().unwrap_or(0)),
                mib(run["redis_memory_after"].as_u64().unwrap_or(0)),
                run["redis_memory_after_retention"]
                    .as_u64()
                    .map_or("(not waited)".into(), mib),
                run["redis_commands_per_operation"],
            ),
        );
        runs.push(run);
    }
    report.set("workers", args.workers);
    report.set("concurrency", setup.worker_concurrency);
    report.set("retention_s", args.retention_s);
    report.set("runs", &runs);
    Ok(report)
}

async fn one(setup: &Setup, args: &Args, children: u32) -> Result<Value> {
    let mut platform = Platform::start(
        Target::Longrun,
        setup,
        Roles {
            api: true,
            workers: args.workers,
            retention_s: Some(args.retention_s),
            ..Roles::default()
        },
    )?;
    let mut probe = redis_probe::connect(&platform.redis_url()).await?;
    let http = reqwest::Client::new();
    let token = platform.token("bench-fanout")?;
    let memory_before = redis_probe::used_memory(&mut probe).await?;
    let keys_before = redis_probe::dbsize(&mut probe).await?;
    let calls_before = redis_probe::command_calls(&mut probe).await?;
    let cpu_before = platform.stats();

    let began = Instant::now();
    let started: Value = http
        .post(format!("{}/v1/demo/fanout", platform.api_url))
        .bearer_auth(&token)
        .json(&json!({"children": children, "child_duration_ms": 0, "child_steps": 1}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = started["id"].as_str().unwrap_or_default().to_owned();
    let deadline = began + Duration::from_secs(args.max_seconds);
    let mut parent = Value::Null;
    while Instant::now() < deadline {
        let wait_ms = (deadline - Instant::now()).as_millis().min(60_000);
        let answer = http
            .get(format!(
                "{}/v1/operations/{id}/wait?timeout_ms={wait_ms}",
                platform.api_url
            ))
            .bearer_auth(&token)
            .timeout(Duration::from_millis(wait_ms as u64 + 5_000))
            .send()
            .await;
        if let Ok(response) = answer
            && let Ok(body) = response.json::<Value>().await
        {
            parent = body;
            if parent["done"] == true {
                break;
            }
        }
    }
    let wall = began.elapsed();
    let cpu = cpu_between(&cpu_before, &platform.stats());
    let done = parent["done"] == true;
    let memory_after = redis_probe::used_memory(&mut probe).await?;
    let keys_after = redis_probe::dbsize(&mut probe).await?;
    let calls = redis_probe::calls_between(
        &calls_before,
        &redis_probe::command_calls(&mut probe).await?,
    );
    platform.ensure_running()?;

    let (memory_expired, keys_expired) = if args.skip_retention || !done {
        (None, None)
    } else {
        wait_for_expiry(&mut probe, keys_before, args.retention_s).await?
    };
    Ok(json!({
        "children": children,
        "timed_out": !done,
        "parent_status": parent["status"],
        "children_counts": parent["children"],
        "wall_ms": round(wall.as_secs_f64() * 1000.0, 1),
        "redis_memory_before": memory_before,
        "redis_memory_after": memory_after,
        "redis_memory_after_retention": memory_expired,
        "redis_keys_before": keys_before,
        "redis_keys_after": keys_after,
        "redis_keys_after_retention": keys_expired,
        "redis_commands_per_operation": round(calls.values().sum::<u64>() as f64 / f64::from(children + 1), 2),
        "cpu_s": cpu,
    }))
}

/// Waits (at most retention + 60 s) until the tree's keys are gone.
async fn wait_for_expiry(
    probe: &mut redis::aio::MultiplexedConnection,
    keys_before: u64,
    retention_s: u64,
) -> Result<(Option<u64>, Option<u64>)> {
    let deadline = Instant::now() + Duration::from_secs(retention_s + 60);
    let mut keys = redis_probe::dbsize(probe).await?;
    while Instant::now() < deadline && keys > keys_before + 5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        keys = redis_probe::dbsize(probe).await?;
    }
    Ok((Some(redis_probe::used_memory(probe).await?), Some(keys)))
}
