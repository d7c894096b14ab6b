//! Startup self-checks of the Redis a service is about to use.
//!
//! Two settings lose operations silently: an evicting `maxmemory-policy`
//! (Redis drops keys — operations, logs, queue entries — under memory
//! pressure) and no persistence at all (a restart empties everything). The
//! services warn loudly about either, and refuse to start with `--strict`
//! (`LONGRUN_STRICT=1`).

use std::collections::HashMap;

use super::{Store, StoreResult};

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

impl Store {
    /// Reads the Redis settings that decide whether operations survive.
    pub async fn check_durability(&self) -> StoreResult<Durability> {
        let mut settings = HashMap::new();
        for name in ["maxmemory-policy", "appendonly", "save"] {
            let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut self.conn())
                .await;
            match reply {
                Ok(pair) => {
                    if let [key, value] = pair.as_slice() {
                        settings.insert(key.clone(), value.clone());
                    }
                }
                // CONFIG may be disabled (managed Redis): unknown, not fatal.
                Err(err)
                    if err.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(judge(&settings))
    }
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
}
