//! Wiring: the one place that builds every adapter and use case, binds the listener and runs the
//! HTTP server together with the background jobs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;
use axum::http::HeaderValue;
use concert_application::create_concert::{AdminKey, CreateConcert};
use concert_application::ports::{CatalogRepository, Clock, ReservationRepository};
use concert_application::services::{Ports, Services};
use concert_clock::SystemClock;
use concert_http::{Endpoints, RouterOptions, UseCases, router_with};
use concert_postgres::{
    PgCatalogRepository, PgClock, PgConfig, PgIdempotencyStore, PgPaymentRepository,
    PgQueueRepository, PgReadinessProbe, PgReservationRepository, PgRetentionRepository,
    PgWalletRepository,
};
use concert_token::HmacTokenSigner;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::jobs::{BackgroundJobs, NotifyAdmission};
use crate::{demo, identity, telemetry};

/// A built server: listener bound, database migrated, jobs ready to start.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// The operations listener (`OPS_BIND_ADDR`) and its router, when separate.
    operations: Option<(TcpListener, axum::Router)>,
    jobs: BackgroundJobs,
    shutdown_grace: StdDuration,
}

impl Application {
    /// Prepares the database (create + migrate), builds every adapter and use case, and binds the
    /// listener (`BIND_ADDR`, port 0 for a free one).
    pub async fn build(mut config: Config) -> anyhow::Result<Self> {
        config
            .read_secret_files()
            .map_err(anyhow::Error::msg)
            .context("invalid configuration")?;
        config
            .validate()
            .map_err(anyhow::Error::msg)
            .context("invalid configuration")?;
        let (secret, is_development_key) = config.token_secret_or_development();
        if is_development_key {
            tracing::warn!(
                "TOKEN_SECRET is not set: using the development key; anyone can forge queue tokens"
            );
        }

        concert_postgres::prepare_database(&config.database_url)
            .await
            .context("preparing the database (create if missing, run migrations)")?;
        let pool = concert_postgres::build_pool(&PgConfig {
            max_connections: config.database_pool_size as usize,
            ..PgConfig::new(&config.database_url)
        })
        .context("building the database pool")?;

        let identity = identity::build(&config)?;
        let settings = config.settings(identity.mode.clone());
        // Every instance tells time by the database's clock (see PgClock), so deadlines agree
        // across instances whatever their machines' clocks say.
        let database_clock = PgClock::new(pool.clone(), Arc::new(SystemClock));
        let offset = database_clock
            .calibrate()
            .await
            .context("reading the database clock")?;
        tracing::info!(
            offset_ms = offset.whole_milliseconds(),
            "clock aligned on the database"
        );
        let clock: Arc<dyn Clock> = Arc::new(database_clock.clone());
        let catalog: Arc<dyn CatalogRepository> = Arc::new(PgCatalogRepository::new(pool.clone()));
        let reservations: Arc<dyn ReservationRepository> =
            Arc::new(PgReservationRepository::new(pool.clone()));
        let admission = NotifyAdmission::default();
        let services = Services::new(
            Ports {
                clock: clock.clone(),
                signer: Arc::new(HmacTokenSigner::new(secret.as_bytes())),
                catalog: catalog.clone(),
                reservations,
                wallets: Arc::new(PgWalletRepository::new(pool.clone())),
                payments: Arc::new(PgPaymentRepository::new(pool.clone())),
                idempotency: Arc::new(PgIdempotencyStore::new(pool.clone())),
                queue: Arc::new(PgQueueRepository::new(pool.clone())),
                admission: Arc::new(admission.clone()),
                retention: Arc::new(PgRetentionRepository::new(pool.clone())),
            },
            settings,
        );
        services
            .view
            .refresh(clock.now())
            .await
            .context("reading the queue state")?;

        if config.demo_data {
            let seeding_key = format!("demo-{}", std::process::id());
            let seeder = CreateConcert::new(
                catalog.clone(),
                clock.clone(),
                AdminKey::new(Some(seeding_key.clone())),
                config.max_charge_amount,
            );
            let created = demo::seed_if_empty(catalog.as_ref(), &seeder, Some(&seeding_key))
                .await
                .context("creating demo data")?;
            tracing::info!(concerts = created, "demo data checked");
        }

        let metrics = telemetry::metrics_handle().context("installing the metrics recorder")?;
        let render_metrics = {
            let metrics = metrics.clone();
            Arc::new(move || metrics.render())
        };
        let jobs = BackgroundJobs {
            admit: services.admit_next_in_line.clone(),
            sweep: services.sweep_lapsed_holds.clone(),
            purge: services.purge_expired_records.clone(),
            gauges: services.read_gauges.clone(),
            view: services.view.clone(),
            clock,
            database_clock,
            admission,
            metrics,
            admission_interval: StdDuration::from_millis(config.admission_interval_ms),
            identity: identity.jwt,
        };
        let use_cases = UseCases {
            services: Arc::new(services),
            readiness: Arc::new(PgReadinessProbe::new(pool)),
            render_metrics,
        };

        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("binding {}", config.bind_addr))?;
        let cors_origins = config
            .cors_allowed_origins
            .iter()
            .map(|origin| HeaderValue::from_str(origin))
            .collect::<Result<Vec<_>, _>>()
            .context("CORS_ALLOWED_ORIGINS")?;
        let public = |endpoints| RouterOptions {
            endpoints,
            cors_origins: cors_origins.clone(),
        };
        let (router, operations) = match config.ops_bind_addr {
            None => (router_with(use_cases, public(Endpoints::All)), None),
            Some(addr) => {
                let ops_listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding OPS_BIND_ADDR {addr}"))?;
                let ops_router = concert_http::router_for(use_cases.clone(), Endpoints::Operations);
                (
                    router_with(use_cases, public(Endpoints::Public)),
                    Some((ops_listener, ops_router)),
                )
            }
        };
        Ok(Self {
            listener,
            router,
            operations,
            jobs,
            shutdown_grace: config.shutdown_grace(),
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The operations listener's address, when `OPS_BIND_ADDR` separates it.
    pub fn ops_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.operations
            .as_ref()
            .map(|(listener, _)| listener.local_addr())
            .transpose()
            .map_err(Into::into)
    }

    /// Runs one admission step and one view refresh now (for tests that drain instead of sleeping).
    pub fn jobs(&self) -> &BackgroundJobs {
        &self.jobs
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// (up to the grace period) and stops the background jobs.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_jobs, jobs_stopped) = watch::channel(false);
        // Health and metrics keep answering while the public listener drains; they stop with
        // the background jobs.
        let operations = self.operations.map(|(listener, router)| {
            let mut stopped = jobs_stopped.clone();
            tokio::spawn(async move {
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.changed().await;
                    })
                    .await
            })
        });
        let jobs = self.jobs.spawn(jobs_stopped);
        let (draining_tx, mut draining) = watch::channel(false);
        let server = axum::serve(self.listener, self.router).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: finishing in-flight requests");
            let _ = draining_tx.send(true);
        });
        let grace = self.shutdown_grace;
        let served = tokio::select! {
            result = server => result.context("serving HTTP"),
            () = async {
                // Bound the drain: a stuck client must not hold the process forever.
                while !*draining.borrow() {
                    if draining.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("in-flight requests did not finish within the grace period");
                Ok(())
            }
        };
        let _ = stop_jobs.send(true);
        for job in jobs {
            drop(job.await);
        }
        if let Some(operations) = operations
            && let Ok(Err(error)) = operations.await
        {
            tracing::warn!(%error, "the operations listener failed");
        }
        tracing::info!("stopped");
        served
    }
}
