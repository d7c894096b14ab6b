//! Startup self-checks of the Redis a service is about to use.
//!
//! Two settings lose operations silently: an evicting `maxmemory-policy`
//! (Redis drops keys — operations, logs, queue entries — under memory
//! pressure) and no persistence at all (a restart empties everything).
//! Every service runs [`Store::self_check`] at start: it warns loudly about
//! either (on every master of a cluster), and refuses to start with
//! `LONGRUN_STRICT=1`. It also refuses a `REDIS_URL` that names a cluster
//! node while cluster mode is off (most keys would answer `MOVED`), loads
//! the function library (refusing a Redis older than 7.0, which has no
//! functions; see [`super::scripts`]), and agrees on the deployment's
//! queue shard count (see [`super::queue`]).
//!
//! A Redis that cannot be reached yet does not stop a service from
//! starting (the api answers 503 meanwhile): the check then runs in the
//! background as soon as Redis answers — except with `LONGRUN_STRICT=1`,
//! where the service waits until it could check. The private Redis of
//! `longrun dev` runs without persistence on purpose; that is said in one
//! line, not warned about. Each finding is logged once per process, so
//! `longrun dev` (three services in one process) does not repeat itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use redis::Value;
use tracing::{info, warn};

use super::connection::{RedisConn, retry_delay};
use super::{Store, StoreError, StoreResult};
use crate::config::{Config, ConfigError};

/// How long the start-up check waits for Redis before it goes on in the background.
const FIRST_TRY: Duration = Duration::from_secs(3);

/// What the check found; empty `problems` means the settings are safe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    pub problems: Vec<String>,
    /// Settings that could not be read (e.g. a managed Redis forbids CONFIG).
    pub unknown: Vec<String>,
}

impl Durability {
    pub fn is_safe(&self) -> bool {
        self.problems.is_empty()
    }

    /// Only the eviction problems (what is left when no persistence is
    /// wanted, as for the private Redis of `longrun dev`).
    fn eviction_only(mut self) -> Durability {
        self.problems
            .retain(|problem| problem.contains("maxmemory-policy"));
        self
    }
}

/// Judges the settings `CONFIG GET` returned.
pub fn judge(settings: &HashMap<String, String>) -> Durability {
    let mut verdict = Durability::default();
    match settings.get("maxmemory-policy").map(String::as_str) {
        None => verdict.unknown.push("maxmemory-policy".into()),
        Some("noeviction") => {}
        Some(policy) => verdict.problems.push(format!(
            "maxmemory-policy is `{policy}`: under memory pressure Redis deletes keys, \
             losing operations; set it to `noeviction`"
        )),
    }
    let aof = settings.get("appendonly").map(String::as_str);
    let rdb = settings.get("save").map(String::as_str);
    match (aof, rdb) {
        (None, None) => verdict.unknown.push("appendonly/save".into()),
        (Some("yes"), _) => {}
        (_, Some(save)) if !save.trim().is_empty() => {}
        _ => verdict.problems.push(
            "persistence is off (appendonly no, save \"\"): a Redis restart loses every operation; \
             turn on the AOF (appendonly yes, appendfsync everysec)"
                .into(),
        ),
    }
    verdict
}

/// Everything the start-up check learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfCheck {
    pub durability: Durability,
    /// A misconfiguration that makes the service unusable, whatever `LONGRUN_STRICT` says.
    pub fatal: Option<ConfigError>,
    /// The queue shard count in use after agreeing with the deployment.
    pub queue_shards: u32,
}

impl Store {
    /// Reads the Redis settings that decide whether operations survive
    /// (on every master of a cluster; findings name the node).
    pub async fn check_durability(&self) -> StoreResult<Durability> {
        let mut verdict = Durability::default();
        for (node, settings) in self.durability_settings().await? {
            let found = judge(&settings);
            let named = |text: String| match &node {
                Some(node) => format!("node {node}: {text}"),
                None => text,
            };
            verdict
                .problems
                .extend(found.problems.into_iter().map(named));
            verdict.unknown.extend(found.unknown.into_iter().map(named));
        }
        Ok(verdict)
    }

    /// `CONFIG GET` of the three settings, per node (`None`: the one server).
    async fn durability_settings(
        &self,
    ) -> StoreResult<Vec<(Option<String>, HashMap<String, String>)>> {
        let mut nodes: HashMap<Option<String>, HashMap<String, String>> = HashMap::new();
        for name in ["maxmemory-policy", "appendonly", "save"] {
            let mut cmd = redis::cmd("CONFIG");
            cmd.arg("GET").arg(name);
            let replies: Vec<(Option<String>, redis::RedisResult<Value>)> = match &self.conn {
                RedisConn::Single(_) => {
                    vec![(None, cmd.query_async(&mut self.conn()).await)]
                }
                RedisConn::Cluster(cluster) => cluster
                    .on_every_master(cmd)
                    .await?
                    .into_iter()
                    .map(|(node, value)| (Some(node), Ok(value)))
                    .collect(),
            };
            for (node, reply) in replies {
                let settings = nodes.entry(node).or_default();
                match reply {
                    Ok(Value::ServerError(_)) => {}
                    Ok(value) => {
                        if let Ok(pairs) = redis::from_redis_value::<HashMap<String, String>>(value)
                        {
                            settings.extend(pairs);
                        }
                    }
                    // CONFIG may be disabled (managed Redis): unknown, not fatal.
                    Err(err)
                        if err.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        let mut nodes: Vec<_> = nodes.into_iter().collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(nodes)
    }

    /// A `REDIS_URL` naming a cluster node while cluster mode is off, or a
    /// server that is no cluster while it is on.
    async fn mode_mismatch(&self) -> StoreResult<Option<ConfigError>> {
        if self.is_cluster() {
            // The cluster connection refuses a server that is no cluster.
            return match self.ping().await {
                Err(StoreError::Redis(err))
                    if err.to_string().contains("cluster support disabled") =>
                {
                    Ok(Some(ConfigError {
                        name: "LONGRUN_REDIS_CLUSTER",
                        message: "REDIS_URL names a server that is not part of a Redis Cluster; \
                                  unset LONGRUN_REDIS_CLUSTER (and list one server)"
                            .into(),
                    }))
                }
                other => other.map(|()| None),
            };
        }
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut self.conn())
            .await?;
        Ok(info
            .lines()
            .any(|line| line.trim() == "cluster_enabled:1")
            .then(|| ConfigError {
                name: "LONGRUN_REDIS_CLUSTER",
                message:
                    "REDIS_URL names a node of a Redis Cluster; set LONGRUN_REDIS_CLUSTER=true \
                          (REDIS_URL may list several nodes, comma-separated)"
                        .into(),
            }))
    }

    /// Everything the start-up check looks at, in one go (needs Redis).
    pub async fn inspect(&self) -> StoreResult<SelfCheck> {
        if let Some(fatal) = self.mode_mismatch().await? {
            return Ok(SelfCheck {
                durability: Durability::default(),
                fatal: Some(fatal),
                queue_shards: self.queue_shards(),
            });
        }
        self.load_library().await?;
        let durability = self.check_durability().await?;
        let queue_shards = self.agree_on_queue_shards().await?;
        Ok(SelfCheck {
            durability,
            fatal: None,
            queue_shards,
        })
    }

    /// The start-up self-check of `service` (see the module docs). `Err`
    /// means the service must not start: a misconfigured `REDIS_URL`, or
    /// unsafe settings under `LONGRUN_STRICT=1`.
    pub async fn self_check(&self, config: &Config, service: &str) -> Result<(), ConfigError> {
        let strict = config.redis.strict;
        let first = tokio::time::timeout(FIRST_TRY, self.inspect()).await;
        let found = match first {
            Ok(Ok(found)) => found,
            Ok(Err(err)) if !err.is_transient() => {
                return Err(ConfigError {
                    name: "REDIS_URL",
                    message: format!("cannot use Redis: {err}"),
                });
            }
            _ if strict => {
                warn!(
                    service,
                    "waiting for Redis to check its settings before starting (LONGRUN_STRICT)"
                );
                self.inspect_until_it_answers().await
            }
            _ => {
                info!(
                    service,
                    "Redis does not answer yet; its settings will be checked once it does"
                );
                let store = self.clone();
                let config = config.clone();
                let service = service.to_owned();
                tokio::spawn(async move {
                    let found = store.inspect_until_it_answers().await;
                    if let Err(err) = report(&found, &config, &service) {
                        tracing::error!(service, "{err}");
                    }
                });
                return Ok(());
            }
        };
        report(&found, config, service)
    }

    async fn inspect_until_it_answers(&self) -> SelfCheck {
        let mut failures = 0;
        loop {
            match self.inspect().await {
                Ok(found) => return found,
                Err(err) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::debug!(error = %err, "self-check: Redis does not answer yet");
                    }
                    tokio::time::sleep(retry_delay(failures, Duration::from_secs(5))).await;
                }
            }
        }
    }
}

/// Logs what the check found (each finding once per process) and decides
/// whether the service may start.
fn report(found: &SelfCheck, config: &Config, service: &str) -> Result<(), ConfigError> {
    if let Some(fatal) = &found.fatal {
        return Err(fatal.clone());
    }
    if let Some(configured) = config.redis.queue_shards
        && configured != found.queue_shards
        && first_time(&format!("shards {}", found.queue_shards))
    {
        info!(
            service,
            configured,
            in_use = found.queue_shards,
            "LONGRUN_QUEUE_SHARDS: the deployment already uses more queue shards; using them all"
        );
    }
    let durability = if config.redis.private {
        if first_time("private redis") {
            info!(
                "dev mode: the private redis-server keeps nothing across restarts (persistence is off on purpose)"
            );
        }
        found.durability.clone().eviction_only()
    } else {
        found.durability.clone()
    };
    for unknown in &durability.unknown {
        if first_time(unknown) {
            warn!(
                "could not read the Redis setting {unknown} (CONFIG may be disabled); make sure it cannot lose operations"
            );
        }
    }
    if durability.is_safe() {
        return Ok(());
    }
    if config.redis.strict {
        return Err(ConfigError {
            name: "LONGRUN_STRICT",
            message: format!(
                "refusing to start: Redis may lose operations: {}",
                durability.problems.join("; ")
            ),
        });
    }
    for problem in &durability.problems {
        if first_time(problem) {
            warn!(
                "REDIS MAY LOSE OPERATIONS: {problem} (set LONGRUN_STRICT=1 to refuse to start instead)"
            );
        }
    }
    Ok(())
}

/// True the first time this process sees `finding`.
fn first_time(finding: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(finding.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn config(strict: bool, private: bool) -> Config {
        let mut config = Config::from_lookup(|_| None).expect("defaults parse");
        config.redis.strict = strict;
        config.redis.private = private;
        config
    }

    fn found(problems: &[&str]) -> SelfCheck {
        SelfCheck {
            durability: Durability {
                problems: problems.iter().map(|p| (*p).to_owned()).collect(),
                unknown: Vec::new(),
            },
            fatal: None,
            queue_shards: 1,
        }
    }

    #[test]
    fn production_settings_are_safe() {
        let verdict = judge(&settings(&[
            ("maxmemory-policy", "noeviction"),
            ("appendonly", "yes"),
            ("save", ""),
        ]));
        assert!(verdict.is_safe(), "{verdict:?}");
        assert!(verdict.unknown.is_empty());
    }

    #[test]
    fn eviction_and_no_persistence_are_problems() {
        let verdict = judge(&settings(&[
            ("maxmemory-policy", "allkeys-lru"),
            ("appendonly", "no"),
            ("save", ""),
        ]));
        assert_eq!(verdict.problems.len(), 2, "{verdict:?}");
        assert!(verdict.problems[0].contains("allkeys-lru"));
    }

    #[test]
    fn rdb_snapshots_count_as_persistence() {
        let verdict = judge(&settings(&[
            ("maxmemory-policy", "noeviction"),
            ("appendonly", "no"),
            ("save", "3600 1 300 100"),
        ]));
        assert!(verdict.is_safe(), "{verdict:?}");
    }

    #[test]
    fn unreadable_settings_are_unknown_not_problems() {
        let verdict = judge(&HashMap::new());
        assert!(verdict.is_safe());
        assert_eq!(verdict.unknown.len(), 2);
    }

    #[test]
    fn strict_refuses_unsafe_settings_and_names_them() {
        let unsafe_redis = found(&["persistence is off"]);
        assert!(report(&unsafe_redis, &config(false, false), "api").is_ok());
        let err = report(&unsafe_redis, &config(true, false), "api").expect_err("refused");
        assert_eq!(err.name, "LONGRUN_STRICT");
        assert!(err.message.contains("persistence is off"), "{err}");
        assert!(report(&found(&[]), &config(true, false), "api").is_ok());
    }

    #[test]
    fn the_private_dev_redis_may_lack_persistence_but_not_evict() {
        let no_persistence = found(&["persistence is off (appendonly no, save \"\")"]);
        assert!(report(&no_persistence, &config(true, true), "dev").is_ok());
        let evicting = found(&["maxmemory-policy is `allkeys-lru`"]);
        assert!(report(&evicting, &config(true, true), "dev").is_err());
    }

    #[test]
    fn a_misconfigured_url_is_refused_even_without_strict() {
        let mut wrong = found(&[]);
        wrong.fatal = Some(ConfigError {
            name: "LONGRUN_REDIS_CLUSTER",
            message: "a cluster node".into(),
        });
        let err = report(&wrong, &config(false, false), "worker").expect_err("refused");
        assert_eq!(err.name, "LONGRUN_REDIS_CLUSTER");
    }
}
