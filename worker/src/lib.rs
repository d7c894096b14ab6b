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

mod completer;
pub mod context;
pub mod engine;
pub mod handler;
pub mod kinds;
mod loops;

pub use longrun_shared::service::ServiceError;
use std::future::Future;

use longrun_shared::{Config, Store};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use context::JobContext;
pub use engine::Engine;
pub use handler::{Handler, JobError, Outcome, Registry};

/// Runs a worker until `shutdown` resolves, then stops claiming, lets
/// running jobs finish within the shutdown grace period and hands the rest
/// back to the queue without consuming their attempt.
pub async fn run(
    config: Config,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let store = Store::from_config(&config)?;
    store.self_check(&config, "worker").await?;
    let engine = Engine::new(store, registry, config.worker.clone());
    info!(
        worker = engine.consumer(),
        concurrency = config.worker.concurrency,
        "worker starting"
    );
    tokio::pin!(shutdown);
    tokio::select! {
        _ = loops::prepare(&engine) => {}
        _ = &mut shutdown => {
            info!("worker stopped before it could reach redis");
            return Ok(());
        }
    }
    let background = CancellationToken::new();
    let claiming = vec![
        tokio::spawn(loops::intake(engine.clone())),
        tokio::spawn(loops::scheduler(engine.clone())),
    ];
    let supporting = vec![
        tokio::spawn(loops::heartbeat(engine.clone(), background.clone())),
        tokio::spawn(loops::cancel_listener(engine.clone(), background.clone())),
        tokio::spawn(loops::housekeeper(engine.clone(), background.clone())),
    ];
    shutdown.await;
    info!(
        jobs = engine.in_flight(),
        "worker stopping: no new work is claimed"
    );
    let deadline = tokio::time::Instant::now() + config.worker.shutdown_grace;
    engine.stop_claiming();
    engine.drain(deadline).await;
    for task in claiming {
        let _ = task.await;
    }
    // Anything a last claim started meanwhile is handed back too.
    engine.drain(deadline).await;
    // Heartbeats and cancel signals went on while jobs drained; the
    // housekeeper flushes the last acknowledgements as it stops.
    background.cancel();
    for task in supporting {
        let _ = task.await;
    }
    info!("worker stopped");
    Ok(())
}
