//! The built-in operation kinds.
//!
//! - [`demo_sleep`]: sleeps in steps with progress; can fail on purpose.
//! - [`demo_fanout`]: a parent of many `demo.sleep` children (or of
//!   fan-outs, for deeper trees).
//! - [`data_import`]: validates a CSV in batches run as child jobs.
//! - [`calc_primes`]: counts primes with a sieve on the blocking pool.

pub mod calc_primes;
pub mod data_import;
pub mod demo_fanout;
pub mod demo_sleep;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::handler::{JobError, Registry};

/// Registers every built-in kind.
pub fn register_builtin(registry: &mut Registry) {
    registry.register(demo_sleep::DemoSleep);
    registry.register(demo_fanout::DemoFanout);
    registry.register(data_import::DataImport);
    registry.register(data_import::batch::DataImportBatch);
    registry.register(calc_primes::CalcPrimes);
}

/// Runs `work` on tokio's blocking pool; a panic in it becomes a
/// retryable `panic` error naming `what`.
pub async fn blocking<T, F>(what: &str, work: F) -> Result<T, JobError>
where
    F: FnOnce() -> Result<T, JobError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| JobError::retryable("panic", format!("{what} panicked")))?
}

/// Reads a handler's input into its typed form. The api validated it
/// against the schema already, so a failure here is permanent.
pub fn parse_input<T: DeserializeOwned>(input: Value) -> Result<T, JobError> {
    serde_json::from_value(input)
        .map_err(|err| JobError::permanent("invalid_input", format!("input does not fit: {err}")))
}
