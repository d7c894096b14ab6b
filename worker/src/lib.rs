//! The longrun worker: runs operations from the Redis queue.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = longrun_shared::Config::from_env()?;
//! let registry = longrun_worker::Registry::builtin();
//! longrun_worker::run(config, registry, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Many worker processes on many machines share one Redis; see
//! [`engine`] for the tasks each one runs, [`handler`] for the trait a kind
//! implements and [`kinds`] for the built-in kinds.

pub mod context;
pub mod engine;
pub mod handler;
pub mod kinds;
mod loops;

use std::future::Future;

use longrun_shared::{Config, Store};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use context::JobContext;
pub use engine::Engine;
pub use handler::{Handler, JobError, Outcome, Registry};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] longrun_shared::config::ConfigError),
    #[error(transparent)]
    Store(#[from] longrun_shared::store::StoreError),
}

/// Runs a worker until `shutdown` resolves, then stops claiming, lets
/// running jobs finish within the shutdown grace period and hands the rest
/// back to the queue without consuming their attempt.
pub async fn run(
    config: Config,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let store = Store::connect(
        config.require_redis_url()?,
        &config.redis_prefix,
        config.retention,
    )?;
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let engine = Engine::new(store, registry, config.worker.clone(), ack_tx);
    info!(
        worker = engine.consumer(),
        concurrency = config.worker.concurrency,
        "worker starting"
    );
    loops::prepare(&engine).await;
    let stop = CancellationToken::new();
    let background = CancellationToken::new();
    let tasks = vec![
        tokio::spawn(loops::intake(engine.clone(), stop.clone())),
        tokio::spawn(loops::reaper(engine.clone(), stop.clone())),
        tokio::spawn(loops::scheduler(engine.clone(), stop.clone())),
        tokio::spawn(loops::heartbeat(engine.clone(), background.clone())),
        tokio::spawn(loops::cancel_listener(engine.clone(), background.clone())),
    ];
    let acker = tokio::spawn(loops::acker(engine.store().clone(), ack_rx));
    shutdown.await;
    info!(
        jobs = engine.in_flight(),
        "worker stopping: no new work is claimed"
    );
    stop.cancel();
    engine.drain(config.worker.shutdown_grace).await;
    background.cancel();
    for task in tasks {
        let _ = task.await;
    }
    // The acker ends once every sender (the engine's) is gone.
    drop(engine);
    let _ = acker.await;
    info!("worker stopped");
    Ok(())
}
