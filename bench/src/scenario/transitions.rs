//! `transitions`: what each of a job's transitions costs Redis itself, with
//! nothing else running — the number the job rates live under.
//!
//! On a private `redis-server`, through longrun's own [`Store`] (so the
//! real function library and the calls the services make): create N root
//! operations (`create` with its index entries and queue entry, from C
//! concurrent callers, as the api does), read their queue entries, claim
//! them in batches of B (`claim_batch`, as a worker does), and complete
//! them in batches of B with a final progress report (`complete_batch`).
//! For each step, `INFO commandstats` before and after gives Redis's own
//! microseconds per operation: the function calls' (`fcall`, which
//! include the commands they run) and every command's together. R rounds;
//! the machine's noise shows as their spread.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use longrun_shared::Store;
use longrun_shared::kinds::{Backoff, FailurePolicy};
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use longrun_shared::store::transitions::{Claim, ClaimedJob, Completion, NewOperation, new_id};
use redis::aio::MultiplexedConnection;
use serde_json::json;

use super::{Report, read_entries};
use crate::platform::Target;
use crate::redis_probe::{self, CommandStats};
use crate::stats::round;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Operations per round.
    #[arg(long, default_value_t = 4_000)]
    pub operations: usize,
    /// Rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Operations per claim and per completion call (the worker's batch).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Concurrent creators.
    #[arg(long, default_value_t = 10)]
    pub creators: usize,
}

/// The steps measured, in order.
pub const STEPS: [&str; 3] = ["create", "claim", "complete"];
const CONSUMER: &str = "bench-transitions";

pub async fn run(args: &Args) -> Result<Report> {
    if args.operations == 0 || args.rounds == 0 || args.batch == 0 {
        bail!("--operations, --rounds and --batch must be at least 1");
    }
    let redis = RedisServer::start(RedisOptions::default()).context("starting redis-server")?;
    let store = Store::connect(&redis.url(), "lr", std::time::Duration::from_secs(3_600))?;
    store.load_library().await?;
    store.ensure_group(0).await?;
    let mut probe = redis_probe::connect(&redis.url()).await?;
    let version = redis_probe::version(&mut probe).await?;

    let mut rounds: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for _ in 0..args.rounds {
        for (step, cost) in STEPS.iter().zip(one_round(&store, &mut probe, args).await?) {
            rounds.entry(step).or_default().push(cost);
        }
    }

    let mut report = Report::new("transitions", Target::Longrun);
    report.json.insert("target".into(), json!("redis"));
    report.set("redis", version);
    report.set("operations", args.operations);
    report.set("rounds", args.rounds);
    report.set("batch", args.batch);
    let mut steps = serde_json::Map::new();
    for step in STEPS {
        let costs = &rounds[step];
        let fcall: Vec<f64> = costs.iter().map(|(fcall, _)| *fcall).collect();
        let all: Vec<f64> = costs.iter().map(|(_, all)| *all).collect();
        report.row(
            format!("{step} (µs of Redis per operation)"),
            format!(
                "functions {}, all commands {}",
                spread(&fcall),
                spread(&all)
            ),
        );
        steps.insert(
            step.to_owned(),
            json!({"fcall_usec_per_op": fcall, "all_usec_per_op": all}),
        );
    }
    report.set("steps", steps);
    Ok(report)
}

/// One round: create, claim and complete `operations` operations; µs of
/// Redis per operation for each step (functions, all commands).
async fn one_round(
    store: &Store,
    probe: &mut MultiplexedConnection,
    args: &Args,
) -> Result<Vec<(f64, f64)>> {
    let n = args.operations;
    let mut costs = Vec::new();

    let before = redis_probe::command_stats(probe).await?;
    create(store, n, args.creators).await?;
    costs.push(per_operation(probe, &before, n).await?);

    let entries = read_entries(store, CONSUMER, n).await?;
    let before = redis_probe::command_stats(probe).await?;
    let mut jobs = Vec::with_capacity(n);
    for chunk in entries.chunks(args.batch) {
        for claim in store.claim_batch(chunk, CONSUMER, 60_000).await? {
            match claim? {
                (Claim::Run(job), _) => jobs.push(job),
                (other, _) => bail!("a fresh operation was not claimed to run: {other:?}"),
            }
        }
    }
    costs.push(per_operation(probe, &before, n).await?);

    let before = redis_probe::command_stats(probe).await?;
    for chunk in jobs.chunks(args.batch) {
        let done: Vec<Completion> = chunk.iter().map(completion).collect();
        for outcome in store.complete_batch(&done).await? {
            let outcome = outcome?;
            if outcome.word != "ok" {
                bail!("a completion was refused: {}", outcome.word);
            }
        }
    }
    costs.push(per_operation(probe, &before, n).await?);
    let refs: Vec<_> = jobs.iter().map(|job| job.entry.reference()).collect();
    store.ack(&refs).await?;
    Ok(costs)
}

async fn create(store: &Store, n: usize, creators: usize) -> Result<()> {
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| async {
            let new = NewOperation {
                id: new_id(),
                kind: "demo.sleep".into(),
                owner: "bench-transitions".into(),
                input: json!({"duration_ms": 0, "steps": 1}),
                max_attempts: 3,
                backoff: Backoff::default(),
                timeout_ms: 0,
                deadline_ms: 0,
                policy: FailurePolicy::default(),
                request_id: new_id(),
                idempotency_key: None,
            };
            store.create(&new).await
        })
        .buffer_unordered(creators.max(1))
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(())
}

/// A `demo.sleep` result with its final progress report, as the worker sends it.
fn completion(job: &ClaimedJob) -> Completion {
    (
        job.clone(),
        json!({"steps": 1}),
        Some((100.0, Some("step 1/1".into()), json!({"step": 1}))),
    )
}

/// µs of Redis per operation since `before`: (functions, all commands).
/// `fcall`'s microseconds include the commands its functions ran (which
/// `INFO commandstats` also counts under their own names), so "all" is
/// `fcall` plus the commands the Store sends outside functions.
async fn per_operation(
    probe: &mut MultiplexedConnection,
    before: &CommandStats,
    n: usize,
) -> Result<(f64, f64)> {
    let usec = redis_probe::command_stats(probe).await?.since(before).usec;
    let fcall = usec.get("fcall").copied().unwrap_or(0);
    let direct: u64 = SENT_DIRECTLY
        .iter()
        .filter_map(|command| usec.get(*command))
        .sum();
    let n = n as f64;
    Ok((
        round(fcall as f64 / n, 1),
        round((fcall + direct) as f64 / n, 1),
    ))
}

/// Commands the Store sends outside functions in these steps (a create's
/// index entries, queue entry and barrier; claims and completions send
/// none). None of them runs inside these steps' functions.
const SENT_DIRECTLY: [&str; 3] = ["zadd", "xadd", "echo"];

/// "min–max" of a round's values (one value alone).
fn spread(values: &[f64]) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if (max - min).abs() < 0.05 {
        format!("{min:.1}")
    } else {
        format!("{min:.1}–{max:.1}")
    }
}
