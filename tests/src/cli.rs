//! Helpers for tests of the `longrun` command line: a command whose output
//! is read line by line while it runs ([`Running`]), one fed on stdin
//! ([`run_with_stdin`]), and a WebSocket gateway in its own process that
//! can be stopped or killed and started again on the same port
//! ([`GatewayProcess`]).

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use tokio::task::JoinHandle;

use crate::process::{Binary, ProcessGuard, longrun};

/// Runs `longrun ARGS` with `input` on its stdin, to its end.
pub async fn run_with_stdin(
    bin: Binary,
    env: &[(String, String)],
    args: &[&str],
    input: &str,
) -> Output {
    let mut child = tokio::process::Command::from(longrun(bin, env))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("longrun starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("stdin takes the input");
    drop(stdin);
    child.wait_with_output().await.expect("longrun runs")
}

/// A `longrun` command running in the background; its stdout is read line
/// by line as it comes, its stderr collected.
pub struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl Running {
    pub fn spawn(bin: Binary, env: &[(String, String)], args: &[&str]) -> Running {
        let mut child = tokio::process::Command::from(longrun(bin, env))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("longrun starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line of stdout; `None` once it closed. Panics after `limit`.
    pub async fn next_line(&mut self, limit: Duration) -> Option<String> {
        tokio::time::timeout(limit, self.stdout.next_line())
            .await
            .expect("a line arrives in time")
            .expect("stdout reads")
    }

    /// Sends a signal (`INT`, `TERM`, …).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Reads stdout to its end and waits for the exit (within `limit`):
    /// the exit code, the remaining stdout lines and all of stderr.
    pub async fn finish(mut self, limit: Duration) -> (Option<i32>, Vec<String>, String) {
        let mut rest = Vec::new();
        while let Some(line) = self.next_line(limit).await {
            rest.push(line);
        }
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("longrun exits in time")
            .expect("waits");
        let stderr = self.stderr.await.unwrap_or_default();
        (status.code(), rest, stderr)
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
    listener.local_addr().expect("addr").port()
}

/// `longrun realtime` in its own process on a fixed port, so it can be
/// stopped (SIGTERM: connections closed with 1001), killed (SIGKILL:
/// connections just drop) and started again where clients look for it.
pub struct GatewayProcess {
    bin: Binary,
    env: Vec<(String, String)>,
    port: u16,
    process: Option<ProcessGuard>,
}

impl GatewayProcess {
    /// Starts a gateway for the platform whose environment is `env`
    /// (see [`crate::Platform::env`]) and waits until it listens.
    pub async fn start(bin: Binary, env: &[(String, String)]) -> GatewayProcess {
        let mut gateway = GatewayProcess {
            bin,
            env: env.to_vec(),
            port: free_port(),
            process: None,
        };
        gateway.restart().await;
        gateway
    }

    /// Its base URL, for `LONGRUN_WS_URL`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on its port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        let mut env = self.env.clone();
        env.push(("LONGRUN_WS_ADDR".into(), format!("127.0.0.1:{}", self.port)));
        self.process = Some(ProcessGuard::spawn(self.bin, &env, &["realtime"]));
        let port = self.port;
        crate::eventually(
            Duration::from_secs(20),
            "the gateway to listen",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
    }

    /// Stops it the way a deploy does (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        self.end("TERM").await;
    }

    /// Kills it outright (SIGKILL): its connections drop without a close frame.
    pub async fn kill(&mut self) {
        self.end("KILL").await;
    }

    async fn end(&mut self, signal: &str) {
        let mut process = self.process.take().expect("the gateway runs");
        process.signal(signal);
        crate::eventually(Duration::from_secs(15), "the gateway to exit", || {
            let exited = matches!(process.child.try_wait(), Ok(Some(_)));
            async move { exited.then_some(()) }
        })
        .await;
    }
}
