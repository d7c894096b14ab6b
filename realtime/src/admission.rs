//! Per-owner limits: how many connections each owner may hold on this
//! gateway process, how many may wait for their `auth` frame, and how many
//! subscriptions each owner may hold over all its connections.
//!
//! Connections that have not authenticated yet count as one anonymous
//! owner with the same limit (`LONGRUN_WS_MAX_CONNECTIONS_PER_OWNER`), so
//! unauthenticated sockets cannot exhaust the process; an `auth` frame
//! moves the connection from that pool to its owner's. Subscriptions count
//! against `LONGRUN_WS_MAX_SUBSCRIPTIONS_PER_OWNER` for as long as they
//! follow something. Limits are per process: gateways behind a load
//! balancer do not coordinate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct Admission {
    connections: Counter,
    subscriptions: Counter,
}

/// Holdings per pool, under one limit.
#[derive(Debug)]
struct Counter {
    limit: usize,
    /// Per owner; `None` is the not-yet-authenticated pool.
    counts: Mutex<HashMap<Option<String>, usize>>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Connection,
    Subscription,
}

/// One connection or subscription counted against a pool, released when dropped.
#[derive(Debug)]
pub struct Slot {
    pool: Option<String>,
    kind: Kind,
    admission: Arc<Admission>,
}

impl Counter {
    fn new(limit: usize) -> Counter {
        Counter {
            limit: limit.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more in `pool`; `false` at the limit (unless `forced`).
    fn claim(&self, pool: &Option<String>, forced: bool) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(pool.clone()).or_insert(0);
        if *count >= self.limit && !forced {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, pool: &Option<String>) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(pool) {
            *count -= 1;
            if *count == 0 {
                counts.remove(pool);
            }
        }
    }
}

impl Admission {
    pub fn new(connections_per_owner: usize, subscriptions_per_owner: usize) -> Arc<Admission> {
        Arc::new(Admission {
            connections: Counter::new(connections_per_owner),
            subscriptions: Counter::new(subscriptions_per_owner),
        })
    }

    /// A connection slot for `owner`; `None` when it already holds the limit.
    pub fn owner(self: &Arc<Self>, owner: &str) -> Option<Slot> {
        self.claim(Kind::Connection, Some(owner.to_owned()), false)
    }

    /// A connection slot for a connection that will authenticate with a frame.
    pub fn anonymous(self: &Arc<Self>) -> Option<Slot> {
        self.claim(Kind::Connection, None, false)
    }

    /// A subscription slot for `owner`; `None` when it already holds the
    /// limit. One that `replaces` a subscription (whose slot is released
    /// as its task ends) is always granted: the count does not grow.
    pub fn subscription(self: &Arc<Self>, owner: &str, replaces: bool) -> Option<Slot> {
        self.claim(Kind::Subscription, Some(owner.to_owned()), replaces)
    }

    fn counter(&self, kind: Kind) -> &Counter {
        match kind {
            Kind::Connection => &self.connections,
            Kind::Subscription => &self.subscriptions,
        }
    }

    fn claim(self: &Arc<Self>, kind: Kind, pool: Option<String>, forced: bool) -> Option<Slot> {
        self.counter(kind).claim(&pool, forced).then(|| Slot {
            pool,
            kind,
            admission: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.counter(self.kind).release(&self.pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_and_the_anonymous_pool_have_their_own_limit() {
        let admission = Admission::new(2, 10);
        let a1 = admission.owner("a").expect("first");
        let _a2 = admission.owner("a").expect("second");
        assert!(admission.owner("a").is_none(), "third is over the limit");
        assert!(
            admission.owner("b").is_some(),
            "another owner is not affected"
        );
        let _n1 = admission.anonymous().expect("anonymous");
        let _n2 = admission.anonymous().expect("anonymous");
        assert!(admission.anonymous().is_none());
        drop(a1);
        assert!(
            admission.owner("a").is_some(),
            "a released slot is free again"
        );
    }

    #[test]
    fn subscriptions_have_their_own_limit_and_a_replacement_always_fits() {
        let admission = Admission::new(1, 2);
        let _connection = admission.owner("a").expect("a connection");
        let s1 = admission.subscription("a", false).expect("first");
        let _s2 = admission.subscription("a", false).expect("second");
        assert!(
            admission.subscription("a", false).is_none(),
            "over the limit"
        );
        assert!(admission.subscription("b", false).is_some(), "per owner");
        let replacement = admission.subscription("a", true).expect("replaces one");
        drop(s1);
        drop(replacement);
        assert!(admission.subscription("a", false).is_some(), "released");
    }
}
