//! The gateway's metrics, in one place (Prometheus names, served at
//! `/metrics`):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `longrun_ws_connections` | gauge | open connections |
//! | `longrun_ws_subscriptions` | gauge | active subscriptions |
//! | `longrun_ws_events_delivered_total` | counter | event frames written to sockets |
//! | `longrun_ws_events_coalesced_total` | counter | progress events replaced by a newer one for a slow client |
//! | `longrun_ws_closed_total{code}` | counter | connections closed, by close code |
//! | `longrun_ws_catch_ups_total{reason}` | counter | log re-reads: `gap`, `lagged`, `resync` |
//! | `longrun_ws_delivery_latency_seconds` | histogram | worker emit time → frame written, live events only |

use std::time::SystemTime;

const CONNECTIONS: &str = "longrun_ws_connections";
const SUBSCRIPTIONS: &str = "longrun_ws_subscriptions";
const DELIVERED: &str = "longrun_ws_events_delivered_total";
const COALESCED: &str = "longrun_ws_events_coalesced_total";
const CLOSED: &str = "longrun_ws_closed_total";
const CATCH_UPS: &str = "longrun_ws_catch_ups_total";
const LATENCY: &str = "longrun_ws_delivery_latency_seconds";

/// Registers the descriptions (once per process is enough; repeats are harmless).
pub fn describe() {
    metrics::describe_gauge!(CONNECTIONS, "open WebSocket connections");
    metrics::describe_gauge!(SUBSCRIPTIONS, "active subscriptions");
    metrics::describe_counter!(DELIVERED, "event frames written to sockets");
    metrics::describe_counter!(
        COALESCED,
        "progress events replaced by a newer one for a client that fell behind"
    );
    metrics::describe_counter!(CLOSED, "connections closed, by WebSocket close code");
    metrics::describe_counter!(
        CATCH_UPS,
        "re-reads of an operation's log after a seq jump, a lagging subscriber or a pub/sub reconnect"
    );
    metrics::describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "time from the transition script's emit to the frame written to the socket"
    );
}

/// Counts a connection for as long as it lives.
#[derive(Debug)]
pub struct ConnectionGauge;

impl ConnectionGauge {
    pub fn open() -> Self {
        metrics::gauge!(CONNECTIONS).increment(1.0);
        ConnectionGauge
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS).decrement(1.0);
    }
}

/// Counts a subscription for as long as its task lives.
#[derive(Debug)]
pub struct SubscriptionGauge;

impl SubscriptionGauge {
    pub fn open() -> Self {
        metrics::gauge!(SUBSCRIPTIONS).increment(1.0);
        SubscriptionGauge
    }
}

impl Drop for SubscriptionGauge {
    fn drop(&mut self) {
        metrics::gauge!(SUBSCRIPTIONS).decrement(1.0);
    }
}

/// An event frame was written; `emitted_at` is set for live events.
pub fn delivered(emitted_at: Option<SystemTime>) {
    metrics::counter!(DELIVERED).increment(1);
    if let Some(emitted) = emitted_at
        && let Ok(elapsed) = SystemTime::now().duration_since(emitted)
    {
        metrics::histogram!(LATENCY).record(elapsed.as_secs_f64());
    }
}

pub fn coalesced() {
    metrics::counter!(COALESCED).increment(1);
}

pub fn closed(code: u16) {
    metrics::counter!(CLOSED, "code" => code.to_string()).increment(1);
}

/// Why a subscription re-read its operation's log.
#[derive(Debug, Clone, Copy)]
pub enum CatchUp {
    /// A live seq jumped ahead.
    Gap,
    /// The subscriber fell behind the relay.
    Lagged,
    /// The relay's pub/sub connection was re-established.
    Resync,
}

pub fn catch_up(reason: CatchUp) {
    let reason = match reason {
        CatchUp::Gap => "gap",
        CatchUp::Lagged => "lagged",
        CatchUp::Resync => "resync",
    };
    metrics::counter!(CATCH_UPS, "reason" => reason).increment(1);
}
