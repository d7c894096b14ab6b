//! The longrun WebSocket gateway.
//!
//! Clients connect to `/v1/ws`, authenticate with a bearer token (upgrade
//! header, `access_token` query, or a first `auth` frame), subscribe to
//! operations or to everything of their own, and receive every event in
//! seq order with no gap and no duplicate — across reconnects (with
//! `after_seq`), gateway restarts and Redis reconnects.
//!
//! Every connection of a process shares one Redis pub/sub connection
//! ([`longrun_shared::relay`]); each event is received and parsed once per
//! process and its bytes are forwarded as published. See [`connection`] for
//! one client's life, [`follow`] for the delivery guarantee and [`outbox`]
//! for backpressure.

pub mod connection;
pub mod follow;
pub mod outbox;
pub mod protocol;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use longrun_shared::auth::{AuthError, Verifier};
use longrun_shared::problem::{Code, PROBLEM_JSON, Problem};
use longrun_shared::relay::Relay;
use longrun_shared::{Config, Store};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// Largest message the socket accepts at all; frames over
/// [`protocol::MAX_CLIENT_FRAME`] but under this get a `bad_request`.
const MAX_SOCKET_MESSAGE: usize = 16 * 1024 * 1024;

/// What every connection of the gateway shares.
#[derive(Clone)]
pub struct Gateway {
    pub store: Store,
    pub relay: Relay,
    pub verifier: Verifier,
    pub config: Arc<Config>,
    pub shutdown: CancellationToken,
    connections: TaskTracker,
    owners: Arc<Mutex<HashMap<String, usize>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// One connection counted against its owner's limit, released when dropped.
#[derive(Debug)]
pub struct OwnerSlot {
    owner: String,
    owners: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for OwnerSlot {
    fn drop(&mut self) {
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = owners.get_mut(&self.owner) {
            *count -= 1;
            if *count == 0 {
                owners.remove(&self.owner);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] longrun_shared::config::ConfigError),
    #[error(transparent)]
    Store(#[from] longrun_shared::store::StoreError),
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Gateway {
    pub fn new(config: Config) -> Result<Self, GatewayError> {
        let store = Store::from_config(&config)?;
        let relay = Relay::start(store.client().clone(), config.realtime.queue_hard.max(1024));
        Ok(Gateway {
            verifier: Verifier::new(&config.jwt),
            relay,
            store,
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            owners: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Counts a connection for `owner`; `None` when at the limit.
    pub fn claim_owner_slot(&self, owner: &str) -> Option<OwnerSlot> {
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = owners.entry(owner.to_owned()).or_insert(0);
        if *count >= self.config.realtime.max_connections_per_owner {
            return None;
        }
        *count += 1;
        Some(OwnerSlot {
            owner: owner.to_owned(),
            owners: self.owners.clone(),
        })
    }
}

/// The gateway's routes: `/v1/ws`, `/healthz`, `/metrics`.
pub fn app(gateway: Gateway) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async { longrun_shared::telemetry::prometheus().render() }),
        )
        .fallback(|| async { problem(Code::NotFound, "no such route; the WebSocket is at /v1/ws") })
        .with_state(gateway)
}

fn problem(code: Code, detail: &str) -> Response {
    let problem = Problem::new(code, detail);
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, serde_json::to_vec(&problem).unwrap_or_default()).into_response();
    if let Ok(value) = PROBLEM_JSON.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct UpgradeQuery {
    access_token: Option<String>,
}

async fn upgrade(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<UpgradeQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| gateway.verifier.verify_header(value))
        .or_else(|| {
            query
                .ok()
                .and_then(|Query(q)| q.access_token)
                .map(|token| gateway.verifier.verify(&token))
        });
    let principal = match token {
        None => None,
        Some(Ok(principal)) => Some(principal),
        Some(Err(err)) => return problem(Code::Unauthorized, &auth_detail(&err)),
    };
    let slot = match &principal {
        Some(principal) => match gateway.claim_owner_slot(&principal.owner) {
            Some(slot) => Some(slot),
            None => return problem(Code::RateLimited, "too many connections for this owner"),
        },
        None => None,
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return problem(Code::BadRequest, &rejection.body_text()),
    };
    let tracker = gateway.connections.clone();
    ws.max_message_size(MAX_SOCKET_MESSAGE)
        .on_upgrade(move |socket| {
            tracker.track_future(connection::serve(socket, gateway, principal, slot))
        })
}

fn auth_detail(err: &AuthError) -> String {
    err.to_string()
}

/// Serves the gateway on `listener` until `shutdown` resolves; then every
/// connection is closed with 1001 so clients reconnect elsewhere.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let gateway = Gateway::new(config)?;
    gateway
        .store
        .self_check(&gateway.config, "realtime")
        .await?;
    info!(addr = %listener.local_addr()?, "realtime gateway listening");
    let stopping = gateway.shutdown.clone();
    let connections = gateway.connections.clone();
    let signal = async move {
        shutdown.await;
        stopping.cancel();
    };
    axum::serve(listener, app(gateway))
        .with_graceful_shutdown(signal)
        .await?;
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
    info!("realtime gateway stopped");
    Ok(())
}
