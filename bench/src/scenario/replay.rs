//! `replay`: C WebSocket clients arriving at once — as they do after a
//! gateway restart — each subscribing to its operation with `after_seq:
//! 0` and reading its whole logged history to the terminal event. O
//! operations of E progress events each are written first through
//! longrun's own store (claimed, E progress reports, completed), so the
//! log is long and the gateway only replays.
//!
//! Reports the time from the first subscribe until every client had its
//! whole log, events replayed per second, any seq lost or repeated, and
//! the gateway's CPU per replayed event. longrun only: the peer's
//! Socket.IO rooms keep no history to replay.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::future::try_join_all;
use longrun_shared::Store;
use longrun_shared::store::transitions::{Claim, ClaimedJob};
use serde_json::json;

use super::{Audience, Report, connect_many, read_entries};
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::stats::{rate, round};
use crate::ws::{Incoming, WsClient};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub audience: Audience,
    /// Progress events logged per operation.
    #[arg(long, default_value_t = 200)]
    pub events: u64,
}

const CONSUMER: &str = "bench-replay";

pub async fn run(setup: &Setup, args: &Args) -> Result<Report> {
    args.audience.check()?;
    let Audience { clients, ops } = args.audience;
    let roles = Roles {
        api: true,
        workers: 0,
        gateway: true,
        retention_s: None,
    };
    let mut platform = Platform::start(Target::Longrun, setup, roles)?;
    let api = Api::new(&platform.api_url)?;
    let owner = |i: usize| format!("bench-replay-{i}");
    let store = Store::connect(&platform.redis_url(), "lr", Duration::from_secs(3_600))?;
    let mut ids = Vec::with_capacity(ops);
    for index in 0..ops {
        let token = platform.token(&owner(index))?;
        match api.start(&token, "demo.sleep", &json!({})).await {
            Started::Accepted { id, .. } => ids.push(id),
            _ => bail!("operation {index} was not accepted"),
        }
    }
    let jobs = claim_all(&store, &ids).await?;
    try_join_all(
        jobs.iter()
            .map(|job| write_history(&store, job, args.events)),
    )
    .await?;
    let last_seq = args.events + 3; // created, started, the progress events, succeeded

    let connected = connect_many(Target::Longrun, &platform.ws_url, clients, false, |i| {
        platform.token(&owner(i % ops))
    })
    .await?;
    let before = platform.stats();
    let began = Instant::now();
    let readers = connected.into_iter().enumerate().map(|(index, client)| {
        let id = ids[index % ops].clone();
        read_history(client, id)
    });
    let histories = try_join_all(readers).await?;
    let seconds = began.elapsed().as_secs_f64();
    let cpu = cpu_between(&before, &platform.stats());
    platform.ensure_running()?;

    let whole = histories
        .iter()
        .filter(|seqs| seqs.iter().copied().eq(1..=last_seq))
        .count();
    let replayed: u64 = histories.iter().map(|seqs| seqs.len() as u64).sum();
    let gateway_cpu_s = cpu
        .get("gateway")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    let per_event_us = round(gateway_cpu_s * 1e6 / replayed.max(1) as f64, 2);

    let mut report = Report::new("replay", Target::Longrun);
    report.set("clients", clients);
    report.set("operations", ops);
    report.set("events_per_operation", last_seq);
    report.set("replayed_events", replayed);
    report.set("clients_with_whole_log", whole);
    report.set("seconds", round(seconds, 3));
    report.set("events_per_s", rate(replayed, seconds));
    report.set("gateway_cpu_us_per_event", per_event_us);
    report.set("cpu_s", &cpu);
    report.row(
        "clients / operations / events each",
        format!("{clients} / {ops} / {last_seq}"),
    );
    report.row(
        "clients with their whole log, in order",
        format!("{whole} of {clients}"),
    );
    report.row(
        "all replayed in",
        format!("{seconds:.2} s ({} events/s)", rate(replayed, seconds)),
    );
    report.row(
        "gateway CPU per replayed event",
        format!("{per_event_us} µs"),
    );
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// Claims the operations' queue entries, as a worker would.
async fn claim_all(store: &Store, ids: &[String]) -> Result<Vec<ClaimedJob>> {
    store.ensure_group(0).await?;
    let entries = read_entries(store, CONSUMER, ids.len()).await?;
    let mut jobs = Vec::with_capacity(ids.len());
    for claim in store.claim_batch(&entries, CONSUMER, 600_000).await? {
        match claim? {
            (Claim::Run(job), _) => jobs.push(job),
            (other, _) => bail!("a fresh operation was not claimed to run: {other:?}"),
        }
    }
    Ok(jobs)
}

/// Logs `events` progress reports and the result of one claimed operation.
async fn write_history(store: &Store, job: &ClaimedJob, events: u64) -> Result<()> {
    for step in 1..=events {
        let percent = step as f64 * 100.0 / events as f64;
        store
            .progress(job, percent, Some("replayed"), &json!({"step": step}))
            .await?
            .context("the bench's own claim was fenced")?;
    }
    let outcome = store.complete(job, &json!({"steps": events}), None).await?;
    if outcome.word != "ok" {
        bail!("the bench's completion was refused: {}", outcome.word);
    }
    Ok(())
}

/// Subscribes from seq 0 and reads to the terminal event: the seqs seen.
async fn read_history(mut client: WsClient, id: String) -> Result<Vec<u64>> {
    client.subscribe_operation(&id, Some(0)).await?;
    let mut seqs = Vec::new();
    loop {
        match client.next_within(Duration::from_secs(60)).await? {
            Some(Incoming::Event(event)) => {
                seqs.push(event.seq);
                if event.is_terminal() {
                    break;
                }
            }
            Some(Incoming::Subscribed { .. }) => {}
            Some(Incoming::Error(message)) => bail!("subscription refused: {message}"),
            Some(Incoming::Closed(code)) => bail!("closed during the replay ({code:?})"),
            None => bail!("no event for 60 s"),
        }
    }
    client.close().await;
    Ok(seqs)
}
