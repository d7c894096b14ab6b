//! `calc.primes`: counts the primes in `[from, limit)` with a segmented
//! sieve of Eratosthenes — real CPU work with partial results.
//!
//! The sieve runs on tokio's blocking thread pool (`spawn_blocking`), at
//! most one per core in a process, so it never stalls the async runtime
//! that renews leases and reads the queue. Between segments it reports
//! the partial count in its progress data and checks for cancellation, so
//! a cancel stops it within one segment (a few milliseconds).
//!
//! With `segments` above 1 the range is split into that many child jobs,
//! which any worker of the cluster may run; each child's result carries
//! `totals.primes`, which the parent's progress data sums while they run,
//! and the parent's continuation reports the total.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use longrun_shared::kinds::{self, KindSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::context::JobContext;
use crate::handler::{Handler, JobError, Outcome};
use crate::kinds::parse_input;

/// Numbers sieved per segment (and per cancellation check).
const SEGMENT: u64 = 1 << 18;

/// CPU-bound sieves running at once in this process: one per core.
static CPU: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimesInput {
    pub limit: u64,
    #[serde(default = "two")]
    pub from: u64,
    #[serde(default = "one")]
    pub segments: u64,
}

fn two() -> u64 {
    2
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Copy)]
pub struct CalcPrimes;

#[async_trait]
impl Handler for CalcPrimes {
    fn spec(&self) -> KindSpec {
        kinds::builtin_spec(kinds::CALC_PRIMES).expect("calc.primes is built in")
    }

    async fn run(&self, ctx: JobContext, input: Value) -> Result<Outcome, JobError> {
        let input: PrimesInput = parse_input(input)?;
        let from = input.from.max(2);
        if input.segments > 1 && input.limit > from {
            let ranges = split(from, input.limit, input.segments);
            let inputs = ranges
                .iter()
                .map(|(lo, hi)| json!({"from": lo, "limit": hi, "segments": 1}))
                .collect();
            ctx.spawn_children(kinds::CALC_PRIMES, inputs).await?;
            return Ok(Outcome::WaitForChildren {
                resume: true,
                state: json!({"segments": ranges.len()}),
            });
        }
        let count = sieve_on_cpu_pool(&ctx, from, input.limit).await?;
        Ok(Outcome::Done(json!({
            "from": from,
            "limit": input.limit,
            "primes": count.primes,
            "largest": count.largest,
            "totals": {"primes": count.primes},
        })))
    }

    async fn resume(
        &self,
        ctx: JobContext,
        input: Value,
        state: Value,
    ) -> Result<Outcome, JobError> {
        let input: PrimesInput = parse_input(input)?;
        let totals = ctx.child_totals().await?;
        let primes = totals["primes"].as_u64().unwrap_or(0);
        Ok(Outcome::Done(json!({
            "from": input.from.max(2),
            "limit": input.limit,
            "primes": primes,
            "segments": state["segments"],
            "totals": {"primes": primes},
        })))
    }
}

/// Splits `[from, limit)` into at most `parts` ranges of nearly equal size.
fn split(from: u64, limit: u64, parts: u64) -> Vec<(u64, u64)> {
    let span = limit - from;
    let parts = parts.min(span).max(1);
    (0..parts)
        .map(|i| (from + span * i / parts, from + span * (i + 1) / parts))
        .filter(|(lo, hi)| lo < hi)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Count {
    pub primes: u64,
    pub largest: Option<u64>,
}

/// Runs the sieve on the blocking pool, one per core; stops at a cancel.
async fn sieve_on_cpu_pool(ctx: &JobContext, from: u64, limit: u64) -> Result<Count, JobError> {
    let permit = tokio::select! {
        permit = CPU.clone().acquire_owned() => permit.map_err(|_| JobError::retryable("shutdown", "the worker is stopping"))?,
        _ = ctx.cancelled() => return Err(stopped()),
    };
    let ctx = ctx.clone();
    crate::kinds::blocking("the sieve", move || {
        let _permit = permit;
        count_primes(
            from,
            limit,
            || ctx.is_cancelled(),
            |done, partial| {
                let span = limit.saturating_sub(from).max(1);
                ctx.progress(
                    done.saturating_sub(from) as f64 * 100.0 / span as f64,
                    format!("sieved up to {done}"),
                    json!({"primes_so_far": partial.primes, "checked_below": done}),
                );
            },
        )
        .ok_or_else(stopped)
    })
    .await
}

fn stopped() -> JobError {
    JobError::permanent("cancelled", "stopped on request")
}

/// Counts the primes in `[from, limit)`, segment by segment. `stop` is
/// asked between segments (`None` when it said yes); `report` gets the
/// number sieved up to and the partial count after each one.
pub fn count_primes(
    from: u64,
    limit: u64,
    stop: impl Fn() -> bool,
    mut report: impl FnMut(u64, Count),
) -> Option<Count> {
    let from = from.max(2);
    let mut count = Count::default();
    if limit <= from {
        return Some(count);
    }
    let base = small_primes(isqrt(limit - 1));
    let mut low = from;
    let mut composite = vec![false; SEGMENT as usize];
    while low < limit {
        if stop() {
            return None;
        }
        let high = (low + SEGMENT).min(limit);
        let width = (high - low) as usize;
        composite[..width].fill(false);
        for &p in &base {
            if p * p >= high {
                break;
            }
            let first = (p * p).max(low.div_ceil(p) * p);
            let mut multiple = first;
            while multiple < high {
                composite[(multiple - low) as usize] = true;
                multiple += p;
            }
        }
        for (offset, &is_composite) in composite[..width].iter().enumerate() {
            if !is_composite {
                count.primes += 1;
                count.largest = Some(low + offset as u64);
            }
        }
        low = high;
        report(low, count);
    }
    Some(count)
}

/// The primes up to and including `n`, by a plain sieve.
fn small_primes(n: u64) -> Vec<u64> {
    let n = n as usize;
    let mut composite = vec![false; n + 1];
    let mut primes = Vec::new();
    for i in 2..=n {
        if !composite[i] {
            primes.push(i as u64);
            let mut j = i * i;
            while j <= n {
                composite[j] = true;
                j += i;
            }
        }
    }
    primes
}

fn isqrt(n: u64) -> u64 {
    let mut root = (n as f64).sqrt() as u64;
    while root * root > n {
        root -= 1;
    }
    while (root + 1) * (root + 1) <= n {
        root += 1;
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(from: u64, limit: u64) -> Count {
        count_primes(from, limit, || false, |_, _| {}).expect("not stopped")
    }

    #[test]
    fn counts_known_prime_counts() {
        assert_eq!(count(2, 10).primes, 4);
        assert_eq!(count(2, 100).primes, 25);
        assert_eq!(count(2, 1_000_000).primes, 78_498);
        assert_eq!(count(2, 1_000_000).largest, Some(999_983));
        assert_eq!(count(0, 3).primes, 1);
        assert_eq!(count(2, 2).primes, 0);
    }

    #[test]
    fn ranges_add_up_to_the_whole() {
        let parts = split(2, 1_000_003, 7);
        assert_eq!(parts.first().map(|p| p.0), Some(2));
        assert_eq!(parts.last().map(|p| p.1), Some(1_000_003));
        assert!(parts.windows(2).all(|w| w[0].1 == w[1].0));
        let total: u64 = parts.iter().map(|(lo, hi)| count(*lo, *hi).primes).sum();
        assert_eq!(total, count(2, 1_000_003).primes);
        assert_eq!(split(2, 4, 10).len(), 2);
    }

    #[test]
    fn a_stop_request_ends_it_between_segments() {
        let asked = std::cell::Cell::new(0);
        let result = count_primes(
            2,
            10 * SEGMENT,
            || {
                asked.set(asked.get() + 1);
                asked.get() > 2
            },
            |_, _| {},
        );
        assert_eq!(result, None);
        assert_eq!(asked.get(), 3);
    }
}
