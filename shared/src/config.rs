//! Configuration from the environment, with the contract's names and
//! defaults. Every service reads the same [`Config`]; each uses the part it
//! needs. See docs/configuration.md for the whole table.

use std::env;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

/// A setting that could not be used; names the variable and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `REDIS_URL`. `None` only before `longrun dev` filled it in.
    pub redis_url: Option<String>,
    /// `LONGRUN_REDIS_PREFIX`: prefix of every key (several deployments can share one Redis).
    pub redis_prefix: String,
    pub redis: RedisConfig,
    pub jwt: JwtConfig,
    /// `LONGRUN_API_ADDR`.
    pub api_addr: SocketAddr,
    /// `LONGRUN_WS_ADDR`.
    pub ws_addr: SocketAddr,
    /// `LONGRUN_PUBLIC_URL`: scheme and host for absolute URLs; else the request's `Host`.
    pub public_url: Option<String>,
    /// `LONGRUN_PUBLIC_WS_URL`: the WebSocket URL the web dashboard connects to
    /// (e.g. `wss://example.com/v1/ws`); else the page's host on `LONGRUN_WS_ADDR`'s port.
    pub public_ws_url: Option<String>,
    /// `LONGRUN_RETENTION_S`: how long terminal operations, their logs and children stay.
    pub retention: Duration,
    /// `LONGRUN_BODY_LIMIT_BYTES`: largest request body the api accepts.
    pub body_limit_bytes: usize,
    /// `LONGRUN_RATE_LIMIT_PER_S` / `LONGRUN_RATE_LIMIT_BURST`: starts per owner; 0 turns it off.
    pub rate_limit_per_s: f64,
    pub rate_limit_burst: u32,
    pub worker: WorkerConfig,
    pub realtime: RealtimeConfig,
}

/// How the services use Redis (beyond its URL and key prefix).
#[derive(Debug, Clone, Default)]
pub struct RedisConfig {
    /// `LONGRUN_REDIS_CLUSTER`: `true` for a Redis Cluster (`REDIS_URL` then
    /// lists one or more seed nodes, comma-separated), `false` for one
    /// server; unset: a cluster when `REDIS_URL` lists several nodes.
    pub cluster: Option<bool>,
    /// `LONGRUN_QUEUE_SHARDS`: how many streams the work queue is spread
    /// over (unset: 1 on one server, 16 on a cluster). The deployment keeps
    /// the largest count any of its processes asked for (see
    /// docs/deploy.md): it can grow, never shrink.
    pub queue_shards: Option<u32>,
    /// `LONGRUN_STRICT`: refuse to start when Redis may lose operations
    /// (an evicting `maxmemory-policy`, no persistence) instead of warning.
    pub strict: bool,
    /// Set by `longrun dev` when it runs its own throwaway redis-server
    /// (persistence off on purpose): the self-check says so in one line.
    pub private: bool,
}

/// Most queue shards a deployment may use.
pub const MAX_QUEUE_SHARDS: u32 = 1_024;

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `LONGRUN_JWT_SECRET`.
    pub secret: String,
    /// `LONGRUN_JWT_ISSUER`.
    pub issuer: Option<String>,
    /// `LONGRUN_JWT_AUDIENCE`.
    pub audience: Option<String>,
    /// `LONGRUN_JWT_LEEWAY_S`.
    pub leeway_s: u64,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `LONGRUN_WORKER_CONCURRENCY`: jobs run at once per worker process.
    pub concurrency: usize,
    /// `LONGRUN_LEASE_MS`: how long a claim lives without a heartbeat.
    pub lease: Duration,
    /// `LONGRUN_CANCEL_GRACE_MS`: time a cancelled handler gets to stop before it is aborted.
    pub cancel_grace: Duration,
    /// `LONGRUN_SHUTDOWN_GRACE_MS`: time in-flight jobs get to finish on SIGTERM.
    pub shutdown_grace: Duration,
    /// `LONGRUN_DATA_DIR`: where `data.import` may read files from (unset: no file access).
    pub data_dir: Option<String>,
    /// `LONGRUN_WORKER_ID`: this process's consumer name (default: host-pid-random).
    pub worker_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// `LONGRUN_WS_MAX_SUBSCRIPTIONS`: per connection.
    pub max_subscriptions: usize,
    /// `LONGRUN_WS_MAX_CONNECTIONS_PER_OWNER`.
    pub max_connections_per_owner: usize,
    /// `LONGRUN_WS_MAX_SUBSCRIPTIONS_PER_OWNER`: over all of one owner's connections.
    pub max_subscriptions_per_owner: usize,
    /// `LONGRUN_WS_QUEUE`: outgoing frames buffered per connection before progress is coalesced.
    pub queue_soft: usize,
    /// `LONGRUN_WS_QUEUE_HARD`: past this many pending frames the connection closes with 4008.
    pub queue_hard: usize,
    /// `LONGRUN_WS_PING_S`: server ping interval; a peer silent for 3 intervals is dropped.
    pub ping_interval: Duration,
}

impl Config {
    /// Reads every setting from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| env::var(name).ok())
    }

    /// Reads every setting through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Config {
            redis_url: get("REDIS_URL"),
            redis_prefix: get("LONGRUN_REDIS_PREFIX").unwrap_or_else(|| "lr".into()),
            redis: RedisConfig {
                cluster: get("LONGRUN_REDIS_CLUSTER")
                    .map(|raw| flag("LONGRUN_REDIS_CLUSTER", &raw))
                    .transpose()?,
                queue_shards: get("LONGRUN_QUEUE_SHARDS")
                    .map(|raw| queue_shards(&raw))
                    .transpose()?,
                strict: get("LONGRUN_STRICT")
                    .map(|raw| flag("LONGRUN_STRICT", &raw))
                    .transpose()?
                    .unwrap_or(false),
                private: false,
            },
            jwt: JwtConfig {
                secret: get("LONGRUN_JWT_SECRET").unwrap_or_default(),
                issuer: get("LONGRUN_JWT_ISSUER"),
                audience: get("LONGRUN_JWT_AUDIENCE"),
                leeway_s: parse(&get, "LONGRUN_JWT_LEEWAY_S", 5)?,
            },
            api_addr: parse(
                &get,
                "LONGRUN_API_ADDR",
                "127.0.0.1:8080".parse().expect("valid"),
            )?,
            ws_addr: parse(
                &get,
                "LONGRUN_WS_ADDR",
                "127.0.0.1:8081".parse().expect("valid"),
            )?,
            public_url: get("LONGRUN_PUBLIC_URL").map(|url| url.trim_end_matches('/').to_owned()),
            public_ws_url: get("LONGRUN_PUBLIC_WS_URL")
                .map(|url| websocket_url("LONGRUN_PUBLIC_WS_URL", &url))
                .transpose()?,
            retention: Duration::from_secs(parse(&get, "LONGRUN_RETENTION_S", 86_400)?),
            body_limit_bytes: parse(&get, "LONGRUN_BODY_LIMIT_BYTES", 16 * 1024 * 1024)?,
            rate_limit_per_s: parse(&get, "LONGRUN_RATE_LIMIT_PER_S", 0.0)?,
            rate_limit_burst: parse(&get, "LONGRUN_RATE_LIMIT_BURST", 100)?,
            worker: WorkerConfig {
                concurrency: parse(&get, "LONGRUN_WORKER_CONCURRENCY", cores * 8)?.max(1),
                lease: Duration::from_millis(parse(&get, "LONGRUN_LEASE_MS", 30_000)?.max(100)),
                cancel_grace: Duration::from_millis(parse(&get, "LONGRUN_CANCEL_GRACE_MS", 5_000)?),
                shutdown_grace: Duration::from_millis(parse(
                    &get,
                    "LONGRUN_SHUTDOWN_GRACE_MS",
                    10_000,
                )?),
                data_dir: get("LONGRUN_DATA_DIR"),
                worker_id: get("LONGRUN_WORKER_ID"),
            },
            realtime: RealtimeConfig {
                max_subscriptions: parse(&get, "LONGRUN_WS_MAX_SUBSCRIPTIONS", 1_000)?,
                max_connections_per_owner: parse(
                    &get,
                    "LONGRUN_WS_MAX_CONNECTIONS_PER_OWNER",
                    10_000,
                )?,
                max_subscriptions_per_owner: parse(
                    &get,
                    "LONGRUN_WS_MAX_SUBSCRIPTIONS_PER_OWNER",
                    10_000,
                )?,
                queue_soft: parse(&get, "LONGRUN_WS_QUEUE", 256)?.max(1),
                queue_hard: parse(&get, "LONGRUN_WS_QUEUE_HARD", 4_096)?.max(2),
                ping_interval: Duration::from_secs(parse(&get, "LONGRUN_WS_PING_S", 20)?.max(1)),
            },
        })
    }

    /// The Redis URL, or a clear error naming the variable.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url.as_deref().ok_or(ConfigError {
            name: "REDIS_URL",
            message: "not set; point it at a Redis server (redis://host:port) or use `longrun dev`"
                .into(),
        })
    }

    /// Checks the settings every service needs before it starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.require_redis_url()?;
        if self.jwt.secret.len() < 16 {
            return Err(ConfigError {
                name: "LONGRUN_JWT_SECRET",
                message: "must be set to at least 16 characters".into(),
            });
        }
        if self.realtime.queue_hard <= self.realtime.queue_soft {
            return Err(ConfigError {
                name: "LONGRUN_WS_QUEUE_HARD",
                message: "must be larger than LONGRUN_WS_QUEUE".into(),
            });
        }
        Ok(())
    }
}

/// A yes/no setting: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
fn flag(name: &'static str, raw: &str) -> Result<bool, ConfigError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError {
            name,
            message: format!("cannot use `{raw}`: give true or false (or 1 or 0)"),
        }),
    }
}

fn queue_shards(raw: &str) -> Result<u32, ConfigError> {
    match raw.trim().parse::<u32>() {
        Ok(count) if (1..=MAX_QUEUE_SHARDS).contains(&count) => Ok(count),
        _ => Err(ConfigError {
            name: "LONGRUN_QUEUE_SHARDS",
            message: format!(
                "cannot use `{raw}`: give a whole number from 1 to {MAX_QUEUE_SHARDS}"
            ),
        }),
    }
}

/// A `ws://` or `wss://` URL, trimmed.
fn websocket_url(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim();
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"));
    match rest {
        Some(host) if !host.is_empty() && !url.chars().any(char::is_whitespace) => {
            Ok(url.to_owned())
        }
        _ => Err(ConfigError {
            name,
            message: format!(
                "cannot use `{raw}`: give a ws:// or wss:// URL, e.g. wss://example.com/v1/ws"
            ),
        }),
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|err| ConfigError {
            name,
            message: format!("cannot use `{raw}`: {err}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let config = config(&[]).expect("defaults parse");
        assert_eq!(config.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.ws_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(config.jwt.leeway_s, 5);
        assert_eq!(config.retention, Duration::from_secs(86_400));
        assert!(config.redis_url.is_none());
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = config(&[("LONGRUN_API_ADDR", "nowhere")]).expect_err("rejected");
        assert_eq!(err.name, "LONGRUN_API_ADDR");
        assert!(err.to_string().contains("nowhere"));
    }

    #[test]
    fn redis_settings_parse_and_name_their_variable() {
        let unset = config(&[]).expect("parses");
        assert_eq!(unset.redis.cluster, None);
        assert_eq!(unset.redis.queue_shards, None);
        assert!(!unset.redis.strict);
        let set = config(&[
            ("LONGRUN_REDIS_CLUSTER", "true"),
            ("LONGRUN_QUEUE_SHARDS", "32"),
            ("LONGRUN_STRICT", "1"),
        ])
        .expect("parses");
        assert_eq!(set.redis.cluster, Some(true));
        assert_eq!(set.redis.queue_shards, Some(32));
        assert!(set.redis.strict);
        for (name, bad) in [
            ("LONGRUN_REDIS_CLUSTER", "maybe"),
            ("LONGRUN_QUEUE_SHARDS", "0"),
            ("LONGRUN_QUEUE_SHARDS", "100000"),
            ("LONGRUN_STRICT", "sure"),
        ] {
            let err = config(&[(name, bad)]).expect_err(bad);
            assert_eq!(err.name, name);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn the_public_websocket_url_must_be_ws_or_wss() {
        let set =
            config(&[("LONGRUN_PUBLIC_WS_URL", " wss://example.com/v1/ws ")]).expect("parses");
        assert_eq!(
            set.public_ws_url.as_deref(),
            Some("wss://example.com/v1/ws")
        );
        assert!(config(&[]).expect("parses").public_ws_url.is_none());
        for bad in ["http://example.com/v1/ws", "ws://", "example.com"] {
            let err = config(&[("LONGRUN_PUBLIC_WS_URL", bad)]).expect_err(bad);
            assert_eq!(err.name, "LONGRUN_PUBLIC_WS_URL");
        }
    }

    #[test]
    fn validation_requires_redis_and_a_secret() {
        let missing = config(&[]).expect("parses");
        assert_eq!(missing.validate().expect_err("no redis").name, "REDIS_URL");
        let short =
            config(&[("REDIS_URL", "redis://x"), ("LONGRUN_JWT_SECRET", "short")]).expect("parses");
        assert_eq!(
            short.validate().expect_err("short").name,
            "LONGRUN_JWT_SECRET"
        );
    }
}
