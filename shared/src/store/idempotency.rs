//! `Idempotency-Key`s: the operation an owner's key started, with a
//! fingerprint of the request that started it, so a repeat can be told
//! apart from a different request that reuses the key.
//!
//! The key lives in its owner's slot (`P:{OWNER}:idem:KEY`), outside the
//! operation's tree, so it is reserved before the operation is created (a
//! `SET NX`: of concurrent identical requests exactly one wins) and given
//! the operation's retention when the operation finishes or is deleted.

use super::{Store, StoreResult};

/// How long a reserved key lives at most while its operation has not
/// finished (the finishing transition shortens it to the retention).
const RUNNING_BACKSTOP_MS: u64 = 30 * 86_400_000;

/// What reserving a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key is now this request's.
    Reserved,
    /// An earlier request holds the key: the operation it started (or is
    /// starting) and that request's fingerprint (`None` for keys stored
    /// without one).
    Taken {
        id: String,
        fingerprint: Option<String>,
    },
}

impl Store {
    /// Reserves `key` of `owner` for the operation `id` about to be created
    /// by a request with `fingerprint` (a string without spaces). One round trip.
    pub async fn reserve_idempotency(
        &self,
        owner: &str,
        key: &str,
        id: &str,
        fingerprint: &str,
    ) -> StoreResult<Reservation> {
        let name = self.keys().idempotency(owner, key);
        let ttl_ms = self
            .retention_ms()
            .saturating_mul(2)
            .saturating_add(RUNNING_BACKSTOP_MS);
        loop {
            let (set, stored): (Option<String>, Option<String>) = redis::pipe()
                .cmd("SET")
                .arg(&name)
                .arg(format!("{id} {fingerprint}"))
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .cmd("GET")
                .arg(&name)
                .query_async(&mut self.conn())
                .await?;
            if set.is_some() {
                return Ok(Reservation::Reserved);
            }
            // `None`: it expired between the two commands; try again.
            if let Some(stored) = stored {
                return Ok(match stored.split_once(' ') {
                    Some((id, fingerprint)) => Reservation::Taken {
                        id: id.to_owned(),
                        fingerprint: Some(fingerprint.to_owned()),
                    },
                    None => Reservation::Taken {
                        id: stored,
                        fingerprint: None,
                    },
                });
            }
        }
    }

    /// The remaining lifetime of an owner's key in ms (`None` when it does
    /// not exist or never expires).
    pub async fn idempotency_ttl_ms(&self, owner: &str, key: &str) -> StoreResult<Option<u64>> {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(self.keys().idempotency(owner, key))
            .query_async(&mut self.conn())
            .await?;
        Ok(u64::try_from(ttl).ok())
    }
}
