//! What Redis itself says about a run: commands executed (`INFO
//! commandstats`, which counts commands run inside Lua scripts too), memory
//! (`INFO memory`), keys (`DBSIZE`), and — in a separate, slower sample —
//! which commands came from clients and which from scripts (`MONITOR`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::MultiplexedConnection;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A connection for probing (never used by the system under test).
pub async fn connect(url: &str) -> Result<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// Calls and microseconds per command so far, from one `INFO
/// commandstats` (commands inside scripts count too, so `evalsha`'s
/// microseconds include its inner commands').
#[derive(Debug, Clone, Default)]
pub struct CommandStats {
    pub calls: BTreeMap<String, u64>,
    pub usec: BTreeMap<String, u64>,
}

impl CommandStats {
    /// What happened between `before` and this snapshot.
    pub fn since(&self, before: &CommandStats) -> CommandStats {
        CommandStats {
            calls: calls_between(&before.calls, &self.calls),
            usec: calls_between(&before.usec, &self.usec),
        }
    }
}

pub async fn command_stats(conn: &mut MultiplexedConnection) -> Result<CommandStats> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    Ok(CommandStats {
        calls: parse_commandstats(&text),
        usec: parse_commandstat_field(&text, "usec"),
    })
}

/// Calls per command so far.
pub async fn command_calls(conn: &mut MultiplexedConnection) -> Result<BTreeMap<String, u64>> {
    Ok(command_stats(conn).await?.calls)
}

fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    parse_commandstat_field(text, "calls")
}

fn parse_commandstat_field(text: &str, field: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("cmdstat_")?;
            let (name, fields) = rest.split_once(':')?;
            let value = fields.split(',').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                (key == field).then_some(value)
            })?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Calls per command between two snapshots, without the probes' own INFO.
pub fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, calls)| {
            let delta = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            (delta > 0).then(|| (name.clone(), delta))
        })
        .collect()
}

/// `used_memory` in bytes.
pub async fn used_memory(conn: &mut MultiplexedConnection) -> Result<u64> {
    let text: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("used_memory:"))
        .and_then(|value| value.parse().ok())
        .context("INFO memory has no used_memory")
}

pub async fn dbsize(conn: &mut MultiplexedConnection) -> Result<u64> {
    Ok(redis::cmd("DBSIZE").query_async(conn).await?)
}

/// `redis_version` of the server.
pub async fn version(conn: &mut MultiplexedConnection) -> Result<String> {
    let text: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(text
        .lines()
        .find_map(|line| line.trim().strip_prefix("redis_version:"))
        .unwrap_or("?")
        .to_owned())
}

/// Commands seen by `MONITOR`, split by who ran them.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MonitorCounts {
    /// Sent by clients: each is at most one round trip (pipelined ones share one).
    pub from_clients: BTreeMap<String, u64>,
    /// Run inside Lua scripts (no round trip of their own).
    pub in_scripts: u64,
}

/// Records every command until `stop` resolves.
pub struct Monitor {
    task: tokio::task::JoinHandle<Result<MonitorCounts>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Monitor {
    /// Opens a `MONITOR` connection to `127.0.0.1:port` and starts counting.
    pub async fn start(port: u16) -> Result<Monitor> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut reader = BufReader::new(stream);
        let mut first = String::new();
        reader.read_line(&mut first).await?;
        anyhow::ensure!(first.starts_with("+OK"), "MONITOR answered {first}");
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut counts = MonitorCounts::default();
            let mut line = String::new();
            loop {
                line.clear();
                tokio::select! {
                    _ = &mut stopped => return Ok(counts),
                    read = reader.read_line(&mut line) => {
                        if read? == 0 {
                            return Ok(counts);
                        }
                        count_line(&line, &mut counts);
                    }
                }
            }
        });
        Ok(Monitor { task, stop })
    }

    /// Stops counting and returns what was seen.
    pub async fn finish(self) -> Result<MonitorCounts> {
        // Let the last replies' lines arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Commands only the benchmark's own probes send (readiness and completion
/// polling); the systems under test never send them from a client.
pub const PROBE_COMMANDS: &[&str] = &["xinfo", "xlen", "client", "zcard", "info", "dbsize"];

/// `+1700000000.123456 [0 127.0.0.1:5555] "evalsha" "..."` or `[0 lua]`.
fn count_line(line: &str, counts: &mut MonitorCounts) {
    let Some((source, rest)) = line
        .split_once('[')
        .and_then(|(_, after)| after.split_once(']'))
    else {
        return;
    };
    if source.ends_with(" lua") {
        counts.in_scripts += 1;
        return;
    }
    let command: String = rest
        .trim()
        .trim_start_matches('"')
        .split('"')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if PROBE_COMMANDS.contains(&command.as_str()) {
        return;
    }
    *counts.from_clients.entry(command).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_are_parsed() {
        let text = "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.5\r\ncmdstat_xadd:calls=3,usec=1\r\n";
        let calls = parse_commandstats(text);
        assert_eq!(calls.get("evalsha"), Some(&12));
        assert_eq!(calls.get("xadd"), Some(&3));
        let usec = parse_commandstat_field(text, "usec");
        assert_eq!(usec.get("evalsha"), Some(&30));
        assert_eq!(usec.get("xadd"), Some(&1));
    }

    #[test]
    fn deltas_leave_out_info() {
        let before = BTreeMap::from([("info".to_owned(), 1), ("get".to_owned(), 5)]);
        let after = BTreeMap::from([("info".to_owned(), 9), ("get".to_owned(), 7)]);
        assert_eq!(
            calls_between(&before, &after),
            BTreeMap::from([("get".to_owned(), 2)])
        );
    }

    #[test]
    fn monitor_lines_are_split_by_source() {
        let mut counts = MonitorCounts::default();
        count_line(
            "+1.5 [0 127.0.0.1:5000] \"evalsha\" \"abc\" \"1\"\r\n",
            &mut counts,
        );
        count_line("+1.6 [0 lua] \"hset\" \"k\" \"f\" \"v\"\r\n", &mut counts);
        assert_eq!(counts.from_clients.get("evalsha"), Some(&1));
        assert_eq!(counts.in_scripts, 1);
        count_line(
            "+1.7 [0 127.0.0.1:5001] \"xinfo\" \"groups\"\r\n",
            &mut counts,
        );
        assert_eq!(counts.from_clients.len(), 1, "probe commands are left out");
    }
}
