//! A private `redis-server` process: what `longrun dev` runs when
//! `REDIS_URL` is unset, and what the test harness runs per test binary.
//!
//! It listens on 127.0.0.1 on a free port, keeps its files in a temporary
//! directory, and is stopped (and its directory removed) when dropped.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to run the server.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Keep an append-only file (`appendfsync everysec`), so a restart keeps the data.
    pub append_only: bool,
    /// A fixed port (default: a free one).
    pub port: Option<u16>,
    /// More `--name value` arguments.
    pub extra_args: Vec<String>,
}

#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a server and waits until it answers `PING`.
    pub fn start(options: RedisOptions) -> io::Result<RedisServer> {
        let dir = tempfile::Builder::new()
            .prefix("longrun-redis-")
            .tempdir()?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            options,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new(binary());
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--save")
            .arg("")
            .arg("--maxmemory-policy")
            .arg("noeviction")
            .arg("--protected-mode")
            .arg("yes")
            .arg("--loglevel")
            .arg("warning")
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"));
        if self.options.append_only {
            command.args(["--appendonly", "yes", "--appendfsync", "everysec"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        command.args(&self.options.extra_args);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!(
                        "cannot run `{}` ({err}); install it (apt-get install redis-server) or set REDIS_URL",
                        binary().display()
                    ),
                )
            })?;
        watch_parent(child.id());
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(io::Error::other(format!(
                    "redis-server exited with {status}: {}",
                    stderr.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other("redis-server did not answer within 10 s"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server abruptly (SIGKILL): what a crash looks like.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server politely (SHUTDOWN, which writes the AOF).
    pub fn stop(&mut self) {
        if self.child.is_some() {
            let _ = command(self.port, "SHUTDOWN");
            if let Some(mut child) = self.child.take() {
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts the server again on the same port and directory (an AOF is replayed).
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Starts the server again after [`kill`](Self::kill) or [`stop`](Self::stop).
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops the server when this process dies without dropping it (a static
/// in a test binary, a SIGKILLed `longrun dev`): a tiny shell loop polls
/// both PIDs and kills the server once its parent is gone.
fn watch_parent(server: u32) {
    let parent = std::process::id();
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {server} 2>/dev/null; do sleep 1; done; kill {server} 2>/dev/null"
    );
    let _ = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn binary() -> PathBuf {
    std::env::var_os("LONGRUN_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// A port nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn ping(port: u16) -> io::Result<()> {
    let reply = command(port, "PING")?;
    if reply.starts_with("+PONG") {
        Ok(())
    } else {
        Err(io::Error::other(reply))
    }
}

/// Sends one inline command and reads the first reply line.
fn command(port: u16, line: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(format!("{line}\r\n").as_bytes())?;
    let mut buffer = [0u8; 64];
    let read = stream.read(&mut buffer).unwrap_or(0);
    Ok(String::from_utf8_lossy(&buffer[..read]).into_owned())
}
