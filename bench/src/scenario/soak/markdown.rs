//! The soak's results as the "Soak" section of docs/PERFORMANCE.md: the
//! command, the settings, the machine, the per-minute table and the verdict.

use std::fmt::Write as _;

use super::samples::{self, Trend};
use super::{Args, Outcome};

/// The whole section, from `## Soak` on.
pub fn section(args: &Args, outcome: &Outcome) -> String {
    let mut md = String::new();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let _ = writeln!(
        md,
        "## Soak: {} minutes of mixed load (issue 10)\n",
        args.minutes
    );
    let _ = writeln!(
        md,
        "Run by `scripts/soak` on {date} (UTC): `{}`.\n",
        command(args)
    );
    let _ = writeln!(md, "{}\n", settings(args));
    let _ = writeln!(md, "Machine: {}.\n", machine());
    if let Some(note) = &args.note {
        let _ = writeln!(md, "> **Note:** {note}\n");
    }
    let _ = writeln!(md, "{}\n", results(outcome));
    let _ = writeln!(
        md,
        "Every minute (RSS from `/proc/PID/status` `VmRSS`; Redis `used_memory` and `DBSIZE`; \
         operations are roots: sleeps and fan-out parents; `after` is {} s after the load \
         stopped, once retention expired everything):\n",
        args.retention_s + 30
    );
    let _ = writeln!(md, "{}", samples::markdown_table(&outcome.samples));
    verdict(&mut md, outcome.trends.as_deref());
    md
}

/// Cores and memory of this machine, from the OS.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|line| line.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.0} GiB RAM; the load generator, Redis and every service share it",
        memory_kib as f64 / (1024.0 * 1024.0)
    )
}

fn command(args: &Args) -> String {
    let mut command = format!("longrun-bench soak --minutes {}", args.minutes);
    if args.retention_s != 60 {
        let _ = write!(command, " --retention-s {}", args.retention_s);
    }
    command
}

fn settings(args: &Args) -> String {
    format!(
        "One platform, each service its own release process: `longrun api`, {} × `longrun worker` \
         (`LONGRUN_WORKER_CONCURRENCY=100`) and `longrun realtime`, on a private `redis-server` \
         (no persistence, `noeviction`), with **`LONGRUN_RETENTION_S={}`** so finished \
         operations expire during the run. Load over loopback from `longrun-bench` for {} \
         minutes, spread over {} owners: {} `demo.sleep` starts per second (200–2000 ms, \
         5 steps; {} % of them run 5 s and are cancelled after 0.3–1.5 s), a `demo.fanout` of \
         {}–{} children (100 ms each) every {} s (every {}th cancelled after 1 s), each \
         operation long-polled until terminal; {} WebSocket clients connected throughout, \
         half subscribed with `owner: \"self\"` and half following one operation after \
         another (`after_seq: 0`), each reconnecting on average every {} s (an operation \
         follower resubscribes with `after_seq` = the last seq it got). Every seq is checked \
         per operation: a jump counts as lost events, a repeat as a duplicate.",
        args.workers,
        args.retention_s,
        args.minutes,
        args.owners,
        args.starts_per_s,
        args.cancel_percent,
        args.fanout_children.first().copied().unwrap_or(0),
        args.fanout_children.last().copied().unwrap_or(0),
        args.fanout_every_s,
        args.fanout_cancel_every,
        args.clients,
        args.churn_every_s,
    )
}

fn results(outcome: &Outcome) -> String {
    let ops = &outcome.operations;
    let ws = &outcome.websocket;
    format!(
        "| result | |\n|---|---|\n\
         | operations started / terminal | {} / {} ({} succeeded, {} cancelled, {} failed) |\n\
         | start errors / operations not terminal | {} / {} |\n\
         | fan-outs; children terminal / started | {}; {} / {} |\n\
         | WebSocket events checked | {} |\n\
         | **seq gaps / duplicate events** | **{} / {}** |\n\
         | reconnects; operations followed to the end | {}; {} |\n\
         | `error` frames; server closes | {}; {} |\n\
         | progress events the gateway coalesced; lost beyond them | {}; {} |\n\
         | passed (every operation terminal, no duplicate, no gap beyond coalescing) | {} |",
        ops["started"],
        ops["finished"],
        ops["succeeded"],
        ops["cancelled"],
        ops["failed"],
        ops["start_errors"],
        ops["not_terminal"],
        ops["fanouts"],
        ops["children_finished"],
        ops["children_started"],
        ws["events"],
        ws["lost"],
        ws["duplicates"],
        ws["reconnects"],
        ws["operations_followed"],
        ws["errors"],
        ws["server_closes"],
        outcome.coalesced.map_or("?".into(), |n| n.to_string()),
        outcome
            .unexplained_loss()
            .map_or("?".into(), |n| n.to_string()),
        if outcome.passed { "yes" } else { "**no**" },
    )
}

fn verdict(md: &mut String, trends: Option<&[Trend]>) {
    let Some(trends) = trends else {
        let _ = writeln!(md, "Verdict: none, the run is shorter than 15 minutes.");
        return;
    };
    let _ = writeln!(
        md,
        "Verdict: the average of the last 5 minutes against minutes 5–10 (after warm-up); \
         flat when it grew less than 10 %.\n"
    );
    let _ = writeln!(md, "| series | minutes 5–10 | last 5 minutes | growth | |");
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    for trend in trends {
        let _ = writeln!(
            md,
            "| {} | {:.1} {unit} | {:.1} {unit} | {:+.1} % | {} |",
            trend.series,
            trend.warm,
            trend.last,
            trend.growth_percent,
            if trend.flat { "flat" } else { "**growing**" },
            unit = trend.unit,
        );
    }
}
