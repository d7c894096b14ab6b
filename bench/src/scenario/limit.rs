//! `limit`: what Redis itself does on this machine with the benchmarks'
//! settings, measured by `redis-benchmark` (C clients, no pipelining): a
//! trivial script (`EVALSHA` of `return 1`), a script with the minimum of
//! one longrun transition (HINCRBY seq, RPUSH to the log, PUBLISH), a bare
//! PUBLISH and PING. The ceiling every job-per-second number lives under.

use std::process::Command;

use anyhow::{Context, Result, bail};
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use serde_json::{Value, json};

use super::Report;
use crate::platform::Target;
use crate::redis_probe;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Parallel connections of redis-benchmark.
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests per test.
    #[arg(long, default_value_t = 200_000)]
    pub requests: usize,
}

const TRIVIAL: &str = "return 1";
const TRANSITION: &str = "local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1) \
redis.call('RPUSH', KEYS[2], ARGV[1]) \
redis.call('PUBLISH', KEYS[3], ARGV[1]) return seq";

pub async fn run(args: &Args) -> Result<Report> {
    let redis = RedisServer::start(RedisOptions::default()).context("starting redis-server")?;
    let mut conn = redis_probe::connect(&redis.url()).await?;
    let trivial: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(TRIVIAL)
        .query_async(&mut conn)
        .await?;
    let transition: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(TRANSITION)
        .query_async(&mut conn)
        .await?;
    let version = redis_probe::version(&mut conn).await?;
    let tests: Vec<(&str, Vec<String>)> = vec![
        ("EVALSHA `return 1`", words(&format!("evalsha {trivial} 0"))),
        (
            "EVALSHA HINCRBY + RPUSH + PUBLISH",
            words(&format!(
                "evalsha {transition} 3 bench:{{t}}:op bench:{{t}}:log bench:{{t}}:ch {{\"percent\":50}}"
            )),
        ),
        ("PUBLISH (no subscriber)", words("publish bench:ch hello")),
        ("PING", words("ping")),
    ];
    let mut rows = Vec::new();
    let mut report = Report::new("limit", Target::Longrun);
    for (name, command) in tests {
        let row = benchmark(redis.port(), args, &command)?;
        report.row(
            name,
            format!(
                "{} req/s, p50 {} ms, p99 {} ms",
                row["requests_per_s"], row["p50_ms"], row["p99_ms"]
            ),
        );
        rows.push(json!({"test": name, "command": command.join(" "), "result": row}));
    }
    report.json.insert("target".into(), json!("redis"));
    report.set("redis", version);
    report.set("clients", args.clients);
    report.set("requests", args.requests);
    report.set("tests", rows);
    Ok(report)
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// Runs one redis-benchmark test and reads its CSV line.
fn benchmark(port: u16, args: &Args, command: &[String]) -> Result<Value> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &args.clients.to_string()])
        .args(["-n", &args.requests.to_string()])
        .arg("--csv")
        .args(command)
        .output()
        .context("running redis-benchmark (apt-get install redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(line) = text.lines().rfind(|line| !line.starts_with("\"test\"")) else {
        bail!(
            "redis-benchmark printed nothing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let fields: Vec<f64> = line
        .split("\",\"")
        .skip(1)
        .filter_map(|field| field.trim_matches('"').parse().ok())
        .collect();
    if fields.len() < 7 {
        bail!("unexpected redis-benchmark line: {line}");
    }
    Ok(json!({
        "requests_per_s": fields[0].round(),
        "p50_ms": fields[3],
        "p95_ms": fields[4],
        "p99_ms": fields[5],
        "max_ms": fields[6],
    }))
}
