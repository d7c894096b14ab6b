//! Redis key and channel names, in one place.
//!
//! Every key of one operation tree carries the root operation's id as its
//! hash tag (`{root}`), so all of a tree lives in one Redis Cluster slot and
//! each transition — a child finishing and its parent's counters, a cascade
//! cancel, a tree delete — is one Lua script on one slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{root}:op:ID` | hash | the operation (status, seq, attempt, progress, counts, JSON input/result/error) |
//! | `P:{root}:log:ID` | list | the event log: each event's WebSocket frame, entry i holding seq i + 1 |
//! | `P:{root}:ev:ID` | stream | the event log as versions before the list kept it (entry id `SEQ-0`); read while such logs remain |
//! | `P:{root}:kids:ID` | list | the children's ids, in creation order |
//! | `P:{root}:ch:ID` | channel | live event frames of the operation |
//! | `P:{ID}:root` | string | the root of a child (children only) |
//! | `P:owner:OWNER` | channel | live event frames of every operation of an owner |
//! | `P:{idx}:owner:OWNER` | sorted set | the owner's root operations, by id (UUIDv7 = time order) |
//! | `P:{idx}:all` | sorted set | every root operation, for admins |
//! | `P:{OWNER}:idem:KEY` | string | `ID FINGERPRINT`: the operation an `Idempotency-Key` started and the SHA-256 of that request (kind, input, options) |
//! | `P:{qN}:ready` | stream | queue shard N (0, 1, …): entries read by the consumer group `workers` |
//! | `P:{qN}:delayed` | sorted set | retries waiting for their backoff, by due time |
//! | `P:{qN}:deadlines` | sorted set | root operations with an overall deadline (`id\|root`), by deadline |
//! | `P:{qN}:expiring` | sorted set | finished roots (`ID` + `OWNER`), by the time their list-index entries go |
//! | `P:queue:shards` | string | how many queue shards the deployment uses (it only grows) |
//! | `P:cancel` | channel | ids of running operations that were cancelled |
//!
//! An operation's queue entries, retries, deadline and index expiry live in
//! shard `hash(id) mod shards` (see `store::queue`): every key of one shard
//! shares the hash tag `{qN}`, so the scheduler's tick is one script per
//! shard, and on a Redis Cluster the shards spread over the nodes.
//!
//! `P` is the configured prefix (`LONGRUN_REDIS_PREFIX`, default `lr`).

/// The consumer group every worker process joins on each ready stream.
pub const WORKER_GROUP: &str = "workers";

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn op(&self, root: &str, id: &str) -> String {
        format!("{}:{{{root}}}:op:{id}", self.prefix)
    }

    /// The event log (a list of frames).
    pub fn log(&self, root: &str, id: &str) -> String {
        format!("{}:{{{root}}}:log:{id}", self.prefix)
    }

    /// The event log as a stream, as versions before the list kept it.
    pub fn legacy_log(&self, root: &str, id: &str) -> String {
        format!("{}:{{{root}}}:ev:{id}", self.prefix)
    }

    pub fn kids(&self, root: &str, id: &str) -> String {
        format!("{}:{{{root}}}:kids:{id}", self.prefix)
    }

    pub fn op_channel(&self, root: &str, id: &str) -> String {
        format!("{}:{{{root}}}:ch:{id}", self.prefix)
    }

    pub fn root_of(&self, id: &str) -> String {
        format!("{}:{{{id}}}:root", self.prefix)
    }

    pub fn owner_channel(&self, owner: &str) -> String {
        format!("{}:owner:{owner}", self.prefix)
    }

    pub fn owner_index(&self, owner: &str) -> String {
        format!("{}:{{idx}}:owner:{owner}", self.prefix)
    }

    pub fn all_index(&self) -> String {
        format!("{}:{{idx}}:all", self.prefix)
    }

    pub fn idempotency(&self, owner: &str, key: &str) -> String {
        format!("{}:{{{owner}}}:idem:{key}", self.prefix)
    }

    pub fn ready(&self, shard: u32) -> String {
        format!("{}:{{q{shard}}}:ready", self.prefix)
    }

    pub fn delayed(&self, shard: u32) -> String {
        format!("{}:{{q{shard}}}:delayed", self.prefix)
    }

    /// Operations with an overall deadline, scored by it (ms since the epoch).
    pub fn deadlines(&self, shard: u32) -> String {
        format!("{}:{{q{shard}}}:deadlines", self.prefix)
    }

    /// Finished root operations whose list-index entries must go once they
    /// expire, scored by that time (ms since the epoch).
    pub fn expiring(&self, shard: u32) -> String {
        format!("{}:{{q{shard}}}:expiring", self.prefix)
    }

    /// The deployment's queue shard count.
    pub fn queue_shards(&self) -> String {
        format!("{}:queue:shards", self.prefix)
    }

    pub fn cancel_channel(&self) -> String {
        format!("{}:cancel", self.prefix)
    }

    /// Where workers advertise the kinds they run (hash: kind → spec JSON).
    pub fn kinds(&self) -> String {
        format!("{}:kinds", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').expect("key has a hash tag");
        let close = key[open..].find('}').expect("tag is closed") + open;
        &key[open + 1..close]
    }

    #[test]
    fn keys_of_one_tree_share_the_root_hash_tag() {
        let keys = Keys::new("lr");
        let tags = [
            keys.op("root", "child"),
            keys.log("root", "child"),
            keys.legacy_log("root", "child"),
            keys.kids("root", "child"),
            keys.op_channel("root", "child"),
        ];
        for key in &tags {
            assert_eq!(hash_tag(key), "root", "{key}");
        }
        assert_eq!(keys.op("r", "c"), "lr:{r}:op:c");
    }

    #[test]
    fn queue_keys_of_one_shard_share_a_slot() {
        let keys = Keys::new("lr");
        assert_eq!(hash_tag(&keys.ready(3)), hash_tag(&keys.delayed(3)));
        assert_eq!(hash_tag(&keys.ready(3)), hash_tag(&keys.deadlines(3)));
        assert_eq!(hash_tag(&keys.ready(3)), hash_tag(&keys.expiring(3)));
        assert_eq!(
            keys.ready(0),
            "lr:{q0}:ready",
            "shard 0 keeps the single-shard names"
        );
    }

    #[test]
    fn queue_shards_spread_over_the_slots_of_a_cluster() {
        use redis::cluster_routing::Slot;
        let keys = Keys::new("lr");
        let slots: std::collections::HashSet<Slot> = (0..16)
            .map(|shard| Slot::for_key(keys.ready(shard)))
            .collect();
        assert_eq!(slots.len(), 16, "every shard in a slot of its own");
    }
}
