//! The end-to-end test harness: real Redis, real services, real clients.
//!
//! - [`shared_redis`] starts one private `redis-server` per test binary, on
//!   a free port; every [`Platform`] on it gets its own key prefix, so tests
//!   run in parallel without seeing each other. Tests that break Redis
//!   (kill, restart) start their own with [`RedisServer::start`].
//! - [`Platform::start`] runs the api, a worker and the realtime gateway in
//!   the test's runtime, listening on port 0.
//! - [`ProcessGuard`] runs the real `longrun` binary for tests that kill,
//!   stop or signal a process.
//! - [`WsClient`] speaks the WebSocket protocol frame by frame.
//! - [`tree`] reads whole event logs and operation trees for assertions.
//! - [`http::Api`] sends raw HTTP, for exact statuses, headers and problems.

//! - [`cli`] reads a running `longrun` command line by line and runs a
//!   gateway process that can be stopped, killed and restarted on its port;
//!   [`terminal`] runs `longrun` in a pseudo-terminal and reads the screen.
//! - [`GatewayHandle`] runs a gateway in the test's runtime that can be
//!   stopped and started again on the same port; [`StandIn`] claims an
//!   operation and drives it through the real transition scripts at
//!   whatever pace a test needs (the real worker coalesces progress).

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod gateway;
pub mod http;
pub mod process;
pub mod stand_in;
pub mod terminal;
pub mod tree;
pub mod ws;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use longrun_client::Client;
use longrun_shared::auth::{TokenRequest, mint};
use longrun_shared::redis_server::{RedisOptions, RedisServer};
use longrun_shared::{Config, Store};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use gateway::GatewayHandle;
pub use process::ProcessGuard;
pub use stand_in::StandIn;
pub use ws::WsClient;

/// The JWT secret every test platform uses.
pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";

/// The Redis every test of this binary shares (isolated by key prefix).
pub fn shared_redis() -> String {
    static REDIS: OnceLock<RedisServer> = OnceLock::new();
    REDIS
        .get_or_init(|| {
            RedisServer::start(RedisOptions::default()).unwrap_or_else(|err| {
                panic!("the tests need redis-server (scripts/test installs it): {err}")
            })
        })
        .url()
}

/// A key prefix no other platform of this run uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for tests: the given Redis, a fresh prefix, port-0 addresses.
pub fn test_config(redis_url: &str) -> Config {
    let mut config = Config::from_lookup(|_| None).expect("defaults parse");
    config.redis_url = Some(redis_url.to_owned());
    config.redis_prefix = unique_prefix();
    config.jwt.secret = SECRET.to_owned();
    config.api_addr = "127.0.0.1:0".parse().expect("valid");
    config.ws_addr = "127.0.0.1:0".parse().expect("valid");
    config.worker.concurrency = 32;
    config.worker.lease = Duration::from_secs(5);
    config.worker.cancel_grace = Duration::from_millis(500);
    config.worker.shutdown_grace = Duration::from_secs(2);
    config
}

/// Mints a token for `sub` with the test secret.
pub fn token(sub: &str) -> String {
    token_with(sub, &[], Duration::from_secs(3600))
}

pub fn token_with(sub: &str, roles: &[&str], ttl: Duration) -> String {
    mint(
        SECRET,
        &TokenRequest {
            sub,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ttl,
            issuer: None,
            audience: None,
        },
    )
    .expect("mints")
}

/// Which services a platform runs, and how.
pub struct PlatformBuilder {
    config: Config,
    api: bool,
    workers: usize,
    realtime: bool,
}

impl PlatformBuilder {
    pub fn config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    pub fn workers(mut self, count: usize) -> Self {
        self.workers = count;
        self
    }

    pub fn without_api(mut self) -> Self {
        self.api = false;
        self
    }

    pub fn without_realtime(mut self) -> Self {
        self.realtime = false;
        self
    }

    pub async fn start(self) -> Platform {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let config = self.config;
        let mut api_url = String::new();
        let mut ws_url = String::new();
        if self.api {
            let listener = TcpListener::bind(config.api_addr).await.expect("api binds");
            api_url = format!("http://{}", listener.local_addr().expect("addr"));
            let (config, stop) = (config.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                longrun_api::run(config, listener, stop.cancelled_owned())
                    .await
                    .expect("api runs");
            }));
        }
        if self.realtime {
            let listener = TcpListener::bind(config.ws_addr)
                .await
                .expect("gateway binds");
            ws_url = format!("ws://{}", listener.local_addr().expect("addr"));
            let (config, stop) = (config.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                longrun_realtime::run(config, listener, stop.cancelled_owned())
                    .await
                    .expect("gateway runs");
            }));
        }
        for _ in 0..self.workers {
            let (config, stop) = (config.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                longrun_worker::run(
                    config,
                    longrun_worker::Registry::builtin(),
                    stop.cancelled_owned(),
                )
                .await
                .expect("worker runs");
            }));
        }
        let store = Store::from_config(&config).expect("store connects");
        Platform {
            config,
            api_url,
            ws_url,
            store,
            stop,
            tasks,
        }
    }
}

/// A running platform for one test.
pub struct Platform {
    pub config: Config,
    pub api_url: String,
    pub ws_url: String,
    pub store: Store,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Platform {
    /// api + one worker + gateway on the shared Redis.
    pub async fn start() -> Platform {
        Platform::builder().start().await
    }

    /// The api alone over a private queue: no worker drains it and no
    /// gateway runs, so what a request queued stays as it was.
    pub async fn queue_only() -> Platform {
        Platform::builder()
            .workers(0)
            .without_realtime()
            .start()
            .await
    }

    pub fn builder() -> PlatformBuilder {
        PlatformBuilder {
            config: test_config(&shared_redis()),
            api: true,
            workers: 1,
            realtime: true,
        }
    }

    pub fn builder_on(redis_url: &str) -> PlatformBuilder {
        PlatformBuilder {
            config: test_config(redis_url),
            api: true,
            workers: 1,
            realtime: true,
        }
    }

    /// A client acting as `sub`.
    pub fn client(&self, sub: &str) -> Client {
        Client::new(&self.api_url, &self.ws_url, &token(sub))
    }

    /// Raw HTTP against this platform's api.
    pub fn api(&self) -> http::Api {
        http::Api::new(&self.api_url)
    }

    /// A client with the admin role.
    pub fn admin(&self, sub: &str) -> Client {
        Client::new(
            &self.api_url,
            &self.ws_url,
            &token_with(sub, &["admin"], Duration::from_secs(3600)),
        )
    }

    /// A raw WebSocket connection authenticated as `sub` (token in the query).
    pub async fn ws(&self, sub: &str) -> WsClient {
        WsClient::connect(&format!(
            "{}/v1/ws?access_token={}",
            self.ws_url,
            token(sub)
        ))
        .await
        .expect("gateway accepts")
    }

    /// Environment for a `longrun` process joining this platform.
    pub fn env(&self) -> Vec<(String, String)> {
        let config = &self.config;
        vec![
            (
                "REDIS_URL".into(),
                config.redis_url.clone().unwrap_or_default(),
            ),
            ("LONGRUN_REDIS_PREFIX".into(), config.redis_prefix.clone()),
            ("LONGRUN_JWT_SECRET".into(), SECRET.into()),
            (
                "LONGRUN_LEASE_MS".into(),
                config.worker.lease.as_millis().to_string(),
            ),
            (
                "LONGRUN_CANCEL_GRACE_MS".into(),
                config.worker.cancel_grace.as_millis().to_string(),
            ),
            (
                "LONGRUN_SHUTDOWN_GRACE_MS".into(),
                config.worker.shutdown_grace.as_millis().to_string(),
            ),
            ("LONGRUN_URL".into(), self.api_url.clone()),
            ("LONGRUN_WS_URL".into(), self.ws_url.clone()),
            ("RUST_LOG".into(), "warn".into()),
        ]
    }

    /// Environment for a `longrun worker` process joining this platform.
    pub fn worker_env(&self, id: &str, concurrency: usize) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("LONGRUN_WORKER_ID".into(), id.into()));
        env.push(("LONGRUN_WORKER_CONCURRENCY".into(), concurrency.to_string()));
        env.push((
            "LONGRUN_RETENTION_S".into(),
            self.config.retention.as_secs().to_string(),
        ));
        env
    }

    /// Stops every service and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
