//! Logs and metrics set-up: one tracing subscriber (human or JSON lines) and one Prometheus
//! recorder per process.

use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Installs the log subscriber; `RUST_LOG` overrides the default `info` level. Safe to call more
/// than once (later calls do nothing), so tests may start several servers in one process.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
    };
    // Already installed by an earlier call in this process: keep that one.
    drop(result);
}

/// The process-wide Prometheus recorder. The `metrics` facade has one global recorder, so every
/// server started in this process renders the same registry.
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    // A lock, not a check-then-install: servers started at once in one process (the end-to-end
    // tests) would otherwise both find no handle and the second install would fail.
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut installed = HANDLE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let latency_buckets = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("http_request_duration_seconds".into()),
            &latency_buckets,
        )?
        .install_recorder()?;
    *installed = Some(handle.clone());
    Ok(handle)
}
