//! Wiring: the one place that builds every adapter and use case, binds the listener and runs the
//! HTTP server together with the background jobs until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::Context;
use concert_application::admit_next_in_line::AdmitNextInLine;
use concert_application::authorize_request::AuthorizeRequest;
use concert_application::cancel_reservation::CancelReservation;
use concert_application::charge_points::ChargePoints;
use concert_application::create_concert::{AdminKey, CreateConcert};
use concert_application::hold_seat::{HoldSeat, HoldSettings};
use concert_application::issue_queue_token::IssueQueueToken;
use concert_application::list_available_dates::ListAvailableDates;
use concert_application::list_available_seats::ListAvailableSeats;
use concert_application::list_concerts::ListConcerts;
use concert_application::pay_reservation::{PayReservation, PayReservationPorts};
use concert_application::ports::{
    CatalogRepository, Clock, IdempotencyStore, PaymentRepository, QueueRepository, ReadinessProbe,
    ReservationRepository, TokenSigner, WalletRepository,
};
use concert_application::queue_view::QueueView;
use concert_application::read_balance::ReadBalance;
use concert_application::read_gauges::ReadGauges;
use concert_application::read_point_history::ReadPointHistory;
use concert_application::read_queue_status::ReadQueueStatus;
use concert_application::read_reservation::ReadReservation;
use concert_application::sweep_lapsed_holds::SweepLapsedHolds;
use concert_clock::SystemClock;
use concert_domain::{HoldLimit, QueuePolicy, WalletLimits};
use concert_http::UseCases;
use concert_postgres::{
    PgCatalogRepository, PgConfig, PgIdempotencyStore, PgPaymentRepository, PgQueueRepository,
    PgReadinessProbe, PgReservationRepository, PgWalletRepository,
};
use concert_token::HmacTokenSigner;
use time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::jobs::{BackgroundJobs, NotifyAdmission};
use crate::{demo, telemetry};

/// A built server: listener bound, database migrated, jobs ready to start.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    jobs: BackgroundJobs,
    shutdown_grace: StdDuration,
}

impl Application {
    /// Prepares the database (create + migrate), builds every adapter and use case, and binds the
    /// listener (`BIND_ADDR`, port 0 for a free one).
    pub async fn build(config: Config) -> anyhow::Result<Self> {
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

        let policy = QueuePolicy {
            max_active: config.queue_max_active,
            active_ttl: Duration::seconds(config.queue_active_ttl_seconds.into()),
            idle_timeout: Duration::seconds(config.queue_idle_timeout_seconds.into()),
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let signer: Arc<dyn TokenSigner> = Arc::new(HmacTokenSigner::new(secret.as_bytes()));
        let catalog: Arc<dyn CatalogRepository> = Arc::new(PgCatalogRepository::new(pool.clone()));
        let reservations: Arc<dyn ReservationRepository> =
            Arc::new(PgReservationRepository::new(pool.clone()));
        let wallets: Arc<dyn WalletRepository> = Arc::new(PgWalletRepository::new(pool.clone()));
        let payments: Arc<dyn PaymentRepository> = Arc::new(PgPaymentRepository::new(pool.clone()));
        let idempotency: Arc<dyn IdempotencyStore> =
            Arc::new(PgIdempotencyStore::new(pool.clone()));
        let queue: Arc<dyn QueueRepository> =
            Arc::new(PgQueueRepository::new(pool.clone()).with_policy(policy));
        let readiness: Arc<dyn ReadinessProbe> = Arc::new(PgReadinessProbe::new(pool));

        let hold_settings = HoldSettings {
            ttl: Duration::seconds(config.hold_ttl_seconds.into()),
            limit: HoldLimit::new(config.max_holds_per_user)
                .context("MAX_HOLDS_PER_USER must be positive")?,
        };
        let limits = WalletLimits {
            max_charge: config.max_charge_amount,
            max_balance: config.max_balance,
        };

        let view = QueueView::new(queue.clone(), policy);
        view.refresh(clock.now())
            .await
            .context("reading the queue state")?;
        let admission = NotifyAdmission::default();
        let authorize = Arc::new(AuthorizeRequest::new(
            signer.clone(),
            queue.clone(),
            clock.clone(),
            view.clone(),
            policy,
        ));

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
        let use_cases = UseCases {
            issue_queue_token: Arc::new(IssueQueueToken::new(
                queue.clone(),
                signer.clone(),
                clock.clone(),
                view.clone(),
                policy,
            )),
            read_queue_status: Arc::new(ReadQueueStatus::new(
                signer.clone(),
                queue.clone(),
                clock.clone(),
                view.clone(),
                policy,
            )),
            authorize: authorize.clone(),
            list_concerts: Arc::new(ListConcerts::new(catalog.clone(), clock.clone())),
            list_available_dates: Arc::new(ListAvailableDates::new(catalog.clone(), clock.clone())),
            list_available_seats: Arc::new(ListAvailableSeats::new(catalog.clone(), clock.clone())),
            hold_seat: Arc::new(HoldSeat::new(
                catalog.clone(),
                reservations.clone(),
                clock.clone(),
                hold_settings,
            )),
            read_reservation: Arc::new(ReadReservation::new(reservations.clone(), clock.clone())),
            cancel_reservation: Arc::new(CancelReservation::new(
                reservations.clone(),
                clock.clone(),
            )),
            charge_points: Arc::new(ChargePoints::new(
                wallets.clone(),
                idempotency.clone(),
                clock.clone(),
                limits,
            )),
            read_balance: Arc::new(ReadBalance::new(wallets.clone())),
            read_point_history: Arc::new(ReadPointHistory::new(wallets.clone())),
            pay_reservation: Arc::new(PayReservation::new(PayReservationPorts {
                authorize,
                reservations: reservations.clone(),
                wallets,
                payments,
                idempotency,
                admission: Arc::new(admission.clone()),
                clock: clock.clone(),
            })),
            create_concert: Arc::new(CreateConcert::new(
                catalog,
                clock.clone(),
                AdminKey::new(config.admin_api_key.clone()),
                config.max_charge_amount,
            )),
            readiness,
            render_metrics,
        };

        let jobs = BackgroundJobs {
            admit: Arc::new(AdmitNextInLine::new(queue, clock.clone(), policy)),
            sweep: Arc::new(SweepLapsedHolds::new(reservations.clone(), clock.clone())),
            gauges: Arc::new(ReadGauges::new(view.clone(), reservations, clock.clone())),
            view,
            clock,
            admission,
            metrics,
            admission_interval: StdDuration::from_millis(config.admission_interval_ms),
        };

        let listener = TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("binding {}", config.bind_addr))?;
        Ok(Self {
            listener,
            router: concert_http::router(use_cases),
            jobs,
            shutdown_grace: config.shutdown_grace(),
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
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
        tracing::info!("stopped");
        served
    }
}
