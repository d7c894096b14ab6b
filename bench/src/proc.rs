//! Service processes the benchmark starts (longrun's services, the peer
//! stack's Node processes): spawned with their environment, their output
//! in a log file, stopped by their own PID when dropped (SIGTERM, then
//! SIGKILL), and measured through `/proc` (RSS, CPU seconds).

use std::fs::File;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// One running service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `program args` with `env` added, stdout and stderr into `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        log: PathBuf,
    ) -> Result<Service> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}: {}", program.display()))?;
        Ok(Service {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the service's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited with {status}; its log ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `addr` accepts TCP connections (or the process dies, or 30 s pass).
    pub fn wait_listening(&mut self, addr: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.check_alive()?;
            if TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not listen on {addr} within 30 s", self.name)
    }

    /// Waits until the log contains `needle` (or the process dies, or 30 s pass).
    pub fn wait_log(&mut self, needle: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.check_alive()?;
            if std::fs::read_to_string(&self.log).is_ok_and(|text| text.contains(needle)) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{} did not log `{needle}` within 30 s", self.name)
    }

    /// Fails when the service died (after a scenario: a crash is a failed run).
    pub fn ensure_running(&mut self) -> Result<()> {
        self.check_alive()
    }

    pub fn stats(&self) -> ProcStats {
        ProcStats::of(self.pid())
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `/proc` says about a process right now.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStats {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
}

impl ProcStats {
    pub fn of(pid: u32) -> ProcStats {
        ProcStats {
            rss_bytes: rss_bytes(pid).unwrap_or(0),
            cpu_s: cpu_seconds(pid).unwrap_or(0.0),
        }
    }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// utime + stime (fields 14 and 15 of /proc/PID/stat), in clock ticks of 1/100 s.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// A port nothing listens on right now, on 127.0.0.1.
pub fn free_addr() -> Result<String> {
    let port = longrun_shared::redis_server::free_port()?;
    Ok(format!("127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let stats = ProcStats::of(std::process::id());
        assert!(stats.rss_bytes > 0);
        assert!(stats.cpu_s >= 0.0);
    }
}
