//! `stream`: C WebSocket clients spread over O owners (client i belongs to
//! owner i mod O) subscribe to their owner's events (`owner: "self"`; a
//! Socket.IO owner room for the peer); then one `demo.sleep` per owner
//! emits S progress steps over D ms, so every client follows one operation
//! at S/D events per second.
//!
//! Reports delivery latency worker→client for every progress event
//! (p50/p95/p99/max), events delivered per second, events lost (every seq
//! of the operation's log a client did not get; must be 0), duplicates and
//! reorders, dropped connections, and the gateway's RSS per idle connection
//! (RSS after C clients connected and subscribed, minus RSS before, ÷ C).
//!
//! It also reports the largest burst: the most deliveries of events emitted
//! within one millisecond, i.e. the load the run really made (operations
//! started together step in lockstep only if the target started them
//! within a millisecond). Clients stay connected until every client saw its
//! terminal event, so no client's close handshake lands in another's burst.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::sync::watch;

use super::{Audience, Report, connect_many, mib};
use crate::http_load::{Api, Started};
use crate::platform::{Platform, Roles, Setup, Target, cpu_between};
use crate::proc::ProcStats;
use crate::stats::{Summary, rate, round};
use crate::ws::{Incoming, WsClient};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub audience: Audience,
    /// Progress steps per operation.
    #[arg(long, default_value_t = 50)]
    pub steps: u32,
    /// Duration of each operation, ms (rate per operation = steps / duration).
    #[arg(long, default_value_t = 5_000)]
    pub duration_ms: u64,
    /// Pause between the last subscription and the first start.
    #[arg(long, default_value_t = 1_000)]
    pub settle_ms: u64,
    /// Start the operations spread over one step interval (operation i
    /// after i × interval ÷ operations) instead of all at once, so their
    /// steps do not fall on the same instant: independent operations, as
    /// different users' would be, rather than one burst per step.
    #[arg(long)]
    pub stagger: bool,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    owner: usize,
    seqs: Vec<u64>,
    latencies_ms: Vec<f64>,
    terminal: bool,
    closed: Option<String>,
    errors: Vec<String>,
    last_receive: Option<Instant>,
    /// Each progress event's seq and emit time (ms since the epoch).
    emitted: Vec<(u64, f64)>,
}

pub async fn run(target: Target, setup: &Setup, args: &Args) -> Result<Report> {
    args.audience.check()?;
    let Audience { clients, ops } = args.audience;
    let mut platform = Platform::start(target, setup, Roles::full())?;
    let api = Api::new(&platform.api_url)?;
    let owner = |i: usize| format!("bench-stream-{i}");
    let gateway = platform.gateway_pid().context("no gateway process")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_gateway = ProcStats::of(gateway).rss_bytes;

    let connect_began = Instant::now();
    let connected = connect_many(target, &platform.ws_url, clients, true, |i| {
        platform.token(&owner(i % ops))
    })
    .await?;
    let connect_s = connect_began.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let rss_connected = ProcStats::of(gateway).rss_bytes;

    let (stop_tx, stop) = watch::channel(false);
    let mut readers = tokio::task::JoinSet::new();
    for (index, client) in connected.into_iter().enumerate() {
        readers.spawn(follow(client, index % ops, stop.clone()));
    }

    let before = platform.stats();
    let began = Instant::now();
    let input = json!({"duration_ms": args.duration_ms, "steps": args.steps});
    let mut ids = vec![String::new(); ops];
    let mut starts = tokio::task::JoinSet::new();
    let interval = Duration::from_millis(args.duration_ms) / args.steps.max(1);
    for (index, _) in ids.iter().enumerate() {
        let (api, token, input) = (api.clone(), platform.token(&owner(index))?, input.clone());
        let offset = if args.stagger {
            interval * index as u32 / ops as u32
        } else {
            Duration::ZERO
        };
        starts.spawn(async move {
            tokio::time::sleep(offset).await;
            (index, api.start(&token, "demo.sleep", &input).await)
        });
    }
    let mut start_errors = 0;
    while let Some(joined) = starts.join_next().await {
        match joined? {
            (index, Started::Accepted { id, .. }) => ids[index] = id,
            _ => start_errors += 1,
        }
    }

    let deadline = began + Duration::from_millis(args.duration_ms) + Duration::from_secs(60);
    let mut seen = Vec::with_capacity(clients);
    let mut open = Vec::with_capacity(clients);
    loop {
        match tokio::time::timeout_at(deadline.into(), readers.join_next()).await {
            Ok(Some(joined)) => {
                let (client_saw, client) = joined?;
                seen.push(client_saw);
                open.push(client);
            }
            Ok(None) => break,
            Err(_) => {
                let _ = stop_tx.send(true);
            }
        }
    }
    let cpu = cpu_between(&before, &platform.stats());
    platform.ensure_running()?;
    futures_util::future::join_all(open.into_iter().map(WsClient::close)).await;

    // The log's length per operation: every seq a subscriber must get.
    let final_seq = final_seqs(&platform, &api, &ids, args, &owner).await?;
    let tally = Tally::of(&seen, &final_seq);
    let delivered = tally.delivered;
    let last = seen.iter().filter_map(|s| s.last_receive).max();
    let window = last.map_or(0.0, |last| (last - began).as_secs_f64());
    let burst = largest_burst(&seen, BURST_WINDOW_MS);
    let latency = Summary::of(seen.into_iter().flat_map(|s| s.latencies_ms).collect());
    let per_connection = rss_connected.saturating_sub(rss_idle_gateway) / clients as u64;

    let mut report = Report::new("stream", target);
    report.set("clients", clients);
    report.set("operations", ops);
    report.set("staggered", args.stagger);
    report.set("steps", args.steps);
    report.set("duration_ms", args.duration_ms);
    report.set(
        "rate_per_operation_per_s",
        round(f64::from(args.steps) * 1000.0 / args.duration_ms as f64, 1),
    );
    report.set("start_errors", start_errors);
    report.set("connect_s", round(connect_s, 2));
    report.set("expected_events", tally.expected);
    report.set("delivered_events", delivered);
    report.set("lost_events", tally.lost);
    report.set("duplicates", tally.duplicates);
    report.set("reorders", tally.reorders);
    report.set("clients_without_terminal", tally.unfinished);
    report.set("clients_closed", &tally.closed);
    report.set("client_errors", &tally.errors);
    report.set("events_per_s", rate(delivered, window));
    report.set("largest_burst", burst);
    report.set("delivery_latency_ms", &latency);
    report.set("gateway_rss_idle_bytes", rss_idle_gateway);
    report.set("gateway_rss_connected_bytes", rss_connected);
    report.set("gateway_rss_per_connection_bytes", per_connection);
    report.set("cpu_s", &cpu);
    report.row(
        "clients / operations",
        format!(
            "{} / {ops}, {} steps in {} ms each (connected in {connect_s:.1} s)",
            clients, args.steps, args.duration_ms
        ),
    );
    report.row(
        "delivered / expected",
        format!("{delivered} / {}", tally.expected),
    );
    report.row(
        "lost / duplicates / reorders",
        format!("{} / {} / {}", tally.lost, tally.duplicates, tally.reorders),
    );
    report.row(
        "clients without terminal / closed",
        format!(
            "{} / {}",
            tally.unfinished,
            tally.closed.values().sum::<u64>()
        ),
    );
    report.row("events/s delivered", rate(delivered, window).to_string());
    report.row("latency ms p50/p95/p99/max", latency.line());
    report.row(
        "largest burst",
        format!("{burst} deliveries of events emitted within {BURST_WINDOW_MS} ms"),
    );
    report.row(
        "gateway RSS idle -> connected",
        format!(
            "{} -> {} ({:.1} KiB per connection)",
            mib(rss_idle_gateway),
            mib(rss_connected),
            per_connection as f64 / 1024.0
        ),
    );
    report.row("CPU s", super::cpu_line(&cpu));
    Ok(report)
}

/// Reads one client's events until its operation's terminal event (or stop).
async fn follow(
    mut client: WsClient,
    owner: usize,
    mut stop: watch::Receiver<bool>,
) -> (Seen, WsClient) {
    let mut seen = Seen {
        owner,
        ..Seen::default()
    };
    loop {
        let incoming = tokio::select! {
            incoming = client.next() => incoming,
            _ = stop.changed() => break,
        };
        match incoming {
            Ok(Incoming::Event(event)) => {
                seen.last_receive = Some(Instant::now());
                seen.seqs.push(event.seq);
                if event.event == "progress"
                    && let Some(latency) = event.latency_ms
                {
                    seen.latencies_ms.push(latency);
                    if let Some(emitted) = event.emitted_ms {
                        seen.emitted.push((event.seq, emitted));
                    }
                }
                if event.is_terminal() {
                    seen.terminal = true;
                    break;
                }
            }
            Ok(Incoming::Subscribed { .. }) => {}
            Ok(Incoming::Error(message)) => seen.errors.push(message),
            Ok(Incoming::Closed(code)) => {
                seen.closed = Some(code.map_or("no code".into(), |c| c.to_string()));
                break;
            }
            Err(err) => {
                seen.closed = Some(err.to_string());
                break;
            }
        }
    }
    (seen, client)
}

/// The window within which events emitted count as one burst, ms.
const BURST_WINDOW_MS: f64 = 1.0;

/// The most deliveries due at once: over every window of `window_ms`, the
/// progress events emitted in it times the clients that receive each. It
/// says what load the run really made: operations started together step
/// in lockstep (one burst of every client per step) only if the system
/// started them within a window of each other.
fn largest_burst(seen: &[Seen], window_ms: f64) -> u64 {
    let mut receivers: BTreeMap<(usize, u64), (f64, u64)> = BTreeMap::new();
    for client in seen {
        for &(seq, emitted) in &client.emitted {
            receivers
                .entry((client.owner, seq))
                .or_insert((emitted, 0))
                .1 += 1;
        }
    }
    let mut events: Vec<(f64, u64)> = receivers.into_values().collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut largest, mut in_window, mut first) = (0, 0, 0);
    for &(emitted, count) in &events {
        in_window += count;
        while events[first].0 <= emitted - window_ms {
            in_window -= events[first].1;
            first += 1;
        }
        largest = largest.max(in_window);
    }
    largest
}

/// The last seq of each operation's log: longrun's resource says it; the
/// peer stack's events are created, started, one per step and succeeded.
async fn final_seqs(
    platform: &Platform,
    api: &Api,
    ids: &[String],
    args: &Args,
    owner: &impl Fn(usize) -> String,
) -> Result<Vec<u64>> {
    let mut seqs = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let seq = match platform.target {
            Target::Longrun if !id.is_empty() => {
                api.get(&platform.token(&owner(index))?, id).await?["seq"]
                    .as_u64()
                    .unwrap_or(0)
            }
            Target::Longrun => 0,
            Target::Peer => u64::from(args.steps) + 3,
        };
        seqs.push(seq);
    }
    Ok(seqs)
}

#[derive(Default)]
struct Tally {
    expected: u64,
    delivered: u64,
    lost: u64,
    duplicates: u64,
    reorders: u64,
    unfinished: u64,
    closed: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn of(seen: &[Seen], final_seq: &[u64]) -> Tally {
        let mut tally = Tally::default();
        for client in seen {
            let last = final_seq.get(client.owner).copied().unwrap_or(0);
            let mut unique: Vec<u64> = client.seqs.clone();
            unique.sort_unstable();
            unique.dedup();
            tally.expected += last;
            tally.delivered += client.seqs.len() as u64;
            tally.duplicates += (client.seqs.len() - unique.len()) as u64;
            tally.lost +=
                last.saturating_sub(unique.iter().filter(|&&s| s >= 1 && s <= last).count() as u64);
            tally.reorders += client.seqs.windows(2).filter(|w| w[1] < w[0]).count() as u64;
            if !client.terminal {
                tally.unfinished += 1;
            }
            if let Some(reason) = &client.closed {
                *tally.closed.entry(reason.clone()).or_default() += 1;
            }
            for error in &client.errors {
                *tally.errors.entry(error.clone()).or_default() += 1;
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(seqs: &[u64], terminal: bool) -> Seen {
        Seen {
            seqs: seqs.to_vec(),
            terminal,
            ..Seen::default()
        }
    }

    #[test]
    fn losses_duplicates_and_reorders_are_counted() {
        let seen = [client(&[1, 2, 3, 4], true), client(&[1, 3, 3, 2], false)];
        let tally = Tally::of(&seen, &[4]);
        assert_eq!(tally.expected, 8);
        assert_eq!(tally.delivered, 8);
        assert_eq!(tally.lost, 1);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.reorders, 1);
        assert_eq!(tally.unfinished, 1);
    }

    fn emitting(owner: usize, emitted: &[(u64, f64)]) -> Seen {
        Seen {
            owner,
            emitted: emitted.to_vec(),
            ..Seen::default()
        }
    }

    #[test]
    fn the_largest_burst_counts_deliveries_of_events_emitted_close_together() {
        // Owner 0 (two clients) and owner 1 (one client) step 0.5 ms apart,
        // then 50 ms apart.
        let seen = [
            emitting(0, &[(3, 1000.0), (4, 1100.0)]),
            emitting(0, &[(3, 1000.0), (4, 1100.0)]),
            emitting(1, &[(3, 1000.5), (4, 1150.0)]),
        ];
        assert_eq!(largest_burst(&seen, 1.0), 3);
        assert_eq!(largest_burst(&seen, 0.1), 2);
        assert_eq!(largest_burst(&[], 1.0), 0);
    }
}
