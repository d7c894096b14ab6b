//! The soak's per-minute record (RSS of every longrun process from
//! `/proc/PID/status`, Redis `used_memory` and `DBSIZE`, operations started
//! and finished so far, WebSocket clients connected) and the verdict: the
//! average of the last 5 minutes against minutes 5–10 (after warm-up) for
//! each memory series, "flat" when it grew less than 10 %.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::followers::WsCounters;
use super::load::{Counters, get};
use crate::platform::Platform;
use crate::redis_probe;

/// One minute's reading.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Minutes since the load began (`None`: after the load, once retention passed).
    pub minute: Option<u64>,
    /// RSS in bytes of each longrun service, by name (api, gateway, worker-0, ...).
    pub rss: Vec<(String, u64)>,
    pub redis_used_memory: u64,
    pub redis_keys: u64,
    pub started: u64,
    pub finished: u64,
    pub children_started: u64,
    pub children_finished: u64,
    pub ws_connected: i64,
    pub ws_events: u64,
}

/// Reads everything a [`Sample`] holds, right now.
pub async fn take(
    minute: Option<u64>,
    platform: &Platform,
    probe: &mut MultiplexedConnection,
    load: &Counters,
    ws: &WsCounters,
) -> Result<Sample> {
    let rss = platform
        .stats()
        .into_iter()
        .filter(|(name, _)| name != "redis" && name != "loadgen")
        .map(|(name, stats)| (name, stats.rss_bytes))
        .collect();
    Ok(Sample {
        minute,
        rss,
        redis_used_memory: redis_probe::used_memory(probe).await?,
        redis_keys: redis_probe::dbsize(probe).await?,
        started: get(&load.started),
        finished: get(&load.finished),
        children_started: get(&load.children_started),
        children_finished: get(&load.children_finished),
        ws_connected: ws.connected.load(Ordering::Relaxed),
        ws_events: get(&ws.events),
    })
}

/// Warm-up minutes compared with the last ones.
const WARM: std::ops::RangeInclusive<u64> = 5..=10;
/// Minutes averaged at the end.
const LAST: u64 = 5;
/// Growth under this is flat.
const FLAT_PERCENT: f64 = 10.0;

/// Reads one series' value (for a process, when it is an RSS) from a sample.
type Reading = fn(&Sample, &str) -> f64;

/// One series' trend.
#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    pub series: String,
    pub unit: &'static str,
    /// Average over minutes 5–10.
    pub warm: f64,
    /// Average over the last 5 minutes.
    pub last: f64,
    pub growth_percent: f64,
    pub flat: bool,
}

/// The trend of every memory series; `None` when the run is too short
/// (the last 5 minutes must come after minute 10).
pub fn verdict(samples: &[Sample]) -> Option<Vec<Trend>> {
    let minutes: Vec<&Sample> = samples.iter().filter(|s| s.minute.is_some()).collect();
    let end = minutes.last()?.minute?;
    if end < WARM.end() + LAST {
        return None;
    }
    let warm: Vec<&Sample> = minutes
        .iter()
        .copied()
        .filter(|s| s.minute.is_some_and(|m| WARM.contains(&m)))
        .collect();
    let last: Vec<&Sample> = minutes
        .iter()
        .copied()
        .filter(|s| s.minute.is_some_and(|m| m > end - LAST))
        .collect();
    let mut series: Vec<(String, &'static str, Reading)> = minutes[0]
        .rss
        .iter()
        .map(|(name, _)| (format!("{name} RSS"), "MiB", rss_mib as Reading))
        .collect();
    series.push(("Redis used_memory".into(), "MiB", |s, _| {
        mib(s.redis_used_memory)
    }));
    series.push(("Redis keys".into(), "keys", |s, _| s.redis_keys as f64));
    Some(
        series
            .into_iter()
            .map(|(name, unit, value)| {
                let process = name.trim_end_matches(" RSS");
                trend(
                    &name,
                    unit,
                    average(&warm, process, value),
                    average(&last, process, value),
                )
            })
            .collect(),
    )
}

fn trend(series: &str, unit: &'static str, warm: f64, last: f64) -> Trend {
    let growth_percent = if warm > 0.0 {
        (last - warm) / warm * 100.0
    } else {
        0.0
    };
    Trend {
        series: series.to_owned(),
        unit,
        warm,
        last,
        growth_percent,
        flat: growth_percent < FLAT_PERCENT,
    }
}

fn average(samples: &[&Sample], process: &str, value: Reading) -> f64 {
    samples.iter().map(|s| value(s, process)).sum::<f64>() / samples.len().max(1) as f64
}

fn rss_mib(sample: &Sample, process: &str) -> f64 {
    let bytes = sample
        .rss
        .iter()
        .find(|(name, _)| name == process)
        .map_or(0, |(_, bytes)| *bytes);
    mib(bytes)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The column headers and one row of cells per sample.
fn cells(samples: &[Sample]) -> (Vec<String>, Vec<Vec<String>>) {
    let Some(first) = samples.first() else {
        return (Vec::new(), Vec::new());
    };
    let mut header = vec!["min".to_owned()];
    header.extend(first.rss.iter().map(|(name, _)| format!("{name} MiB")));
    header.extend(
        [
            "Redis MiB",
            "keys",
            "started",
            "finished",
            "children",
            "WS clients",
            "WS events",
        ]
        .map(String::from),
    );
    let rows = samples
        .iter()
        .map(|s| {
            let mut row = vec![s.minute.map_or("after".into(), |m| m.to_string())];
            row.extend(
                first
                    .rss
                    .iter()
                    .map(|(name, _)| format!("{:.1}", rss_mib(s, name))),
            );
            row.extend([
                format!("{:.1}", mib(s.redis_used_memory)),
                s.redis_keys.to_string(),
                s.started.to_string(),
                s.finished.to_string(),
                format!("{}/{}", s.children_finished, s.children_started),
                s.ws_connected.to_string(),
                s.ws_events.to_string(),
            ]);
            row
        })
        .collect();
    (header, rows)
}

/// One line per sample, aligned, for stderr.
pub fn text_row(header: bool, sample: &Sample) -> String {
    let (names, rows) = cells(std::slice::from_ref(sample));
    let line = |cells: &[String]| {
        cells
            .iter()
            .map(|cell| format!(" {cell:>11}"))
            .collect::<String>()
    };
    match (header, rows.first()) {
        (true, Some(row)) => format!("{}\n{}", line(&names), line(row)),
        (false, Some(row)) => line(row),
        (_, None) => String::new(),
    }
}

/// The per-minute table in markdown.
pub fn markdown_table(samples: &[Sample]) -> String {
    let (header, rows) = cells(samples);
    let mut md = String::new();
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}", "---:|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md
}

/// `api RSS: 12.1 -> 12.3 MiB (+1.7 %) flat`.
pub fn trend_line(trend: &Trend) -> String {
    format!(
        "{}: {:.1} -> {:.1} {} ({:+.1} %) {}",
        trend.series,
        trend.warm,
        trend.last,
        trend.unit,
        trend.growth_percent,
        if trend.flat { "flat" } else { "GROWING" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(minute: u64, api_mib: u64, keys: u64) -> Sample {
        Sample {
            minute: Some(minute),
            rss: vec![("api".into(), api_mib * 1024 * 1024)],
            redis_used_memory: 1024 * 1024,
            redis_keys: keys,
            started: 0,
            finished: 0,
            children_started: 0,
            children_finished: 0,
            ws_connected: 0,
            ws_events: 0,
        }
    }

    #[test]
    fn a_short_run_has_no_verdict() {
        let samples: Vec<Sample> = (0..=10).map(|m| sample(m, 10, 100)).collect();
        assert!(verdict(&samples).is_none());
    }

    #[test]
    fn the_last_five_minutes_are_compared_with_minutes_five_to_ten() {
        // api: 10 MiB until minute 10, then 12 MiB: +20 %; keys stay.
        let samples: Vec<Sample> = (0..=20)
            .map(|m| sample(m, if m <= 10 { 10 } else { 12 }, 100))
            .collect();
        let trends = verdict(&samples).expect("long enough");
        let api = &trends[0];
        assert_eq!(api.series, "api RSS");
        assert!((api.warm - 10.0).abs() < 1e-9 && (api.last - 12.0).abs() < 1e-9);
        assert!(!api.flat, "{api:?}");
        let keys = trends
            .iter()
            .find(|t| t.series == "Redis keys")
            .expect("keys");
        assert!(keys.flat && keys.growth_percent.abs() < 1e-9);
    }
}
