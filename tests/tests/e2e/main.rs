//! End-to-end tests: every test runs against a real redis-server and real
//! services (in-process on port 0, or the real binary where a process must
//! be killed or signalled). One test binary, one module per area.

mod api_auth;
mod api_errors;
mod api_idempotency;
mod api_observe;
mod api_redis;
mod api_routes;
mod cli;
mod cli_client;
mod cli_live;
mod cluster;
mod dashboard;
mod event_log;
mod faults;
mod foundation;
mod hostile;
mod realtime_auth;
mod realtime_delivery;
mod realtime_metrics;
mod realtime_resilience;
mod transition_batches;
mod worker;
mod worker_processes;

/// The `longrun` program under test, built by cargo before this binary.
pub const LONGRUN: &str = env!("CARGO_BIN_EXE_longrun-e2e");
