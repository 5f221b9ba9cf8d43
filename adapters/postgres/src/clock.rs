//! `Clock` on the database's time. Instances of a deployment may run on machines whose clocks
//! drift apart; every time that decides a hold's or a token's fate is compared in the database, so
//! the one clock that matters is the database's. Reading it per request would cost a round trip,
//! so this clock measures the offset between the database's clock and the local one (at start and
//! then every so often) and answers `local now + offset`: within half a round trip of the
//! database's time, with no round trip per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use concert_application::ports::{Clock, RepositoryError};
use diesel::QueryableByName;
use diesel::sql_types::Timestamptz;
use diesel_async::RunQueryDsl;
use time::{Duration, OffsetDateTime};

use crate::error::from_diesel;
use crate::pool::PgPool;

/// Samples per calibration; the one with the shortest round trip is kept.
const SAMPLES: usize = 3;

#[derive(Clone)]
pub struct PgClock {
    pool: PgPool,
    local: Arc<dyn Clock>,
    /// Database time minus local time, in microseconds; 0 until the first calibration.
    offset_micros: Arc<AtomicI64>,
}

impl std::fmt::Debug for PgClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgClock")
            .field("offset", &self.offset())
            .finish_non_exhaustive()
    }
}

impl PgClock {
    /// A clock that follows the database's time, reading `local` between calibrations.
    pub fn new(pool: PgPool, local: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            local,
            offset_micros: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The offset in use: database time minus local time.
    pub fn offset(&self) -> Duration {
        Duration::microseconds(AtomicI64::load(&self.offset_micros, Ordering::Relaxed))
    }

    /// Measures the offset again and starts using it. Returns the new offset. On failure the
    /// last offset stays in use.
    pub async fn calibrate(&self) -> Result<Duration, RepositoryError> {
        #[derive(QueryableByName)]
        struct DatabaseTime {
            #[diesel(sql_type = Timestamptz)]
            now: OffsetDateTime,
        }
        let offset = self
            .pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let mut best: Option<(Duration, Duration)> = None;
                for _ in 0..SAMPLES {
                    let sent = self.local.now();
                    // clock_timestamp(), not now(): the time of reading, not of the transaction.
                    let DatabaseTime { now } = diesel::sql_query("SELECT clock_timestamp() AS now")
                        .get_result(&mut conn)
                        .await
                        .map_err(from_diesel)?;
                    let received = self.local.now();
                    let round_trip = received - sent;
                    let offset = now - (sent + round_trip / 2);
                    if best.is_none_or(|(shortest, _)| round_trip < shortest) {
                        best = Some((round_trip, offset));
                    }
                }
                Ok(best.map_or(Duration::ZERO, |(_, offset)| offset))
            })
            .await?;
        let micros = i64::try_from(offset.whole_microseconds()).unwrap_or(0);
        self.offset_micros.store(micros, Ordering::Relaxed);
        Ok(offset)
    }
}

impl Clock for PgClock {
    fn now(&self) -> OffsetDateTime {
        self.local.now() + self.offset()
    }
}
