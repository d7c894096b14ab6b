//! `bullmq`: BullMQ's queue-level benchmarks (`bench/peers/queue-bench.mjs`:
//! add, addBulk, no-op processing at concurrency 1 and 100, flows of 1
//! parent + N children, a MONITOR sample) on a private Redis with the same
//! settings as every other scenario. Its JSON lines are passed through.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use longrun_shared::redis_server::{RedisOptions, RedisServer};

use crate::platform::Setup;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Options for queue-bench.mjs (e.g. `--only noop --jobs 5000`), after `--`.
    #[arg(last = true)]
    pub options: Vec<String>,
}

pub fn run(setup: &Setup, args: &Args) -> Result<()> {
    if !setup.peers_dir.join("node_modules").exists() {
        bail!(
            "{}/node_modules is missing; run `npm ci` there first",
            setup.peers_dir.display()
        );
    }
    let redis = RedisServer::start(RedisOptions::default()).context("starting redis-server")?;
    let mut child = Command::new("node")
        .arg(setup.peers_dir.join("queue-bench.mjs"))
        .args(["--redis", &redis.url()])
        .args(&args.options)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("running node (install Node.js 20 or later)")?;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            eprintln!("{}", summary(&value));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("queue-bench.mjs exited with {status}");
    }
    Ok(())
}

fn summary(line: &serde_json::Value) -> String {
    let name = line["scenario"].as_str().unwrap_or("?");
    if let Some(error) = line["error"].as_str() {
        return format!("{name}: ERROR {}", error.lines().next().unwrap_or(""));
    }
    let runs: Vec<String> = line["runs"]
        .as_array()
        .map(|runs| {
            runs.iter()
                .map(|run| {
                    let size = run.get("concurrency").or_else(|| run.get("children"));
                    let speed = run.get("jobs_per_s").or_else(|| run.get("wall_ms"));
                    format!(
                        "{} -> {}",
                        size.unwrap_or(&serde_json::Value::Null),
                        speed.unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if runs.is_empty() {
        format!("{name}: jobs/s {}", line["jobs_per_s"])
    } else {
        format!("{name}: {}", runs.join(", "))
    }
}
