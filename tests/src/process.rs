//! The real `longrun` binary, run as a child process.

use std::process::{Child, Command, Output, Stdio};

/// The path of the `longrun` program under test. Integration tests pass
/// `env!("CARGO_BIN_EXE_longrun-e2e")`: cargo builds it before them.
pub type Binary = &'static str;

/// A `longrun` command with the given environment (and nothing inherited
/// that could point it elsewhere).
pub fn longrun(bin: Binary, env: &[(String, String)]) -> Command {
    let mut command = Command::new(bin);
    for name in [
        "REDIS_URL",
        "LONGRUN_URL",
        "LONGRUN_WS_URL",
        "LONGRUN_TOKEN",
        "LONGRUN_JWT_SECRET",
    ] {
        command.env_remove(name);
    }
    command.env("HOME", std::env::temp_dir().join("longrun-test-home"));
    command.env_remove("XDG_CONFIG_HOME");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs a `longrun` command to its end (without blocking the runtime:
/// the services it talks to may run on it).
pub async fn run(bin: Binary, env: &[(String, String)], args: &[&str]) -> Output {
    tokio::process::Command::from(longrun(bin, env))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("longrun runs")
}

/// A child process killed when dropped.
pub struct ProcessGuard {
    pub child: Child,
    log: Option<std::sync::Arc<std::sync::Mutex<String>>>,
}

impl ProcessGuard {
    /// Starts `longrun ARGS` in the background.
    pub fn spawn(bin: Binary, env: &[(String, String)], args: &[&str]) -> ProcessGuard {
        let child = longrun(bin, env)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("longrun starts");
        ProcessGuard { child, log: None }
    }

    /// Starts `longrun ARGS` in the background, keeping what it writes to
    /// stderr (its log) for [`log`](Self::log).
    pub fn spawn_logged(bin: Binary, env: &[(String, String)], args: &[&str]) -> ProcessGuard {
        let mut child = longrun(bin, env)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("longrun starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let sink = log.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = sink
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        ProcessGuard {
            child,
            log: Some(log),
        }
    }

    /// What the process wrote to stderr so far (with [`spawn_logged`](Self::spawn_logged)).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .map(|log| {
                log.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`KILL`, `TERM`, `STOP`, `CONT`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `limit`; its exit code.
    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
