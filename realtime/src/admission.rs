//! Connection limits: how many connections each owner may hold on this
//! gateway process, and how many may wait for their `auth` frame.
//!
//! Connections that have not authenticated yet count as one anonymous
//! owner with the same limit (`LONGRUN_WS_MAX_CONNECTIONS_PER_OWNER`), so
//! unauthenticated sockets cannot exhaust the process; an `auth` frame
//! moves the connection from that pool to its owner's. Limits are per
//! process: gateways behind a load balancer do not coordinate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug)]
pub struct Admission {
    limit: usize,
    /// Connections per owner; `None` is the not-yet-authenticated pool.
    counts: Mutex<HashMap<Option<String>, usize>>,
}

/// One connection counted against a pool, released when dropped.
#[derive(Debug)]
pub struct Slot {
    pool: Option<String>,
    admission: Arc<Admission>,
}

impl Admission {
    pub fn new(limit_per_owner: usize) -> Arc<Admission> {
        Arc::new(Admission {
            limit: limit_per_owner.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `owner`; `None` when it already holds the limit.
    pub fn owner(self: &Arc<Self>, owner: &str) -> Option<Slot> {
        self.claim(Some(owner.to_owned()))
    }

    /// A slot for a connection that will authenticate with a frame.
    pub fn anonymous(self: &Arc<Self>) -> Option<Slot> {
        self.claim(None)
    }

    fn claim(self: &Arc<Self>, pool: Option<String>) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(pool.clone()).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            pool,
            admission: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.pool) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.pool);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_owner_and_the_anonymous_pool_have_their_own_limit() {
        let admission = Admission::new(2);
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
}
