//! The system under test, started the way a user runs it: a private
//! `redis-server` (the same settings for every target), then the target's
//! services as separate processes — longrun's `longrun api`, `longrun
//! worker` × W and `longrun realtime`, or the peer stack's Node processes
//! (`node bench/peers/stack/server.mjs api|worker|ws`). Everything is
//! stopped by PID when the [`Platform`] is dropped.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use longrun_shared::auth::{TokenRequest, mint};
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use rand::RngCore;
use serde::Serialize;

use crate::proc::{ProcStats, Service, free_addr};

/// Which system a scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// longrun's own services (release build of `longrun`).
    Longrun,
    /// Express + BullMQ + Socket.IO (bench/peers/stack).
    Peer,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Longrun => "longrun",
            Target::Peer => "peer",
        }
    }
}

/// Where the programs are and how to run them.
#[derive(Debug, Clone, clap::Args)]
pub struct Setup {
    /// The `longrun` binary (default: next to this one, e.g. target/release/longrun).
    #[arg(long, global = true)]
    pub longrun_bin: Option<PathBuf>,
    /// The peer stack's directory (with node_modules installed by `npm ci`).
    #[arg(long, global = true, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/peers"))]
    pub peers_dir: PathBuf,
    /// Where service logs go (default: a fresh temporary directory, removed at the end).
    #[arg(long, global = true)]
    pub log_dir: Option<PathBuf>,
    /// Jobs each worker process runs at once (LONGRUN_WORKER_CONCURRENCY / WORKER_CONCURRENCY).
    #[arg(long, global = true, default_value_t = 100)]
    pub worker_concurrency: usize,
    /// Log filter of longrun's services (RUST_LOG). The peer stack logs nothing per request either.
    #[arg(long, global = true, default_value = "warn")]
    pub service_log: String,
}

/// The services a scenario needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles {
    pub api: bool,
    pub workers: usize,
    pub gateway: bool,
    /// Retention of terminal operations (longrun: LONGRUN_RETENTION_S).
    pub retention_s: Option<u64>,
}

impl Roles {
    /// The whole platform: api, one worker process and the gateway.
    pub fn full() -> Self {
        Roles {
            api: true,
            workers: 1,
            gateway: true,
            ..Roles::default()
        }
    }
}

/// A running target: its Redis and its services.
#[derive(Debug)]
pub struct Platform {
    pub target: Target,
    pub redis: RedisServer,
    pub api_url: String,
    pub ws_url: String,
    secret: String,
    setup: Setup,
    roles: Roles,
    api_addr: String,
    ws_addr: String,
    services: Vec<Service>,
    logs: LogDir,
}

#[derive(Debug)]
enum LogDir {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl LogDir {
    fn path(&self) -> PathBuf {
        match self {
            LogDir::Kept(path) => path.clone(),
            LogDir::Temporary(dir) => dir.path().to_owned(),
        }
    }
}

impl Platform {
    /// Starts a private Redis and the roles' services, and waits until they are ready.
    pub fn start(target: Target, setup: &Setup, roles: Roles) -> Result<Platform> {
        let redis = RedisServer::start(RedisOptions::default()).context("starting redis-server")?;
        let logs = match &setup.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                LogDir::Kept(dir.clone())
            }
            None => LogDir::Temporary(
                tempfile::Builder::new()
                    .prefix("longrun-bench-")
                    .tempdir()?,
            ),
        };
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut secret);
        let api_addr = free_addr()?;
        let ws_addr = free_addr()?;
        let mut platform = Platform {
            target,
            api_url: format!("http://{api_addr}"),
            ws_url: match target {
                Target::Longrun => format!("ws://{ws_addr}/v1/ws"),
                Target::Peer => format!("ws://{ws_addr}/socket.io/?EIO=4&transport=websocket"),
            },
            redis,
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
            setup: setup.clone(),
            roles,
            api_addr,
            ws_addr,
            services: Vec::new(),
            logs,
        };
        if roles.api {
            platform.start_api()?;
        }
        if roles.gateway {
            platform.start_gateway()?;
        }
        platform.start_workers(roles.workers)?;
        Ok(platform)
    }

    pub fn redis_url(&self) -> String {
        self.redis.url()
    }

    /// A token for owner `sub`, valid for a day.
    pub fn token(&self, sub: &str) -> Result<String> {
        mint(
            &self.secret,
            &TokenRequest {
                sub,
                roles: Vec::new(),
                ttl: Duration::from_secs(86_400),
                issuer: None,
                audience: None,
            },
        )
        .map_err(|err| anyhow::anyhow!("minting a token: {err}"))
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("REDIS_URL".to_owned(), self.redis.url())];
        match self.target {
            Target::Longrun => {
                env.extend([
                    ("LONGRUN_JWT_SECRET".into(), self.secret.clone()),
                    ("LONGRUN_API_ADDR".into(), self.api_addr.clone()),
                    ("LONGRUN_WS_ADDR".into(), self.ws_addr.clone()),
                    (
                        "LONGRUN_WORKER_CONCURRENCY".into(),
                        self.setup.worker_concurrency.to_string(),
                    ),
                    ("RUST_LOG".into(), self.setup.service_log.clone()),
                ]);
                if let Some(seconds) = self.roles.retention_s {
                    env.push(("LONGRUN_RETENTION_S".into(), seconds.to_string()));
                }
            }
            Target::Peer => env.extend([
                ("JWT_SECRET".into(), self.secret.clone()),
                ("API_ADDR".into(), self.api_addr.clone()),
                ("WS_ADDR".into(), self.ws_addr.clone()),
                (
                    "WORKER_CONCURRENCY".into(),
                    self.setup.worker_concurrency.to_string(),
                ),
            ]),
        }
        env
    }

    fn longrun_bin(&self) -> Result<PathBuf> {
        if let Some(path) = &self.setup.longrun_bin {
            return Ok(path.clone());
        }
        let exe = std::env::current_exe()?;
        let path = exe
            .parent()
            .map(|dir| dir.join("longrun"))
            .context("no directory for the longrun binary")?;
        if !path.exists() {
            bail!(
                "{} is missing; build it with `cargo build --release -p longrun` or pass --longrun-bin",
                path.display()
            );
        }
        Ok(path)
    }

    fn spawn(&mut self, role: &str, name: String) -> Result<Service> {
        let log = self.logs.path().join(format!("{name}.log"));
        let env = self.env();
        match self.target {
            Target::Longrun => {
                let bin = self.longrun_bin()?;
                Service::spawn(&name, &bin, &[role], &env, log)
            }
            Target::Peer => {
                let script = self.setup.peers_dir.join("stack/server.mjs");
                if !self.setup.peers_dir.join("node_modules").exists() {
                    bail!(
                        "{}/node_modules is missing; run `npm ci` there first",
                        self.setup.peers_dir.display()
                    );
                }
                let role = match role {
                    "realtime" => "ws",
                    other => other,
                };
                let script = script.to_string_lossy().into_owned();
                Service::spawn(&name, "node".as_ref(), &[&script, role], &env, log)
            }
        }
    }

    fn start_api(&mut self) -> Result<()> {
        let mut service = self.spawn("api", "api".into())?;
        service.wait_listening(&self.api_addr)?;
        self.services.push(service);
        Ok(())
    }

    fn start_gateway(&mut self) -> Result<()> {
        let mut service = self.spawn("realtime", "gateway".into())?;
        service.wait_listening(&self.ws_addr)?;
        self.services.push(service);
        Ok(())
    }

    /// Starts `count` more worker processes and waits until each is ready.
    pub fn start_workers(&mut self, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let first = self.workers().count();
        let known = match self.target {
            Target::Longrun => consumer_count(&self.redis)?,
            Target::Peer => 0,
        };
        let mut started = Vec::new();
        for index in first..first + count {
            started.push(self.spawn("worker", format!("worker-{index}"))?);
        }
        match self.target {
            // A longrun worker is ready once its consumer is in the group.
            Target::Longrun => wait_consumers(&self.redis, known, count, &mut started)?,
            Target::Peer => {
                for service in &mut started {
                    service.wait_log("\"ready\":\"worker\"")?;
                }
            }
        }
        self.services.extend(started);
        Ok(())
    }

    /// Stops every worker process (SIGTERM: they hand back what they hold).
    pub fn stop_workers(&mut self) {
        for service in &mut self.services {
            if service.name.starts_with("worker") {
                service.stop();
            }
        }
        self.services
            .retain(|service| !service.name.starts_with("worker"));
    }

    fn workers(&self) -> impl Iterator<Item = &Service> {
        self.services
            .iter()
            .filter(|service| service.name.starts_with("worker"))
    }

    pub fn gateway_pid(&self) -> Option<u32> {
        self.service("gateway").map(Service::pid)
    }

    fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|service| service.name == name)
    }

    /// RSS and CPU of every service, of Redis and of this load generator, by name.
    pub fn stats(&self) -> Vec<(String, ProcStats)> {
        let mut all: Vec<(String, ProcStats)> = self
            .services
            .iter()
            .map(|service| (service.name.clone(), service.stats()))
            .collect();
        if let Some(pid) = self.redis.pid() {
            all.push(("redis".into(), ProcStats::of(pid)));
        }
        // The load generator shares the machine: its CPU is part of the picture.
        all.push(("loadgen".into(), ProcStats::of(std::process::id())));
        all
    }

    /// Fails when a service died during the scenario.
    pub fn ensure_running(&mut self) -> Result<()> {
        for service in &mut self.services {
            service.ensure_running()?;
        }
        Ok(())
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for service in self.services.iter_mut().rev() {
            service.stop();
        }
    }
}

/// CPU seconds each process used between two [`Platform::stats`] readings.
pub fn cpu_between(
    before: &[(String, ProcStats)],
    after: &[(String, ProcStats)],
) -> serde_json::Map<String, serde_json::Value> {
    after
        .iter()
        .map(|(name, now)| {
            let then = before
                .iter()
                .find(|(other, _)| other == name)
                .map_or(0.0, |(_, s)| s.cpu_s);
            (
                name.clone(),
                serde_json::json!(crate::stats::round(now.cpu_s - then, 2)),
            )
        })
        .collect()
}

/// Consumers of the work queue's group (0 before the group exists).
fn consumer_count(redis: &RedisServer) -> Result<usize> {
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_connection()?;
    let keys = longrun_shared::keys::Keys::new("lr");
    let consumers: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(keys.ready(0))
        .arg(longrun_shared::keys::WORKER_GROUP)
        .query(&mut conn);
    Ok(consumers.map_or(0, |list| list.len()))
}

/// Connections blocked in `XREAD` (or `XREADGROUP`): idle workers waiting
/// for work on a queue shard.
fn blocked_readers(redis: &RedisServer) -> Result<usize> {
    let client = redis::Client::open(redis.url())?;
    let mut conn = client.get_connection()?;
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn)?;
    Ok(list
        .lines()
        .filter(|line| line.contains("cmd=xread") && line.contains("flags=b"))
        .count())
}

/// Waits until `count` new workers read the queue: they joined the
/// consumer group (a read that got entries) or wait blocked on an empty queue.
fn wait_consumers(
    redis: &RedisServer,
    known: usize,
    count: usize,
    services: &mut [Service],
) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        for service in services.iter_mut() {
            service.ensure_running()?;
        }
        let joined = consumer_count(redis)?.saturating_sub(known);
        if joined.max(blocked_readers(redis)?) >= count {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{count} longrun worker(s) did not read the queue within 30 s")
}
