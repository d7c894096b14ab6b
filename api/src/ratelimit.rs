//! Per-owner rate limit on starting operations (GCRA, in process).
//!
//! `LONGRUN_RATE_LIMIT_PER_S` starts per second per owner with bursts of
//! `LONGRUN_RATE_LIMIT_BURST`; 0 turns the limit off. Each api process
//! enforces it on the requests it serves, so N api processes behind a
//! balancer allow up to N times the rate.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use longrun_shared::Config;

pub struct OwnerLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl OwnerLimiter {
    /// `None` when the configuration turns the limit off.
    pub fn from_config(config: &Config) -> Option<Self> {
        if config.rate_limit_per_s.is_nan() || config.rate_limit_per_s <= 0.0 {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / config.rate_limit_per_s);
        let burst = NonZeroU32::new(config.rate_limit_burst.max(1))?;
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(OwnerLimiter {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        })
    }

    /// `Err(seconds to wait)` when `owner` is over its rate.
    pub fn check(&self, owner: &str) -> Result<(), u64> {
        match self.limiter.check_key(&owner.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.as_secs_f64().ceil() as u64)
            }
        }
    }

    /// Forgets owners that are back within their rate (bounded memory).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_limited_separately() {
        let mut config = Config::from_lookup(|_| None).expect("defaults");
        config.rate_limit_per_s = 1.0;
        config.rate_limit_burst = 2;
        let limiter = OwnerLimiter::from_config(&config).expect("enabled");
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_ok());
        let wait = limiter.check("a").expect_err("over the burst");
        assert!(wait >= 1);
        assert!(limiter.check("b").is_ok());
    }

    #[test]
    fn zero_turns_it_off() {
        let config = Config::from_lookup(|_| None).expect("defaults");
        assert!(OwnerLimiter::from_config(&config).is_none());
    }
}
