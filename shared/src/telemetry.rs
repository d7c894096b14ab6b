//! Logging and metrics set-up shared by the services.
//!
//! Logs: `RUST_LOG` filters, `LONGRUN_LOG_FORMAT=json` switches to one JSON
//! object per line. Metrics: one Prometheus recorder per process (the
//! services of `longrun dev` share it), rendered by the api's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Installs the global tracing subscriber once; later calls do nothing.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LONGRUN_LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        const LATENCY: &[f64] = &[
            0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            5.0, 10.0, 30.0, 60.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (an embedding program's):
            // render from a private one so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        spawn_upkeep(handle.clone());
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds.
/// Without it every sample stays in memory until `/metrics` is scraped
/// (the recorder's documented contract), which grows a busy gateway's
/// heap by one sample per delivered event.
fn spawn_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(err) = started {
        tracing::warn!(%err, "cannot start the metrics upkeep thread; samples are folded at scrapes only");
    }
}
