//! `report`: turns the JSON lines of one `scripts/bench-compare` run (this
//! binary's scenarios and `bench/peers/queue-bench.mjs`) into the
//! side-by-side markdown of docs/PERFORMANCE.md, with ratios longrun ÷
//! peer, the goals of the issues, the machine, the versions, the date and
//! the exact commands. It prints only what the lines measured.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::stats::short;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run's JSON lines.
    #[arg(long)]
    pub results: PathBuf,
    /// The commands the run executed, one per line.
    #[arg(long)]
    pub commands: PathBuf,
    /// Markdown to include as the analysis (where longrun is behind and why, profiles).
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// Markdown of the last soak run (bench/PERFORMANCE-soak.md, written by scripts/soak), kept as is.
    #[arg(long)]
    pub soak: Option<PathBuf>,
    /// A note placed at the top (e.g. that the machine was busy).
    #[arg(long)]
    pub banner: Option<String>,
    /// Wall time of the whole run, seconds.
    #[arg(long)]
    pub elapsed_s: Option<u64>,
    /// Where to write (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn write(args: &Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.results)
        .with_context(|| format!("reading {}", args.results.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let commands = std::fs::read_to_string(&args.commands).unwrap_or_default();
    let notes = match &args.notes {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    let soak = match &args.soak {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => String::new(),
    };
    let markdown = render(&Run(lines), &commands, &[&notes, &soak], args);
    match &args.out {
        Some(path) => std::fs::write(path, markdown)?,
        None => print!("{markdown}"),
    }
    Ok(())
}

/// The lines of one run.
struct Run(Vec<Value>);

impl Run {
    fn find(
        &self,
        scenario: &str,
        target: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<&Value> {
        self.0
            .iter()
            .filter(|line| line["scenario"] == scenario)
            .filter(|line| target.is_empty() || line["target"] == target)
            .find(|line| matches(line))
    }

    fn all(&self, scenario: &str, target: &str) -> Vec<&Value> {
        self.0
            .iter()
            .filter(|line| line["scenario"] == scenario && line["target"] == target)
            .collect()
    }

    /// BullMQ's runs of a queue-bench scenario (they come as `runs`).
    fn bullmq_runs(&self, scenario: &str) -> Vec<&Value> {
        self.find(scenario, "", |_| true)
            .and_then(|line| line["runs"].as_array())
            .map(|runs| runs.iter().collect())
            .unwrap_or_default()
    }
}

fn num(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn show(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() >= 100.0 => format!("{f:.0}"),
            Some(f) => short(f),
            None => n.to_string(),
        },
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn latency(summary: &Value) -> String {
    if summary["n"].as_u64().unwrap_or(0) == 0 {
        return "-".into();
    }
    format!(
        "{} / {} / {} / {}",
        show(&summary["p50"]),
        show(&summary["p95"]),
        show(&summary["p99"]),
        show(&summary["max"])
    )
}

/// longrun ÷ peer, two decimals.
fn ratio(longrun: Option<f64>, peer: Option<f64>) -> String {
    match (longrun, peer) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

fn kib(bytes: Option<f64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} KiB", b / 1024.0))
}

fn mib(bytes: Option<f64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} MiB", b / (1024.0 * 1024.0)))
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// `sections`: markdown placed as is after the measured ones (the notes, the soak).
fn render(run: &Run, commands: &str, sections: &[&str], args: &Args) -> String {
    let mut md = String::new();
    // When the run began (its first scenario's line), not when this was written.
    let date = run
        .0
        .iter()
        .find_map(|line| line["at"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
        });
    let _ = writeln!(md, "# Performance\n");
    let _ = writeln!(
        md,
        "Measured numbers only, each with the command that produced it, from one run of \
`scripts/bench-compare` on {date} (UTC). longrun and the peers ran one after the other on the \
same machine, each on a private `redis-server` with the same settings (127.0.0.1, no \
persistence, `maxmemory-policy noeviction`), driven by the same load generator \
(`longrun-bench`, release build) over loopback. Ratios are longrun ÷ peer."
    );
    if let Some(banner) = &args.banner {
        let _ = writeln!(md, "\n> **Note:** {banner}");
    }
    goals(&mut md, run);
    initiation(&mut md, run);
    throughput(&mut md, run);
    fanout(&mut md, run);
    stream(&mut md, run);
    e2e(&mut md, run);
    replay(&mut md, run);
    producer(&mut md, run);
    limit(&mut md, run);
    transitions(&mut md, run);
    for section in sections.iter().filter(|section| !section.trim().is_empty()) {
        let _ = writeln!(md, "\n{}", section.trim_end());
    }
    machine(&mut md, run, args);
    let _ = writeln!(md, "\n## Exact commands\n");
    let _ = writeln!(
        md,
        "Run from the repository root after the README's setup; `scripts/bench-compare` runs \
all of them and rewrites this file.\n\n```sh"
    );
    for line in commands.lines().filter(|line| !line.trim().is_empty()) {
        let _ = writeln!(md, "{line}");
    }
    let _ = writeln!(md, "```");
    md
}

fn goals(md: &mut String, run: &Run) {
    let _ = writeln!(md, "\n## Goals (from the issues), from this run\n");
    let _ = writeln!(
        md,
        "| goal | longrun | peer | longrun ÷ peer | |\n|---|---|---|---|---|"
    );
    for clients in [10, 50] {
        let init_l = run.find("initiate", "longrun", |l| l["clients"] == clients);
        let init_p = run.find("initiate", "peer", |l| l["clients"] == clients);
        if init_l.is_none() && clients != 50 {
            continue;
        }
        let p99 = init_l.and_then(|l| num(&l["latency_ms"]["p99"]));
        let _ = writeln!(
            md,
            "| initiation p99 < 5 ms at {clients} clients | {} ms | {} ms | {} | {} |",
            p99.map_or("-".into(), short),
            init_p.map_or("-".into(), |l| show(&l["latency_ms"]["p99"])),
            ratio(p99, init_p.and_then(|l| num(&l["latency_ms"]["p99"]))),
            verdict(p99.map(|v| v < 5.0))
        );
    }
    let init_l = run.find("initiate", "longrun", |l| l["clients"] == 50);
    let init_p = run.find("initiate", "peer", |l| l["clients"] == 50);
    let rps_l = init_l.and_then(|l| num(&l["requests_per_s"]));
    let rps_p = init_p.and_then(|l| num(&l["requests_per_s"]));
    let _ = writeln!(
        md,
        "| initiation req/s ≥ 2× the reference stack | {} | {} | {} | {} |",
        rps_l.map_or("-".into(), short),
        rps_p.map_or("-".into(), short),
        ratio(rps_l, rps_p),
        verdict(rps_l.zip(rps_p).map(|(a, b)| a >= 2.0 * b))
    );
    let noop_l = run
        .find("throughput", "longrun", |l| {
            l["concurrency"] == 100 && l["workers"] == 1
        })
        .and_then(|l| num(&l["jobs_per_s"]));
    let noop_p = run
        .bullmq_runs("bullmq.noop")
        .into_iter()
        .find(|r| r["concurrency"] == 100)
        .and_then(|r| num(&r["jobs_per_s"]));
    let _ = writeln!(
        md,
        "| no-op jobs/s ≥ 3× BullMQ at concurrency 100 (1 worker process) | {} | {} | {} | {} |",
        noop_l.map_or("-".into(), short),
        noop_p.map_or("-".into(), short),
        ratio(noop_l, noop_p),
        verdict(noop_l.zip(noop_p).map(|(a, b)| a >= 3.0 * b))
    );
    let trips = run
        .find("throughput", "longrun", |l| l["monitor_sample"].is_object())
        .and_then(|l| num(&l["monitor_sample"]["client_commands_per_job"]));
    let trips_p = run
        .find("bullmq.monitor", "", |_| true)
        .and_then(|l| num(&l["client_commands_per_job"]));
    let _ = writeln!(
        md,
        "| ≤ 3 Redis round trips per job (commands sent by clients, MONITOR sample) | {} | {} | {} | {} |",
        trips.map_or("-".into(), short),
        trips_p.map_or("-".into(), short),
        ratio(trips, trips_p),
        verdict(trips.map(|v| v <= 3.0))
    );
    // One operation followed by all 1,000 clients: every step is one burst
    // of 1,000 deliveries for both targets alike (see the stream section).
    let one_burst =
        |l: &Value| l["clients"] == 1000 && l["operations"] == 1 && l["staggered"] != true;
    let stream_l = run.find("stream", "longrun", one_burst);
    let stream_p = run.find("stream", "peer", one_burst);
    let sp99 = stream_l.and_then(|l| num(&l["delivery_latency_ms"]["p99"]));
    let lost = stream_l.and_then(|l| l["lost_events"].as_u64());
    let _ = writeln!(
        md,
        "| stream p99 < 10 ms at 1,000 clients, 0 lost (one operation: a burst of 1,000 per step) | {} ms, {} lost | {} ms, {} lost | {} | {} |",
        sp99.map_or("-".into(), short),
        lost.map_or("-".into(), |v| v.to_string()),
        stream_p.map_or("-".into(), |l| show(&l["delivery_latency_ms"]["p99"])),
        stream_p.map_or("-".into(), |l| show(&l["lost_events"])),
        ratio(
            sp99,
            stream_p.and_then(|l| num(&l["delivery_latency_ms"]["p99"]))
        ),
        verdict(sp99.zip(lost).map(|(p, l)| p < 10.0 && l == 0))
    );
    let rss = stream_l.and_then(|l| num(&l["gateway_rss_per_connection_bytes"]));
    let rss_p = stream_p.and_then(|l| num(&l["gateway_rss_per_connection_bytes"]));
    let _ = writeln!(
        md,
        "| ≤ 32 KiB gateway memory per idle connection (1,000 clients) | {} | {} | {} | {} |",
        kib(rss),
        kib(rss_p),
        ratio(rss, rss_p),
        verdict(rss.map(|v| v <= 32.0 * 1024.0))
    );
    let fan_l = run
        .all("fanout", "longrun")
        .into_iter()
        .filter_map(|l| l["runs"].as_array())
        .flatten()
        .find(|r| r["children"] == 10_000 && r["timed_out"] == false)
        .and_then(|r| num(&r["wall_ms"]));
    let fan_p = run
        .bullmq_runs("bullmq.flow")
        .into_iter()
        .find(|r| r["children"] == 10_000)
        .and_then(|r| num(&r["wall_ms"]));
    let _ = writeln!(
        md,
        "| 10,000-child fan-out ≥ 3× faster than a BullMQ flow | {} ms | {} ms | {} | {} |",
        fan_l.map_or("-".into(), short),
        fan_p.map_or("-".into(), short),
        ratio(fan_l, fan_p),
        verdict(fan_l.zip(fan_p).map(|(a, b)| b >= 3.0 * a))
    );
}

fn initiation(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "\n## Initiation: `POST /v1/demo/sleep` (issue 4)\n\nC keep-alive HTTP clients start \
`demo.sleep {{\"duration_ms\":0,\"steps\":1}}` back to back for 10 s after a 2 s warm-up, \
against the whole platform (api, one worker process, gateway). Latency in ms. The peer is an \
Express api doing the same JWT check, input validation and `queue.add`.\n"
    );
    let _ = writeln!(
        md,
        "| clients | target | req/s | p50 / p95 / p99 / max | errors | backlog drained | CPU s |\n|---|---|---|---|---|---|---|"
    );
    let mut clients: Vec<u64> = run
        .0
        .iter()
        .filter(|l| l["scenario"] == "initiate")
        .filter_map(|l| l["clients"].as_u64())
        .collect();
    clients.sort_unstable();
    clients.dedup();
    for c in clients {
        let mut rates = [None, None];
        for (i, target) in ["longrun", "peer"].iter().enumerate() {
            if let Some(l) = run.find("initiate", target, |l| l["clients"] == c) {
                rates[i] = num(&l["requests_per_s"]);
                let _ = writeln!(
                    md,
                    "| {c} | {target} | {} | {} | {} | {} ms | {} |",
                    show(&l["requests_per_s"]),
                    latency(&l["latency_ms"]),
                    show(&l["errors"]),
                    show(&l["backlog_drain_ms"]),
                    cpu(&l["cpu_s"])
                );
            }
        }
        let _ = writeln!(
            md,
            "| {c} | **longrun ÷ peer** | **{}** | | | | |",
            ratio(rates[0], rates[1])
        );
    }
}

fn cpu(value: &Value) -> String {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| format!("{k} {}", show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn throughput(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "\n## Job throughput (issue 5)\n\nlongrun: N jobs of `demo.sleep {{\"duration_ms\":0,\"steps\":1}}` \
are queued through the api with no worker running, then W `longrun worker` processes at \
concurrency K drain them; time from the first job's start to the last job's end as the \
system recorded them (the `at` of the `started` and terminal events in the logs; BullMQ's \
`processedOn`/`finishedOn` for the peer stack), completion found by polling Redis. Every longrun job writes 4 events (created, started, progress, succeeded) \
to its log and publishes each. BullMQ: a pre-filled queue of `async () => {{}}` jobs drained by \
one `Worker` in the producer's process (`queue-bench.mjs`), completed jobs kept (its default). \
Peer stack: the Express + BullMQ service's worker draining the same `demo.sleep` jobs, \
publishing its events. Commands per job from `INFO commandstats` deltas (commands inside Lua \
scripts included).\n"
    );
    let _ = writeln!(
        md,
        "| system | jobs | workers × concurrency | jobs/s | longrun ÷ BullMQ | Redis commands per job | failed / timed out |\n|---|---|---|---|---|---|---|"
    );
    let bullmq = run.bullmq_runs("bullmq.noop");
    let bull_at = |k: u64| {
        bullmq
            .iter()
            .find(|r| r["concurrency"] == k)
            .and_then(|r| num(&r["jobs_per_s"]))
    };
    for l in run.all("throughput", "longrun") {
        let k = l["concurrency"].as_u64().unwrap_or(0);
        let _ = writeln!(
            md,
            "| longrun | {} | {} × {k} | {} | {} | {} | {} / {} |",
            show(&l["jobs"]),
            show(&l["workers"]),
            show(&l["jobs_per_s"]),
            ratio(num(&l["jobs_per_s"]), bull_at(k)),
            show(&l["redis_commands_per_job"]),
            show(&l["failed"]),
            show(&l["timed_out"])
        );
    }
    for r in &bullmq {
        let _ = writeln!(
            md,
            "| BullMQ no-op | {} | 1 × {} | {} | | {} | {} / {} |",
            show(&r["jobs"]),
            show(&r["concurrency"]),
            show(&r["jobs_per_s"]),
            show(&r["redis_commands_per_job"]),
            show(&r["failed"]),
            show(&r["timed_out"])
        );
    }
    for l in run.all("throughput", "peer") {
        let _ = writeln!(
            md,
            "| peer stack `demo.sleep` | {} | {} × {} | {} | | {} | {} / {} |",
            show(&l["jobs"]),
            show(&l["workers"]),
            show(&l["concurrency"]),
            show(&l["jobs_per_s"]),
            show(&l["redis_commands_per_job"]),
            show(&l["failed"]),
            show(&l["timed_out"])
        );
    }
    let _ = writeln!(
        md,
        "\nRound trips: a second, smaller drain under `MONITOR` counts the commands clients sent \
(each at most one round trip; pipelined ones share one) apart from those run inside scripts.\n"
    );
    let _ = writeln!(
        md,
        "| system | jobs | client commands per job | of which | commands inside scripts per job |\n|---|---|---|---|---|"
    );
    for l in run.all("throughput", "longrun") {
        let sample = &l["monitor_sample"];
        if sample.is_object() {
            let _ = writeln!(
                md,
                "| longrun ({} × {}) | {} | {} | {} | {} |",
                show(&l["workers"]),
                show(&l["concurrency"]),
                show(&sample["jobs"]),
                show(&sample["client_commands_per_job"]),
                compact(&sample["client_commands"]),
                show(&sample["script_commands_per_job"])
            );
        }
    }
    if let Some(b) = run.find("bullmq.monitor", "", |_| true) {
        let _ = writeln!(
            md,
            "| BullMQ (1 × {}) | {} | {} | {} | {} |",
            show(&b["concurrency"]),
            show(&b["jobs"]),
            show(&b["client_commands_per_job"]),
            compact(&b["client_commands"]),
            show(&b["script_commands_per_job"])
        );
    }
}

fn compact(value: &Value) -> String {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn fanout(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "\n## Fan-out: one parent, N children (issue 5)\n\nlongrun: `POST /v1/demo/fanout \
{{\"children\":N,\"child_duration_ms\":0,\"child_steps\":1}}` on one worker process at \
concurrency 100; wall time from the POST to the parent's terminal state (the api's long poll). \
BullMQ: `FlowProducer.add` of 1 parent + N no-op children, child worker concurrency 100, until \
the parent completed. Redis `used_memory` before, right after (terminal operations are kept for \
the retention period), and once retention expired them. CPU s: each longrun process's CPU from \
the POST to the parent's end.\n"
    );
    let _ = writeln!(
        md,
        "| children | system | wall ms | longrun ÷ BullMQ | Redis before → after → after retention | keys after | Redis commands per operation | CPU s |\n|---|---|---|---|---|---|---|---|"
    );
    let bull = run.bullmq_runs("bullmq.flow");
    let longrun: Vec<&Value> = run
        .all("fanout", "longrun")
        .into_iter()
        .filter_map(|l| l["runs"].as_array())
        .flatten()
        .collect();
    let mut sizes: Vec<u64> = longrun
        .iter()
        .chain(bull.iter())
        .filter_map(|r| r["children"].as_u64())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    for n in sizes {
        let b = bull.iter().find(|r| r["children"] == n);
        if let Some(r) = longrun.iter().find(|r| r["children"] == n) {
            let _ = writeln!(
                md,
                "| {n} | longrun{} | {} | {} | {} → {} → {} | {} | {} | {} |",
                if r["timed_out"] == true {
                    " (TIMED OUT)"
                } else {
                    ""
                },
                show(&r["wall_ms"]),
                ratio(num(&r["wall_ms"]), b.and_then(|b| num(&b["wall_ms"]))),
                mib(num(&r["redis_memory_before"])),
                mib(num(&r["redis_memory_after"])),
                r["redis_memory_after_retention"]
                    .as_f64()
                    .map_or("(not waited)".into(), |v| mib(Some(v))),
                show(&r["redis_keys_after"]),
                show(&r["redis_commands_per_operation"]),
                cpu(&r["cpu_s"])
            );
        }
        if let Some(r) = b {
            let _ = writeln!(
                md,
                "| {n} | BullMQ flow{} | {} | | {} → {} | | {} | |",
                if r["timed_out"] == true {
                    " (TIMED OUT)"
                } else {
                    ""
                },
                show(&r["wall_ms"]),
                mib(num(&r["redis_memory_before"])),
                mib(num(&r["redis_memory_after"])),
                show(&r["redis_commands_per_job"])
            );
        }
    }
}

fn stream(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "\n## Progress streams over WebSocket (issue 6)\n\nC clients spread over O owners (10 unless \
the row says otherwise) subscribe to their owner's events (longrun `owner: \"self\"`; a Socket.IO \
owner room for the peer); then each owner's `demo.sleep` emits 50 progress steps over 5 s (10 \
events/s per operation), so every client follows one operation. Latency: worker emit → client \
receive, for every progress event, in ms. Lost: seqs of the operation's log a client did not get. \
Memory: the gateway's RSS after C clients connected and subscribed, minus before, ÷ C. Clients \
stay connected until every client has its operation's terminal event.\n\n\
*Largest burst* is the load the run really made: the most deliveries of events emitted within one \
millisecond. The 10 operations are started together, but they step in lockstep only if the system \
starts them within a millisecond of each other: longrun does (a burst of C deliveries every \
100 ms), the peer's worker starts them up to ~100 ms apart, so its bursts are smaller (the \
column says how much). Rows with \
*1 operation* have all C clients follow one operation: a burst of C per step for both targets \
alike; the goal row uses those. Rows marked *staggered* start the 10 operations spread over one \
step interval (10 ms apart), as independent users' operations would be.\n"
    );
    let _ = writeln!(
        md,
        "| clients | target | largest burst | p50 / p95 / p99 / max | p99 longrun ÷ peer | events/s | delivered / expected | lost / dup / reordered | RSS per connection | CPU s |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut shapes: Vec<(u64, u64, bool)> = run
        .0
        .iter()
        .filter(|l| l["scenario"] == "stream")
        .filter_map(|l| {
            Some((
                l["clients"].as_u64()?,
                l["operations"].as_u64()?,
                l["staggered"] == true,
            ))
        })
        .collect();
    shapes.sort_unstable_by_key(|&(c, ops, staggered)| (c, staggered, std::cmp::Reverse(ops)));
    shapes.dedup();
    for (c, ops, staggered) in shapes {
        let is = |l: &Value| {
            l["clients"] == c && l["operations"] == ops && (l["staggered"] == true) == staggered
        };
        let peer = run.find("stream", "peer", is);
        let mut label = c.to_string();
        if ops != 10 {
            label += &format!(", {ops} operation{}", if ops == 1 { "" } else { "s" });
        }
        if staggered {
            label += ", staggered";
        }
        for target in ["longrun", "peer"] {
            if let Some(l) = run.find("stream", target, is) {
                let r = if target == "longrun" {
                    ratio(
                        num(&l["delivery_latency_ms"]["p99"]),
                        peer.and_then(|p| num(&p["delivery_latency_ms"]["p99"])),
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    md,
                    "| {label} | {target} | {} | {} | {r} | {} | {} / {} | {} / {} / {} | {} | {} |",
                    show(&l["largest_burst"]),
                    latency(&l["delivery_latency_ms"]),
                    show(&l["events_per_s"]),
                    show(&l["delivered_events"]),
                    show(&l["expected_events"]),
                    show(&l["lost_events"]),
                    show(&l["duplicates"]),
                    show(&l["reorders"]),
                    kib(num(&l["gateway_rss_per_connection_bytes"])),
                    cpu(&l["cpu_s"])
                );
            }
        }
    }
}

fn e2e(md: &mut String, run: &Run) {
    let _ = writeln!(
        md,
        "\n## End to end: POST → terminal event on the WebSocket\n\n10 clients in flight, each its \
own owner, 1,000 `demo.sleep {{\"duration_ms\":0,\"steps\":10}}` in all. *owner*: subscribed to \
the owner's events before the POST. *operation*: subscribed to the operation after the POST \
answered (longrun replays its log with `after_seq: 0`; the peer's ack carries a snapshot, the \
only way it learns of an operation that ended before the subscription). Latency in ms.\n"
    );
    let _ = writeln!(
        md,
        "| subscription | target | p50 / p95 / p99 / max | p99 longrun ÷ peer | completed / failures | ended via snapshot |\n|---|---|---|---|---|---|"
    );
    for mode in ["owner", "operation"] {
        let peer = run.find("e2e", "peer", |l| l["subscribe"] == mode);
        for target in ["longrun", "peer"] {
            if let Some(l) = run.find("e2e", target, |l| l["subscribe"] == mode) {
                let r = if target == "longrun" {
                    ratio(
                        num(&l["post_to_terminal_ms"]["p99"]),
                        peer.and_then(|p| num(&p["post_to_terminal_ms"]["p99"])),
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(
                    md,
                    "| {mode} | {target} | {} | {r} | {} / {} | {} |",
                    latency(&l["post_to_terminal_ms"]),
                    show(&l["completed"]),
                    show(&l["failures"]),
                    show(&l["terminal_via_snapshot"])
                );
            }
        }
    }
}

fn replay(md: &mut String, run: &Run) {
    let Some(r) = run.find("replay", "longrun", |_| true) else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## Replay: clients arriving at once with `after_seq: 0` (longrun)\n\nAs after a \
gateway restart: {} clients connect, then all subscribe at once to one of {} operations with \
`after_seq: 0` and read its whole log ({} events, written beforehand) to the terminal event. \
The peer has no counterpart (Socket.IO rooms keep no history).\n",
        show(&r["clients"]),
        show(&r["operations"]),
        show(&r["events_per_operation"])
    );
    let _ = writeln!(
        md,
        "| clients with their whole log | events replayed | seconds | events/s | gateway CPU per event | CPU s |\n|---|---|---|---|---|---|"
    );
    let _ = writeln!(
        md,
        "| {} of {} | {} | {} | {} | {} µs | {} |",
        show(&r["clients_with_whole_log"]),
        show(&r["clients"]),
        show(&r["replayed_events"]),
        show(&r["seconds"]),
        show(&r["events_per_s"]),
        show(&r["gateway_cpu_us_per_event"]),
        cpu(&r["cpu_s"])
    );
}

fn producer(md: &mut String, run: &Run) {
    let add = run.find("bullmq.add", "", |_| true);
    let bulk = run.find("bullmq.add-bulk", "", |_| true);
    if add.is_none() && bulk.is_none() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## BullMQ producer, for reference\n\nIn-process `Queue.add` / `addBulk` with no HTTP, \
no auth and no validation: the floor under the peer stack's initiation numbers above.\n"
    );
    let _ = writeln!(
        md,
        "| call | jobs | jobs/s | latency ms p50 / p95 / p99 / max | Redis commands per job |\n|---|---|---|---|---|"
    );
    if let Some(a) = add {
        let _ = writeln!(
            md,
            "| `add`, {} in flight | {} | {} | {} | {} |",
            show(&a["in_flight"]),
            show(&a["jobs"]),
            show(&a["jobs_per_s"]),
            latency(&a["latency_ms"]),
            show(&a["redis_commands_per_job"])
        );
    }
    if let Some(b) = bulk {
        let _ = writeln!(
            md,
            "| `addBulk`, batches of {} | {} | {} | - | {} |",
            show(&b["batch"]),
            show(&b["jobs"]),
            show(&b["jobs_per_s"]),
            show(&b["redis_commands_per_job"])
        );
    }
}

fn limit(md: &mut String, run: &Run) {
    let Some(l) = run.find("limit", "", |_| true) else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## The physical limit: Redis itself\n\n`redis-benchmark` with {} connections, no \
pipelining, {} requests per test, against a private Redis {} with the same settings. Every \
longrun start is one script call and every job a few, so these are the ceilings.\n",
        show(&l["clients"]),
        show(&l["requests"]),
        show(&l["redis"])
    );
    let _ = writeln!(
        md,
        "| test | req/s | p50 / p95 / p99 / max ms |\n|---|---|---|"
    );
    for t in l["tests"].as_array().into_iter().flatten() {
        let r = &t["result"];
        let _ = writeln!(
            md,
            "| {} | {} | {} / {} / {} / {} |",
            show(&t["test"]),
            show(&r["requests_per_s"]),
            show(&r["p50_ms"]),
            show(&r["p95_ms"]),
            show(&r["p99_ms"]),
            show(&r["max_ms"])
        );
    }
}

fn transitions(md: &mut String, run: &Run) {
    let Some(t) = run.find("transitions", "", |_| true) else {
        return;
    };
    let _ = writeln!(
        md,
        "\n## Redis's own cost per transition\n\nOn a private Redis {} with nothing else \
running, through longrun's own store: {} operations created (with their index and queue \
entries), claimed and completed (with a final progress report) in calls of {}, {} rounds. \
Microseconds of Redis per operation from `INFO commandstats` (wall time inside Redis, so \
a busy machine inflates them): the function calls, and everything the step sent.\n",
        show(&t["redis"]),
        show(&t["operations"]),
        show(&t["batch"]),
        show(&t["rounds"])
    );
    let _ = writeln!(
        md,
        "| step | functions µs per operation | all commands µs per operation |\n|---|---|---|"
    );
    let values = |step: &Value, field: &str| -> String {
        step[field]
            .as_array()
            .into_iter()
            .flatten()
            .map(show)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for step in crate::scenario::transitions::STEPS {
        let s = &t["steps"][step];
        let _ = writeln!(
            md,
            "| {step} | {} | {} |",
            values(s, "fcall_usec_per_op"),
            values(s, "all_usec_per_op")
        );
    }
}

fn machine(md: &mut String, run: &Run, args: &Args) {
    let _ = writeln!(md, "\n## Machine and versions\n");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|l| l.trim_matches('"').to_owned())
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let _ = writeln!(
        md,
        "- Machine: {cores} vCPU ({model}), {mem_gib} RAM, {os}, kernel {}. Load generator, Redis \
and every service share it.",
        kernel.trim()
    );
    if let Some(seconds) = args.elapsed_s {
        let _ = writeln!(
            md,
            "- The whole run took {} min {} s.",
            seconds / 60,
            seconds % 60
        );
    }
    let tool = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        md,
        "- longrun {} (commit `{commit}`), release build; {}.",
        env!("CARGO_PKG_VERSION"),
        tool("rustc", "--version")
    );
    let _ = writeln!(md, "- {}.", tool("redis-server", "--version"));
    let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/node_modules");
    let version = |package: &str| {
        std::fs::read_to_string(format!("{peers}/{package}/package.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|json| json["version"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into())
    };
    let _ = writeln!(
        md,
        "- Peers: node {}, bullmq {}, ioredis {}, express {}, socket.io {}, jsonwebtoken {} \
(pinned in `bench/peers/package-lock.json`).",
        tool("node", "--version"),
        version("bullmq"),
        version("ioredis"),
        version("express"),
        version("socket.io"),
        version("jsonwebtoken")
    );
    let failures: Vec<String> = run
        .0
        .iter()
        .filter(|l| l.get("error").is_some())
        .map(|l| format!("{}: {}", show(&l["scenario"]), show(&l["error"])))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(md, "\nScenarios that failed in this run:\n");
        for failure in failures {
            let _ = writeln!(md, "- {}", failure.lines().next().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args() -> Args {
        Args {
            results: PathBuf::new(),
            commands: PathBuf::new(),
            notes: None,
            soak: None,
            banner: Some("busy machine".into()),
            elapsed_s: Some(61),
            out: None,
        }
    }

    #[test]
    fn ratios_and_goals_come_from_the_lines() {
        let run = Run(vec![
            json!({"scenario": "initiate", "target": "longrun", "clients": 50,
                   "requests_per_s": 6000.0, "latency_ms": {"n": 10, "p50": 1.0, "p95": 2.0, "p99": 4.0, "max": 5.0},
                   "errors": 0, "backlog_drain_ms": 10, "cpu_s": {"api": 1.5}}),
            json!({"scenario": "initiate", "target": "peer", "clients": 50,
                   "requests_per_s": 2000.0, "latency_ms": {"n": 10, "p50": 20.0, "p95": 30.0, "p99": 40.0, "max": 50.0},
                   "errors": 0, "backlog_drain_ms": 10, "cpu_s": {"api": 9.0}}),
            json!({"scenario": "stream", "target": "longrun", "error": "boom"}),
        ]);
        let md = render(&run, "longrun-bench initiate\n", &[], &args());
        assert!(
            md.contains("| initiation p99 < 5 ms at 50 clients | 4.00 ms | 40.0 ms | 0.10 | met |"),
            "{md}"
        );
        assert!(
            md.contains("| initiation req/s ≥ 2× the reference stack | 6000 | 2000 | 3.00 | met |"),
            "{md}"
        );
        assert!(
            md.contains("| 50 | **longrun ÷ peer** | **3.00** |"),
            "{md}"
        );
        assert!(md.contains("> **Note:** busy machine"));
        assert!(md.contains("stream: boom"), "failed scenarios are listed");
        assert!(md.contains("```sh\nlongrun-bench initiate\n```"));
    }

    #[test]
    fn transition_costs_are_listed_per_round() {
        let run = Run(vec![json!({
            "scenario": "transitions", "target": "redis", "redis": "7.0.15",
            "operations": 4000, "batch": 16, "rounds": 2,
            "steps": {
                "create": {"fcall_usec_per_op": [25.5, 26.0], "all_usec_per_op": [30.0, 31.5]},
                "claim": {"fcall_usec_per_op": [24.0, 24.5], "all_usec_per_op": [24.0, 24.5]},
                "complete": {"fcall_usec_per_op": [30.0, 31.0], "all_usec_per_op": [30.0, 31.0]},
            },
        })]);
        let md = render(&run, "", &[], &args());
        assert!(md.contains("## Redis's own cost per transition"), "{md}");
        assert!(md.contains("| create | 25.5, 26.0 | 30.0, 31.5 |"), "{md}");
        assert!(
            md.contains("| complete | 30.0, 31.0 | 30.0, 31.0 |"),
            "{md}"
        );
    }

    #[test]
    fn replay_is_reported_with_its_gateway_cost() {
        let run = Run(vec![json!({
            "scenario": "replay", "target": "longrun", "clients": 1000, "operations": 10,
            "events_per_operation": 203, "replayed_events": 203000,
            "clients_with_whole_log": 1000, "seconds": 0.79, "events_per_s": 257317.0,
            "gateway_cpu_us_per_event": 4.78, "cpu_s": {"gateway": 0.97},
        })]);
        let md = render(&run, "", &[], &args());
        assert!(md.contains("## Replay: clients arriving at once"), "{md}");
        assert!(
            md.contains("| 1000 of 1000 | 203000 | 0.79 | 257317 | 4.78 µs |"),
            "{md}"
        );
    }

    #[test]
    fn missing_measurements_say_so() {
        let md = render(&Run(Vec::new()), "", &[], &args());
        assert!(md.contains("not measured"));
        assert!(!md.contains("met |"));
    }
}
