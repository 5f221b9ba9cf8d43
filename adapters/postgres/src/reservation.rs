//! `ReservationRepository`: seat holds, their release (cancel, expiry) and the reads they need.
//!
//! Every write is one statement that applies the domain's decision only while the rows are at
//! the versions the decision read (compare-and-set), so it needs no explicit transaction.

use std::sync::LazyLock;

use async_trait::async_trait;
use concert_application::ports::{
    Booking, HoldState, HoldWrite, ReleaseWrite, RepositoryError, ReservationRepository, Version,
    Versioned, Written,
};
use concert_domain::{Reservation, ReservationId, ReservationStatus, SeatRef, UserHolds, UserId};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Date as SqlDate, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::cached::CachedExt;
use crate::columns::{
    BOOKING_FROM, BookingRow, RESERVATION_COLUMNS, ReservationRow, SEAT_COLUMNS, SeatRow,
    WrittenRow, claim_columns, reservation_status, version,
};
use crate::committed::committed_row;
use crate::error::{compare_and_set, corrupt, from_diesel};
use crate::pool::PgPool;

#[derive(Debug, Clone)]
pub struct PgReservationRepository {
    pool: PgPool,
}

impl PgReservationRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const HELD: &str = reservation_status(ReservationStatus::Held);
const EXPIRED: &str = reservation_status(ReservationStatus::Expired);

/// The statement of [`ReservationRepository::load_hold`]: one snapshot of the seat, the user's
/// hold version and the deadlines of the user's stored-`HELD` reservations, and a new id.
static LOAD_HOLD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SEAT_COLUMNS}, \
                COALESCE((SELECT h.version FROM user_holds h WHERE h.user_id = $1), 0) \
                  AS holds_version, \
                ARRAY(SELECT r.expires_at FROM reservations r \
                      WHERE r.user_id = $1 AND r.status = $5) AS deadlines, \
                nextval('reservations_id_seq') AS next_id \
         FROM seats s JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
         WHERE s.concert_id = $2 AND s.date = $3 AND s.seat_no = $4"
    )
});

/// The statement of [`ReservationRepository::save_hold`]. `seat` locks the seat only if it is at
/// the version read; `holder` bumps the user's hold version only if the seat was locked and the
/// hold version is the one read (an upsert: a user's first hold inserts it); `claimed` writes the
/// seat's new claim only if `holder` went through; the reservation is inserted only if the claim
/// was written. So either all of it is written or none.
/// `replaced` writes down the lapsed reservation the seat was taken from (the domain's decision):
/// the seat's version proves it unchanged since the read; `SKIP LOCKED` leaves it to a sweep or
/// payment of it that is in flight (which will find the seat gone), so a hold never waits on a
/// second reservation and cannot deadlock with them.
const SAVE_HOLD: &str = "WITH seat AS ( \
         SELECT 1 FROM seats \
         WHERE concert_id = $3 AND date = $4 AND seat_no = $5 AND version = $6 \
         FOR UPDATE \
     ), holder AS ( \
         INSERT INTO user_holds AS h (user_id, version) SELECT $1, $2 + 1 FROM seat \
         ON CONFLICT (user_id) DO UPDATE SET version = h.version + 1 WHERE h.version = $2 \
         RETURNING 1 \
     ), claimed AS ( \
         UPDATE seats SET held_by_reservation = $7, held_by_user = $8, held_until = $9, \
                          sold_to_user = $10, sold_reservation = $11, version = version + 1 \
         WHERE concert_id = $3 AND date = $4 AND seat_no = $5 AND version = $6 \
           AND EXISTS (SELECT 1 FROM holder) \
         RETURNING 1 \
     ), inserted AS ( \
         INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, \
                                   expires_at, created_at, updated_at) \
         SELECT $12, $1, $3, $4, $5, $13, $14, $15, $16, $16 FROM claimed \
         RETURNING 1 \
     ), replaced AS ( \
         UPDATE reservations SET status = $18, updated_at = $16, version = version + 1 \
         WHERE id = (SELECT id FROM reservations WHERE id = $17 FOR UPDATE SKIP LOCKED) \
           AND EXISTS (SELECT 1 FROM claimed) \
     ) \
     SELECT EXISTS (SELECT 1 FROM inserted) AS written";

/// The statement of one release (cancel or expiry): lock the reservation and its seat, both at
/// the versions read, then write the reservation's new status and, when the decision freed the
/// seat, the seat's new claim.
const SAVE_RELEASE: &str = "WITH locked AS ( \
         SELECT 1 FROM reservations r \
         JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no \
         WHERE r.id = $1 AND r.version = $2 AND (NOT $5 OR s.version = $6) \
         FOR UPDATE OF r, s \
     ), released AS ( \
         UPDATE reservations SET status = $3, updated_at = $4, version = version + 1 \
         WHERE id = $1 AND EXISTS (SELECT 1 FROM locked) \
         RETURNING concert_id, date, seat_no \
     ), freed AS ( \
         UPDATE seats s SET held_by_reservation = $7, held_by_user = $8, held_until = $9, \
                            sold_to_user = $10, sold_reservation = $11, version = s.version + 1 \
         FROM released x \
         WHERE $5 AND s.concert_id = x.concert_id AND s.date = x.date AND s.seat_no = x.seat_no \
     ) \
     SELECT EXISTS (SELECT 1 FROM released) AS written";

/// The statement of [`ReservationRepository::find`].
static FIND: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.id = $1"));

/// The statement of [`ReservationRepository::load_booking`].
static LOAD_BOOKING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS} FROM {BOOKING_FROM} \
        WHERE r.id = $1"
    )
});

/// The statement of [`ReservationRepository::lapsed`]: a read model of the sweeper's candidates.
static LAPSED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS} FROM {BOOKING_FROM} \
        WHERE r.status = $1 AND r.expires_at <= $2 \
        ORDER BY r.expires_at LIMIT $3"
    )
});

#[async_trait]
impl ReservationRepository for PgReservationRepository {
    async fn load_hold(
        &self,
        user: UserId,
        seat: SeatRef,
    ) -> Result<Option<HoldState>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(embed)]
            seat: SeatRow,
            #[diesel(sql_type = BigInt)]
            holds_version: i64,
            #[diesel(sql_type = Array<Timestamptz>)]
            deadlines: Vec<OffsetDateTime>,
            #[diesel(sql_type = BigInt)]
            next_id: i64,
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<Row> = diesel::sql_query(LOAD_HOLD.as_str())
                    .bind::<SqlUuid, _>(user.get())
                    .bind::<BigInt, _>(seat.concert_id.get())
                    .bind::<SqlDate, _>(seat.date)
                    .bind::<Integer, _>(i32::from(seat.seat_no.get()))
                    .bind::<Text, _>(HELD)
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let holds_version = if row.holds_version == 0 {
                    Version::ABSENT
                } else {
                    version(row.holds_version)?
                };
                Ok(Some(HoldState {
                    seat: row.seat.into_domain()?,
                    holds: Versioned::new(UserHolds::new(row.deadlines), holds_version),
                    next_reservation: ReservationId::new(row.next_id).map_err(corrupt)?,
                }))
            })
            .await
    }

    async fn save_hold(&self, write: &HoldWrite) -> Result<Written<()>, RepositoryError> {
        let reservation = &write.granted.reservation;
        let seat = reservation.seat();
        let (held_by, held_user, held_until, sold_to, sold_reservation) =
            claim_columns(write.seat.value.claim());
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row = diesel::sql_query(SAVE_HOLD)
                    .bind::<SqlUuid, _>(reservation.user().get())
                    .bind::<BigInt, _>(write.holds_version.get())
                    .bind::<BigInt, _>(seat.concert_id.get())
                    .bind::<SqlDate, _>(seat.date)
                    .bind::<Integer, _>(i32::from(seat.seat_no.get()))
                    .bind::<BigInt, _>(write.seat.version.get())
                    .bind::<Nullable<BigInt>, _>(held_by)
                    .bind::<Nullable<SqlUuid>, _>(held_user)
                    .bind::<Nullable<Timestamptz>, _>(held_until)
                    .bind::<Nullable<SqlUuid>, _>(sold_to)
                    .bind::<Nullable<BigInt>, _>(sold_reservation)
                    .bind::<BigInt, _>(reservation.id().get())
                    .bind::<BigInt, _>(reservation.price().get())
                    .bind::<Text, _>(reservation_status(reservation.stored_status()))
                    .bind::<Timestamptz, _>(reservation.expires_at())
                    .bind::<Timestamptz, _>(write.now)
                    .bind::<Nullable<BigInt>, _>(write.granted.replaced.map(ReservationId::get))
                    .bind::<Text, _>(EXPIRED)
                    .cached()
                    .load::<WrittenRow>(&mut conn)
                    .await
                    .map(committed_row);
                compare_and_set(row.map(|row| row.and_then(WrittenRow::wrote)))
            })
            .await
    }

    async fn find(&self, id: ReservationId) -> Result<Option<Reservation>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<ReservationRow> = diesel::sql_query(FIND.as_str())
                    .bind::<BigInt, _>(id.get())
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                Ok(row
                    .map(ReservationRow::into_domain)
                    .transpose()?
                    .map(|found| found.value))
            })
            .await
    }

    async fn load_booking(&self, id: ReservationId) -> Result<Option<Booking>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<BookingRow> = diesel::sql_query(LOAD_BOOKING.as_str())
                    .bind::<BigInt, _>(id.get())
                    .cached()
                    .get_result(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                row.map(BookingRow::into_domain).transpose()
            })
            .await
    }

    async fn lapsed(
        &self,
        now: OffsetDateTime,
        batch: u32,
    ) -> Result<Vec<Booking>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // A read model: the index of stored-HELD reservations by deadline finds the
                // candidates; the domain decides each expiry (`booking::expire`).
                let rows: Vec<BookingRow> = diesel::sql_query(LAPSED.as_str())
                    .bind::<Text, _>(HELD)
                    .bind::<Timestamptz, _>(now)
                    .bind::<BigInt, _>(i64::from(batch))
                    .cached()
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter().map(BookingRow::into_domain).collect()
            })
            .await
    }

    async fn save_releases(&self, writes: &[ReleaseWrite]) -> Result<u64, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let mut count = 0;
                for write in writes {
                    let reservation = &write.reservation;
                    let seat_changed = write.seat.is_some();
                    let (seat_version, claim) = match &write.seat {
                        Some(seat) => (seat.version.get(), claim_columns(seat.value.claim())),
                        None => (0, (None, None, None, None, None)),
                    };
                    let (held_by, held_user, held_until, sold_to, sold_reservation) = claim;
                    let row = diesel::sql_query(SAVE_RELEASE)
                        .bind::<BigInt, _>(reservation.value.id().get())
                        .bind::<BigInt, _>(reservation.version.get())
                        .bind::<Text, _>(reservation_status(reservation.value.stored_status()))
                        .bind::<Timestamptz, _>(write.now)
                        .bind::<Bool, _>(seat_changed)
                        .bind::<BigInt, _>(seat_version)
                        .bind::<Nullable<BigInt>, _>(held_by)
                        .bind::<Nullable<SqlUuid>, _>(held_user)
                        .bind::<Nullable<Timestamptz>, _>(held_until)
                        .bind::<Nullable<SqlUuid>, _>(sold_to)
                        .bind::<Nullable<BigInt>, _>(sold_reservation)
                        .cached()
                        .load::<WrittenRow>(&mut conn)
                        .await
                        .map(committed_row);
                    if let Written::Done(()) =
                        compare_and_set(row.map(|row| row.and_then(WrittenRow::wrote)))?
                    {
                        count += 1;
                    }
                }
                Ok(count)
            })
            .await
    }

    async fn count_live_holds(&self, now: OffsetDateTime) -> Result<u64, RepositoryError> {
        use crate::schema::reservations;
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // A read model for the `seat_holds_live` gauge.
                let count: i64 = reservations::table
                    .filter(reservations::status.eq(HELD))
                    .filter(reservations::expires_at.gt(now))
                    .count()
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                u64::try_from(count).map_err(corrupt)
            })
            .await
    }
}
