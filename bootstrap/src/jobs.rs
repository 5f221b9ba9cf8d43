//! Background jobs that every instance runs: admission (on a short timer and right after a
//! payment), the hold sweeper, the deployment-wide gauges and, when the line is kept in another
//! store than payments, the relay of payments' ticket ends. Each is safe to run on many
//! instances at once: the repositories serialise what must be serialised.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use concert_application::admit_next_in_line::AdmitNextInLine;
use concert_application::ports::{AdmissionTrigger, Clock, RepositoryError};
use concert_application::purge_expired_records::{PurgeExpiredRecords, PurgeReport};
use concert_application::read_gauges::ReadGauges;
use concert_application::relay_ticket_ends::{RELAY_BATCH, RelayTicketEnds};
use concert_application::room_lines::RoomLines;
use concert_application::sweep_lapsed_holds::SweepLapsedHolds;
use concert_application::waiting_polls::WaitingPolls;
use concert_identity::JwtIdentity;
use concert_postgres::PgClock;
use concert_redis::{LineEpoch, RedisLine};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::identity::{JWKS_CHECK_INTERVAL, JwksWatch};

const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Records past retention are hours old; a purge every ten minutes keeps each run small.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// Payments wake the admission job at most this often. Without a gap, a stream of payments runs
/// admission steps back to back (each takes the exclusive queue lock and scans the active tickets);
/// with it, a freed place is still filled within this gap, far inside docs/API.md's one second.
const ADMISSION_WAKE_GAP: Duration = Duration::from_millis(50);
/// How often the waiting polls this instance answered are written down (under a room's waiting
/// rule): half the shortest resolution the domain allows, so a poll reaches the store within it.
const WAITING_POLLS_INTERVAL: Duration = Duration::from_millis(500);
const GAUGES_INTERVAL: Duration = Duration::from_secs(2);
/// How often the offset to the database's clock is measured again (machine clocks drift slowly).
const CLOCK_CALIBRATION_INTERVAL: Duration = Duration::from_secs(60);
/// How often the ticket ends payments left in the outbox are applied to the line: the bound of
/// the window in which a paid token may still read `ACTIVE` (docs/DATABASE.md §5.13).
pub const TICKET_END_RELAY_INTERVAL: Duration = Duration::from_secs(1);
/// Batches one run of the relay reads at most, back to back while they come back full.
const TICKET_END_RELAY_BATCHES: u32 = 10;

/// Wakes the admission job of this instance at once (after a payment freed a place, or for a
/// join that may pass through), and tells who waits for a step when one has run.
#[derive(Debug, Clone)]
pub struct NotifyAdmission {
    wake: Arc<Notify>,
    /// Steps of this instance's job started so far, and (published) finished so far. The job
    /// runs one step at a time, so step n+1 starts after n finished.
    started: Arc<AtomicU64>,
    finished: watch::Sender<u64>,
}

impl Default for NotifyAdmission {
    fn default() -> Self {
        Self {
            wake: Arc::default(),
            started: Arc::default(),
            finished: watch::Sender::new(0),
        }
    }
}

impl NotifyAdmission {
    /// Counts a step of the job as started; returns its number.
    fn step_started(&self) -> u64 {
        self.started.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn step_finished(&self, step: u64) {
        self.finished.send_replace(step);
    }
}

#[async_trait]
impl AdmissionTrigger for NotifyAdmission {
    fn request_admission(&self) {
        self.wake.notify_one();
    }

    async fn admit_soon(&self, within: Duration) {
        // The next step to start is the first that sees everything committed before this call.
        let wanted = self.started.load(Ordering::Acquire) + 1;
        let mut finished = self.finished.subscribe();
        self.wake.notify_one();
        let _ = tokio::time::timeout(within, finished.wait_for(|step| *step >= wanted)).await;
    }
}

#[derive(Clone)]
pub struct BackgroundJobs {
    pub(crate) admit: Arc<AdmitNextInLine>,
    pub(crate) sweep: Arc<SweepLapsedHolds>,
    pub(crate) purge: Arc<PurgeExpiredRecords>,
    pub(crate) gauges: Arc<ReadGauges>,
    pub(crate) lines: RoomLines,
    pub(crate) waiting_polls: WaitingPolls,
    /// Moved when a refresh of the view changed what streams tell: wakes the event streams.
    pub(crate) view_refreshed: watch::Sender<u64>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The database's clock, calibrated periodically (PostgreSQL only).
    pub(crate) database_clock: Option<PgClock>,
    pub(crate) admission: NotifyAdmission,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) admission_interval: Duration,
    /// The JWT verifier, whose JWKS file is reloaded when it changes.
    pub(crate) identity: Option<Arc<JwtIdentity>>,
    /// Applies the ticket ends payments wrote to the outbox: set when the line is kept in
    /// another store than payments.
    pub(crate) ticket_end_relay: Option<Arc<RelayTicketEnds>>,
    /// The line on Redis, whose dataset the epoch watch follows.
    pub(crate) redis_line: Option<RedisLine>,
}

impl BackgroundJobs {
    /// One admission step in every room followed by a refresh of this instance's views of the
    /// lines.
    pub async fn admit_once(&self) -> Result<(), RepositoryError> {
        self.admit.run_once().await?;
        self.refresh_view().await
    }

    /// Refreshes this instance's view of every line, then wakes the event streams if what they
    /// tell may have changed. A line that fails to refresh does not hold up the others.
    async fn refresh_view(&self) -> Result<(), RepositoryError> {
        let now = self.clock.now();
        let mut failure = None;
        let mut generation = 0_u64;
        for view in self.lines.views() {
            // A closed room's empty line cannot change until the room reopens.
            if !view.is_closed_and_empty()
                && let Err(error) = view.refresh(now).await
            {
                failure.get_or_insert(error);
            }
            generation = generation.wrapping_add(view.generation());
        }
        // Against the last generation sent (the sum over the lines, which only grow), so a
        // change this instance noted between refreshes (a user who left here) wakes the streams
        // too; lines standing still wake nobody.
        if generation != *self.view_refreshed.borrow() {
            self.view_refreshed.send_replace(generation);
        }
        failure.map_or(Ok(()), Err)
    }

    /// One run of the ticket-end relay (nothing without one); returns how many rows it settled.
    pub async fn relay_ticket_ends_once(&self) -> Result<u64, RepositoryError> {
        match &self.ticket_end_relay {
            Some(relay) => relay_ticket_ends(relay).await,
            None => Ok(0),
        }
    }

    /// One sweep of lapsed holds; returns how many were marked expired.
    pub async fn sweep_once(&self) -> Result<u64, RepositoryError> {
        self.sweep.run_once().await
    }

    /// One update of the deployment-wide gauges.
    pub async fn update_gauges_once(&self) -> Result<(), RepositoryError> {
        let gauges = self.gauges.execute().await?;
        #[allow(clippy::cast_precision_loss)]
        {
            for room in gauges.rooms {
                let id = room.room.as_str().to_owned();
                metrics::gauge!("queue_waiting_tokens", "room" => id.clone())
                    .set(room.waiting_tokens as f64);
                metrics::gauge!("queue_active_tokens", "room" => id).set(room.active_tokens as f64);
            }
            metrics::gauge!("seat_holds_live").set(gauges.live_holds as f64);
        }
        self.metrics.run_upkeep();
        Ok(())
    }

    pub(crate) fn spawn(&self, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let admission = {
            let admit = self.admit.clone();
            let jobs = self.clone();
            let trigger = self.admission.clone();
            let interval = self.admission_interval;
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut last_step = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = trigger.wake.notified() => {
                            // Wakes that arrive meanwhile are folded into this one step.
                            tokio::select! {
                                () = tokio::time::sleep_until(last_step + ADMISSION_WAKE_GAP) => {}
                                _ = stop.changed() => break,
                            }
                        }
                        _ = stop.changed() => break,
                    }
                    last_step = tokio::time::Instant::now();
                    let step = trigger.step_started();
                    if let Err(error) = admit.run_once().await {
                        tracing::warn!(error = %error, "admission step failed");
                    }
                    if let Err(error) = jobs.refresh_view().await {
                        tracing::warn!(error = %error, "queue view refresh failed");
                    }
                    trigger.step_finished(step);
                }
            })
        };
        // Its own timer, so this instance's positions never lag by more than a refresh period
        // even while an admission step waits for the queue lock.
        let refresh = {
            let jobs = self.clone();
            every(self.admission_interval, stop.clone(), move || {
                let jobs = jobs.clone();
                async move {
                    if let Err(error) = jobs.refresh_view().await {
                        tracing::warn!(error = %error, "queue view refresh failed");
                    }
                }
            })
        };
        let polls = {
            let (polls, lines, clock) = (
                self.waiting_polls.clone(),
                self.lines.clone(),
                self.clock.clone(),
            );
            every(WAITING_POLLS_INTERVAL, stop.clone(), move || {
                let (polls, lines, clock) = (polls.clone(), lines.clone(), clock.clone());
                async move {
                    let policy_of = |line| lines.of_line(line).policy();
                    if let Err(error) = polls.write_pending(clock.now(), policy_of).await {
                        tracing::warn!(error = %error, "writing waiting polls failed");
                    }
                }
            })
        };
        let sweeper = {
            let sweep = self.sweep.clone();
            every(SWEEP_INTERVAL, stop.clone(), move || {
                let sweep = sweep.clone();
                async move {
                    match sweep.run_once().await {
                        Ok(0) => {}
                        Ok(expired) => tracing::debug!(expired, "lapsed holds swept"),
                        Err(error) => tracing::warn!(error = %error, "hold sweep failed"),
                    }
                }
            })
        };
        let gauges = {
            let jobs = self.clone();
            every(GAUGES_INTERVAL, stop.clone(), move || {
                let jobs = jobs.clone();
                async move {
                    if let Err(error) = jobs.update_gauges_once().await {
                        tracing::warn!(error = %error, "gauge update failed");
                    }
                }
            })
        };
        let purge = {
            let purge = self.purge.clone();
            every(PURGE_INTERVAL, stop.clone(), move || {
                let purge = purge.clone();
                async move {
                    match purge.run_once().await {
                        Ok(report) if report == PurgeReport::default() => {}
                        Ok(report) => tracing::info!(
                            idempotency_keys = report.idempotency_keys,
                            ended_tickets = report.ended_tickets,
                            pre_queue_entries = report.pre_queue_entries,
                            "records past retention purged"
                        ),
                        Err(error) => tracing::warn!(error = %error, "purge failed"),
                    }
                }
            })
        };
        let mut jobs = vec![admission, refresh, polls, sweeper, gauges, purge];
        if let Some(mut watch) = self.identity.clone().and_then(JwksWatch::of) {
            jobs.push(every(JWKS_CHECK_INTERVAL, stop.clone(), move || {
                watch.check();
                std::future::ready(())
            }));
        }
        if let Some(relay) = self.ticket_end_relay.clone() {
            jobs.push(spawn_ticket_end_relay(relay, stop.clone()));
        }
        if let Some(line) = self.redis_line.clone() {
            let seen: Arc<Mutex<Option<LineEpoch>>> = Arc::default();
            jobs.push(every(EPOCH_CHECK_INTERVAL, stop.clone(), move || {
                let (line, seen) = (line.clone(), Arc::clone(&seen));
                async move { watch_epoch(&line, &seen).await }
            }));
        }
        if let Some(clock) = self.database_clock.clone() {
            jobs.push(every(CLOCK_CALIBRATION_INTERVAL, stop.clone(), move || {
                let clock = clock.clone();
                async move {
                    match clock.calibrate().await {
                        Ok(offset) => tracing::debug!(
                            offset_ms = offset.whole_milliseconds(),
                            "clock aligned on the database"
                        ),
                        Err(error) => tracing::warn!(error = %error, "clock calibration failed"),
                    }
                }
            }));
        }
        jobs
    }
}

/// How often an instance reads the epoch of the line's Redis.
const EPOCH_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the epoch of the line's Redis and tells when it changed since the last reading: Redis
/// lost its data (restarted without persistence, flushed, failed over to an empty replica).
/// Nothing to repair: each line starts in a new block of numbers at its next join; this is for
/// the operators (an error in the log, `queue_line_store_resets_total`).
async fn watch_epoch(line: &RedisLine, seen: &Mutex<Option<LineEpoch>>) {
    match line.epoch().await {
        Ok(epoch) => {
            let before = seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .replace(epoch.clone());
            if let Some(before) = before
                && before != epoch
            {
                metrics::counter!("queue_line_store_resets_total").increment(1);
                tracing::error!(
                    before = %before,
                    now = %epoch,
                    "the line's Redis lost its data: every place in line is gone (older tokens \
                     answer TOKEN_INVALID and their holders join again)"
                );
            }
        }
        Err(error) => tracing::debug!(error = %error, "reading the line's epoch failed"),
    }
}

/// One run of the ticket-end relay: batches of pending ends, oldest first, until one comes back
/// short (or [`TICKET_END_RELAY_BATCHES`] of them); returns how many rows it settled.
pub async fn relay_ticket_ends(relay: &RelayTicketEnds) -> Result<u64, RepositoryError> {
    let mut settled = 0;
    for _ in 0..TICKET_END_RELAY_BATCHES {
        let batch = relay.relay_pending(RELAY_BATCH).await?;
        settled += batch;
        if batch < u64::from(RELAY_BATCH) {
            break;
        }
    }
    Ok(settled)
}

/// Runs the ticket-end relay at once (ends a previous process left behind) and then every
/// [`TICKET_END_RELAY_INTERVAL`] until `stop` changes. For a line kept in another store than
/// payments, with payments writing their ticket ends to the outbox.
pub fn spawn_ticket_end_relay(
    relay: Arc<RelayTicketEnds>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    every(TICKET_END_RELAY_INTERVAL, stop, move || {
        let relay = relay.clone();
        async move {
            match relay_ticket_ends(&relay).await {
                Ok(0) => {}
                Ok(settled) => tracing::info!(settled, "payments' ticket ends applied to the line"),
                Err(error) => tracing::warn!(
                    error = %error,
                    "applying payments' ticket ends failed; they stay pending"
                ),
            }
        }
    })
}

/// Runs `job` every `period` until `stop` changes. A run that overruns delays the next one
/// instead of bunching runs up.
fn every<F, Fut>(period: Duration, mut stop: watch::Receiver<bool>, mut job: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            job().await;
        }
    })
}

#[cfg(test)]
mod tests {
    use concert_application::ports::{
        MockQueueRepository, MockTicketEndOutbox, PendingTicketEnd, TicketEnd,
    };
    use concert_application::relay_ticket_ends::RelayTicketEndsPorts;
    use concert_clock::SystemClock;
    use concert_domain::{EndReason, QueuePolicy, TicketNo, TicketStatus, UserId};

    use super::*;

    fn relay_over(outbox: MockTicketEndOutbox, queue: MockQueueRepository) -> Arc<RelayTicketEnds> {
        Arc::new(RelayTicketEnds::new(RelayTicketEndsPorts {
            outbox: Arc::new(outbox),
            queue: Arc::new(queue),
            lines: RoomLines::new(Arc::new(MockQueueRepository::new()), QueuePolicy::default()),
            admission: Arc::new(NotifyAdmission::default()),
            clock: Arc::new(SystemClock),
        }))
    }

    fn pending(n: i64) -> PendingTicketEnd {
        PendingTicketEnd {
            end: TicketEnd {
                ticket: TicketNo::new(n).expect("a ticket"),
                read_as: TicketStatus::Active,
                reason: EndReason::Paid,
            },
            payer: UserId::from_uuid(uuid::Uuid::from_u128(7)),
            written_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_relay_runs_at_start_then_every_second_until_stopped() {
        let runs = Arc::new(AtomicU64::new(0));
        let mut outbox = MockTicketEndOutbox::new();
        let counted = Arc::clone(&runs);
        outbox.expect_pending().returning(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Vec::new())
        });
        let (stop, stopped) = watch::channel(false);

        let job = spawn_ticket_end_relay(relay_over(outbox, MockQueueRepository::new()), stopped);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "a run at start");
        tokio::time::sleep(TICKET_END_RELAY_INTERVAL).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "and one a second later");

        stop.send_replace(true);
        job.await.expect("the job stops");
        tokio::time::sleep(TICKET_END_RELAY_INTERVAL * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2, "none once stopped");
    }

    #[tokio::test]
    async fn a_run_reads_batches_back_to_back_while_they_come_back_full() {
        let full: Vec<PendingTicketEnd> = (1..=i64::from(RELAY_BATCH)).map(pending).collect();
        let mut batches = vec![full, vec![pending(1_000)]].into_iter();
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_pending()
            .times(2)
            .returning(move |_| Ok(batches.next().expect("a batch")));
        outbox.expect_done().returning(|_| Ok(()));
        // Every number is gone from the line: each row is settled without an end.
        let mut queue = MockQueueRepository::new();
        queue.expect_find().returning(|_| Ok(None));

        let settled = relay_ticket_ends(&relay_over(outbox, queue))
            .await
            .expect("relayed");

        assert_eq!(settled, u64::from(RELAY_BATCH) + 1);
    }

    #[tokio::test]
    async fn a_run_stops_when_the_line_is_unavailable() {
        let mut outbox = MockTicketEndOutbox::new();
        outbox
            .expect_pending()
            .times(1)
            .returning(|_| Ok(vec![pending(1)]));
        outbox.expect_done().never();
        let mut queue = MockQueueRepository::new();
        queue
            .expect_find()
            .returning(|_| Err(RepositoryError::Unavailable("down".into())));

        let failed = relay_ticket_ends(&relay_over(outbox, queue)).await;

        assert!(matches!(failed, Err(RepositoryError::Unavailable(_))));
    }
}
