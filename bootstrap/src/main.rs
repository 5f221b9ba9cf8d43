//! `concert-server`: reads the configuration, serves until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use concert_bootstrap::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    telemetry::init_logging(config.log_format);
    tracing::info!(?config, "starting concert-server");
    let application = Application::build(config)
        .await
        .context("starting concert-server")?;
    tracing::info!(addr = %application.local_addr()?, "listening");
    if let Some(addr) = application.ops_addr()? {
        tracing::info!(%addr, "health and metrics listening");
    }
    application.run_until(shutdown_signal()).await
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
