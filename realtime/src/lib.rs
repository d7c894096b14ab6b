//! The longrun WebSocket gateway.
//!
//! Clients connect to `/v1/ws`, authenticate with a bearer token (upgrade
//! header, `access_token` query, or a first `auth` frame), subscribe to
//! operations or to everything of their own, and receive every event in
//! seq order with no gap and no duplicate — across reconnects (with
//! `after_seq`), gateway restarts and Redis reconnects.
//!
//! Every connection of a process shares one Redis pub/sub connection
//! ([`longrun_shared::relay`]); each event is received and decoded once per
//! process ([`live`]) and its bytes are forwarded as published. See
//! [`connection`] for one client's life, [`follow`] and [`owner`] for the
//! delivery guarantee, [`outbox`] for backpressure and [`admission`] for
//! connection limits. docs/websocket.md is the protocol for users.

pub mod admission;
pub mod connection;
pub mod follow;
pub mod live;
pub mod meter;
pub mod outbox;
pub mod owner;
pub mod protocol;
pub mod writer;

pub use longrun_shared::service::ServiceError;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use longrun_shared::auth::{Principal, Verifier};
use longrun_shared::problem::{Code, PROBLEM_JSON, Problem};
use longrun_shared::relay::Relay;
use longrun_shared::{Config, Store};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::admission::Admission;
use crate::connection::Admitted;
use crate::live::Live;
use crate::protocol::MAX_SOCKET_MESSAGE;

/// How many live events one subscriber may fall behind on a channel
/// before it re-reads the log instead (see [`follow`]). Small on purpose:
/// every channel allocates its ring up front, and catching up from the log
/// is cheap and exact.
const RELAY_CAPACITY: usize = 64;
/// The socket's read buffer: client frames are small.
const READ_BUFFER: usize = 4 * 1024;
/// The kernel send buffer of each client socket (Linux doubles it). Left
/// to autotuning it grows to megabytes, hiding a client that stopped
/// reading (and holding that much memory for it); this bound is plenty for
/// progress streams and lets the outbox see a slow client soon.
const SEND_BUFFER: usize = 64 * 1024;
/// How long closing connections get to say goodbye on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every connection of the gateway shares (cheap to clone).
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

pub struct Shared {
    pub store: Store,
    pub relay: Relay<Live>,
    pub verifier: Verifier,
    pub config: Config,
    pub shutdown: CancellationToken,
    pub admission: Arc<Admission>,
    connections: TaskTracker,
}

impl Deref for Gateway {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(config: Config) -> Result<Self, ServiceError> {
        let store = Store::from_config(&config)?;
        let relay = Relay::start_with(store.client().clone(), RELAY_CAPACITY, live::decode);
        Ok(Gateway {
            shared: Arc::new(Shared {
                verifier: Verifier::new(&config.jwt),
                admission: Admission::new(
                    config.realtime.max_connections_per_owner,
                    config.realtime.max_subscriptions_per_owner,
                ),
                relay,
                store,
                config,
                shutdown: CancellationToken::new(),
                connections: TaskTracker::new(),
            }),
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

/// The token of an upgrade request: the `Authorization` header, else the
/// `access_token` query parameter. `None` when neither is there.
fn upgrade_principal(
    gateway: &Gateway,
    headers: &HeaderMap,
    query: Option<UpgradeQuery>,
) -> Option<Result<Principal, longrun_shared::auth::AuthError>> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        return Some(gateway.verifier.verify_header(value));
    }
    query
        .and_then(|query| query.access_token)
        .map(|token| gateway.verifier.verify(&token))
}

async fn upgrade(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    query: Result<Query<UpgradeQuery>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return problem(Code::BadRequest, &rejection.body_text()),
    };
    if gateway.shutdown.is_cancelled() {
        return problem(Code::Unavailable, "the gateway is shutting down; reconnect");
    }
    let admitted = match upgrade_principal(&gateway, &headers, query.ok().map(|Query(q)| q)) {
        Some(Err(err)) => return problem(Code::Unauthorized, &err.to_string()),
        Some(Ok(principal)) => match gateway.admission.owner(&principal.owner) {
            Some(slot) => Admitted::Authenticated { principal, slot },
            None => return problem(Code::RateLimited, "too many connections for this owner"),
        },
        None => match gateway.admission.anonymous() {
            Some(slot) => Admitted::Anonymous { slot },
            None => {
                return problem(
                    Code::RateLimited,
                    "too many connections are waiting to authenticate",
                );
            }
        },
    };
    let tracker = gateway.connections.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_SOCKET_MESSAGE)
        .max_frame_size(MAX_SOCKET_MESSAGE)
        .on_upgrade(move |socket| {
            tracker.track_future(connection::serve(socket, gateway, admitted))
        })
}

/// Small frames go out at once (no Nagle delay); the send buffer is bounded.
fn tune_socket(tcp: &mut tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(SEND_BUFFER);
}

/// Serves the gateway on `listener` until `shutdown` resolves; then every
/// connection is closed with 1001 so clients reconnect elsewhere.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    meter::describe();
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
    let listener = listener.tap_io(tune_socket);
    axum::serve(listener, app(gateway))
        .with_graceful_shutdown(signal)
        .await?;
    connections.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await;
    info!("realtime gateway stopped");
    Ok(())
}
