//! The longrun HTTP API.
//!
//! [`app`] builds the axum [`Router`] over an [`AppState`]; [`run`] serves it
//! on a listener until the shutdown future resolves:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = longrun_shared::Config::from_env()?;
//! let listener = tokio::net::TcpListener::bind(config.api_addr).await?;
//! longrun_api::run(config, listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Modules: [`routes`] (the handlers, one module per concern), [`extract`]
//! (auth, query and body extractors that answer with problems), [`error`]
//! (problem responses), [`catalog`] (kinds and their validators),
//! [`idempotency`] (request fingerprints), [`openapi`], [`observe`]
//! (request ids, metrics, tracing) and [`ratelimit`].

pub mod catalog;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod observe;
pub mod openapi;
pub mod ratelimit;
pub mod routes;

pub use longrun_shared::service::ServiceError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use longrun_shared::auth::Verifier;
use longrun_shared::relay::Relay;
use longrun_shared::{Config, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use catalog::Catalog;

/// What every handler shares; cloned per request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    pub store: Store,
    pub verifier: Verifier,
    pub catalog: Catalog,
    pub relay: Relay,
    pub config: Arc<Config>,
    pub limiter: Option<Arc<ratelimit::OwnerLimiter>>,
    /// Cancelled when the server starts shutting down: long polls answer
    /// at once with the current state instead of holding the shutdown up.
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    /// Builds the state from the configuration. Connects to Redis lazily:
    /// the api starts (and answers 503) while Redis is down.
    pub fn new(config: Config) -> Result<Self, ServiceError> {
        let store = Store::from_config(&config)?;
        let relay = Relay::start(store.client().clone(), 64);
        Ok(AppState(Arc::new(Shared {
            verifier: Verifier::new(&config.jwt),
            catalog: Catalog::builtin(),
            relay,
            limiter: ratelimit::OwnerLimiter::from_config(&config).map(Arc::new),
            config: Arc::new(config),
            store,
            shutdown: CancellationToken::new(),
        })))
    }
}

/// The router with every route and layer, and the web dashboard at `/ui/`.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let dashboard = longrun_ui::router(longrun_ui::UiSettings {
        public_ws_url: state.config.public_ws_url.clone(),
        ws_port: state.config.ws_addr.port(),
    });
    let routes = routes::router().merge(dashboard);
    observe::layers(routes.layer(DefaultBodyLimit::max(body_limit))).with_state(state)
}

/// Serves the api on `listener` until `shutdown` resolves, then finishes
/// the requests in flight (long polls answer at once).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let state = AppState::new(config)?;
    state.store.self_check(&state.config, "api").await?;
    // Install the recorder before the first request, not at the first scrape.
    longrun_shared::telemetry::prometheus();
    observe::describe_metrics();
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    info!(addr = %listener.local_addr()?, "api listening");
    let stopping = state.shutdown.clone();
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.cancel();
        })
        .await;
    housekeeping.abort();
    info!("api stopped");
    Ok(result?)
}

/// Every 10 s: keeps the catalog in step with the kinds workers advertise
/// and lets the rate limiter forget owners that are back within their rate.
async fn housekeeping(state: AppState) {
    loop {
        if let Err(err) = state.catalog.refresh(&state.store).await {
            tracing::debug!(error = %err, "could not refresh kinds");
        }
        if let Some(limiter) = &state.limiter {
            limiter.shrink();
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
