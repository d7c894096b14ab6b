//! `soak`: M minutes of mixed load on one platform (api, W worker
//! processes, realtime gateway, each its own process) with a short
//! retention (`LONGRUN_RETENTION_S`), so Redis memory must reach a plateau
//! once finished operations start to expire:
//!
//! - a steady stream of short `demo.sleep` starts, some cancelled while
//!   they run, and a `demo.fanout` of 100–500 children every few seconds
//!   ([`load`]); every operation must end terminal;
//! - 500 WebSocket clients connected throughout, half following their
//!   owner, half one operation after another, all reconnecting now and then
//!   ([`followers`]); events lost or duplicated must be 0;
//! - every minute: RSS of each longrun process, Redis memory and keys,
//!   operations started and finished, clients connected ([`samples`]), and
//!   at the end the verdict: last 5 minutes against minutes 5–10.
//!
//! `--markdown FILE` also writes the results as the "Soak" section of
//! docs/PERFORMANCE.md ([`markdown`]; see scripts/soak).

mod followers;
mod load;
mod markdown;
mod samples;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::Report;
use crate::http_load::Api;
use crate::platform::{Platform, Roles, Setup, Target};
use followers::{Fleet, WsCounters};
use load::{Counters, Feed, Load, Plan};
use samples::Sample;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Minutes of load.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// WebSocket clients connected throughout (half per owner, half per operation).
    #[arg(long, default_value_t = 500)]
    pub clients: usize,
    /// Owners the load and the clients are spread over.
    #[arg(long, default_value_t = 50)]
    pub owners: usize,
    /// `demo.sleep` starts per second (200–2000 ms, 5 steps each).
    #[arg(long, default_value_t = 20.0)]
    pub starts_per_s: f64,
    /// Percent of the sleeps cancelled while they run.
    #[arg(long, default_value_t = 10)]
    pub cancel_percent: u32,
    /// Seconds between two fan-outs.
    #[arg(long, default_value_t = 10)]
    pub fanout_every_s: u64,
    /// Fewest and most children of a fan-out.
    #[arg(long, value_delimiter = ',', default_value = "100,500")]
    pub fanout_children: Vec<u32>,
    /// Every n-th fan-out is cancelled a second after its start (0: none).
    #[arg(long, default_value_t = 4)]
    pub fanout_cancel_every: u64,
    /// Mean seconds between two reconnects of one client.
    #[arg(long, default_value_t = 300)]
    pub churn_every_s: u64,
    /// Retention of finished operations, seconds (LONGRUN_RETENTION_S).
    #[arg(long, default_value_t = 60)]
    pub retention_s: u64,
    /// Don't wait for retention after the load for the closing sample.
    #[arg(long)]
    pub skip_after: bool,
    /// Also write the results as a markdown section to this file.
    #[arg(long)]
    pub markdown: Option<std::path::PathBuf>,
    /// A note for the markdown (e.g. what else ran on the machine).
    #[arg(long)]
    pub note: Option<String>,
}

/// Everything the run measured.
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub trends: Option<Vec<samples::Trend>>,
    pub operations: Value,
    pub websocket: Value,
    /// Progress events the gateway coalesced for slow readers (its metric).
    pub coalesced: Option<u64>,
    pub passed: bool,
}

impl Outcome {
    /// Lost events the gateway's coalescing does not account for (a coalesced
    /// progress event is a seq gap the contract allows for a slow reader).
    pub fn unexplained_loss(&self) -> Option<u64> {
        let lost = self.websocket["lost"].as_u64()?;
        Some(lost.saturating_sub(self.coalesced?))
    }
}

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    if target != Target::Longrun {
        bail!("soak measures longrun only");
    }
    let (low, high) = match args.fanout_children[..] {
        [low, high] if low <= high => (low, high),
        [n] => (n, n),
        _ => bail!("--fanout-children takes MIN,MAX"),
    };
    if args.owners == 0 || args.starts_per_s <= 0.0 || args.fanout_every_s == 0 {
        bail!("need at least one owner, a start rate and a fan-out interval");
    }
    let mut platform = Platform::start(
        Target::Longrun,
        setup,
        Roles {
            workers: args.workers,
            retention_s: Some(args.retention_s),
            ..Roles::full()
        },
    )?;
    let tokens = (0..args.owners)
        .map(|i| platform.token(&format!("soak-{i}")))
        .collect::<Result<Vec<_>>>()?;
    let plan = Plan {
        starts_per_s: args.starts_per_s,
        cancel_percent: args.cancel_percent,
        fanout_every: Duration::from_secs(args.fanout_every_s),
        fanout_children: (low, high),
        fanout_cancel_every: args.fanout_cancel_every,
    };
    let outcome = soak(&mut platform, args, tokens, plan).await?;
    let report = report(args, &outcome);
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown::section(args, &outcome))?;
    }
    Ok(report)
}

async fn soak(
    platform: &mut Platform,
    args: &Args,
    tokens: Vec<String>,
    plan: Plan,
) -> Result<Outcome> {
    let feed = Arc::new(Feed::new(args.owners));
    let counters = Arc::new(Counters::default());
    let ws = Arc::new(WsCounters::default());
    let (stop_tx, stop) = watch::channel(false);
    let fleet = Arc::new(Fleet {
        target: Target::Longrun,
        url: platform.ws_url.clone(),
        tokens: tokens.clone(),
        feed: feed.clone(),
        counters: ws.clone(),
        churn_every: Duration::from_secs(args.churn_every_s.max(1)),
        stop,
    });
    let mut clients = followers::spawn(fleet, args.clients);
    followers::wait_connected(&ws, args.clients, Duration::from_secs(120)).await?;
    eprintln!(
        "soak: {} WebSocket clients connected; load for {} min",
        args.clients, args.minutes
    );

    let load = Arc::new(Load {
        api: Api::new(&platform.api_url)?,
        tokens,
        counters: counters.clone(),
        feed,
        plan,
    });
    let mut probe = crate::redis_probe::connect(&platform.redis_url()).await?;
    let mut samples = Vec::new();
    let began = Instant::now();
    let driver = tokio::spawn(load::drive(
        load,
        began + Duration::from_secs(args.minutes * 60),
    ));
    for minute in 0..=args.minutes {
        tokio::time::sleep_until((began + Duration::from_secs(minute * 60)).into()).await;
        platform.ensure_running()?;
        let sample = samples::take(Some(minute), platform, &mut probe, &counters, &ws).await?;
        eprintln!("{}", samples::text_row(minute == 0, &sample));
        samples.push(sample);
    }

    // Let every operation finish and its last events reach the clients.
    let mut in_flight = driver.await?;
    let drained = tokio::time::timeout(Duration::from_secs(660), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!("soak: operations still followed after 11 minutes; stopping anyway");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    platform.ensure_running()?;
    let coalesced = gateway_counter(&platform.ws_url, "longrun_ws_events_coalesced_total").await;

    if !args.skip_after {
        // Everything finished: after retention only the platform's own keys stay.
        tokio::time::sleep(Duration::from_secs(args.retention_s + 30)).await;
        let sample = samples::take(None, platform, &mut probe, &counters, &ws).await?;
        eprintln!("{}", samples::text_row(false, &sample));
        samples.push(sample);
    }
    let operations = counters.json();
    let websocket = ws.json();
    // Progress the gateway coalesced for a reader that fell behind is a
    // gap the contract allows; any other gap is a lost event.
    let lost = websocket["lost"].as_u64().unwrap_or(u64::MAX);
    let passed = operations["not_terminal"] == 0
        && operations["start_errors"] == 0
        && operations["children_finished"] == operations["children_started"]
        && lost <= coalesced.unwrap_or(0)
        && websocket["duplicates"] == 0;
    Ok(Outcome {
        trends: samples::verdict(&samples),
        samples,
        operations,
        websocket,
        coalesced,
        passed,
    })
}

/// A counter from the gateway's `/metrics` (`None` when it cannot be read).
async fn gateway_counter(ws_url: &str, name: &str) -> Option<u64> {
    let url = ws_url
        .replacen("ws://", "http://", 1)
        .replace("/v1/ws", "/metrics");
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    let found = text.lines().find_map(|line| {
        let (metric, value) = line.rsplit_once(' ')?;
        (metric.split('{').next() == Some(name)).then(|| value.parse::<f64>().ok())?
    });
    // Prometheus omits a counter that was never incremented.
    Some(found.map_or(0, |value| value as u64))
}

fn report(args: &Args, outcome: &Outcome) -> Report {
    let mut report = Report::new("soak", Target::Longrun);
    report.set("minutes", args.minutes);
    report.set("workers", args.workers);
    report.set("clients", args.clients);
    report.set("owners", args.owners);
    report.set("starts_per_s", args.starts_per_s);
    report.set("retention_s", args.retention_s);
    report.set("operations", &outcome.operations);
    report.set("websocket", &outcome.websocket);
    report.set("gateway_coalesced_progress", outcome.coalesced);
    report.set("lost_beyond_coalescing", outcome.unexplained_loss());
    report.set("samples", &outcome.samples);
    report.set("verdict", &outcome.trends);
    report.set("passed", outcome.passed);
    let ops = &outcome.operations;
    let ws = &outcome.websocket;
    report.row(
        "operations started / terminal",
        format!(
            "{} / {} ({} succeeded, {} cancelled, {} failed; {} start errors)",
            ops["started"],
            ops["finished"],
            ops["succeeded"],
            ops["cancelled"],
            ops["failed"],
            ops["start_errors"]
        ),
    );
    report.row(
        "fan-outs / children terminal",
        format!(
            "{} / {} of {}",
            ops["fanouts"], ops["children_finished"], ops["children_started"]
        ),
    );
    report.row(
        "WS events / lost / duplicates",
        format!("{} / {} / {}", ws["events"], ws["lost"], ws["duplicates"]),
    );
    report.row(
        "WS reconnects / operations followed",
        format!("{} / {}", ws["reconnects"], ws["operations_followed"]),
    );
    report.row(
        "WS errors / server closes",
        format!("{} / {}", ws["errors"], ws["server_closes"]),
    );
    report.row(
        "gateway coalesced progress / lost beyond it",
        format!(
            "{} / {}",
            outcome.coalesced.map_or("?".into(), |n| n.to_string()),
            outcome
                .unexplained_loss()
                .map_or("?".into(), |n| n.to_string())
        ),
    );
    match &outcome.trends {
        Some(trends) => {
            for trend in trends {
                report.row("verdict", samples::trend_line(trend));
            }
        }
        None => report.row("verdict", "n/a: the run is shorter than 15 minutes"),
    }
    report.row("passed", json!(outcome.passed).to_string());
    report
}
