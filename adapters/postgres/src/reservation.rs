//! `ReservationRepository`: seat holds, their cancellation and the sweeper's tidy-up.

use async_trait::async_trait;
use concert_application::ports::{
    CancelOutcome, HoldOutcome, HoldRequest, RepositoryError, ReservationRepository,
};
use concert_domain::{Price, Reservation, ReservationId, ReservationStatus, UserId};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, RunQueryDsl};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::cached::CachedExt;
use crate::catalog::{concert_id, stored_seat_no};
use crate::error::{Abort, corrupt, from_diesel, settle};
use crate::locks;
use crate::pool::PgPool;
use crate::schema::{reservations, seats};

#[derive(Debug, Clone)]
pub struct PgReservationRepository {
    pool: PgPool,
}

impl PgReservationRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A `reservations` row.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = reservations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ReservationRow {
    id: i64,
    user_id: Uuid,
    concert_id: i64,
    date: Date,
    seat_no: i32,
    price: i64,
    status: String,
    expires_at: OffsetDateTime,
}

impl ReservationRow {
    pub(crate) fn into_domain(self) -> Result<Reservation, RepositoryError> {
        Ok(Reservation {
            id: ReservationId::new(self.id).map_err(corrupt)?,
            user: UserId::from_uuid(self.user_id),
            concert_id: concert_id(self.concert_id)?,
            date: self.date,
            seat_no: stored_seat_no(self.seat_no)?,
            price: Price::from_stored(self.price),
            status: ReservationStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("reservation status {:?}", self.status)))?,
            expires_at: self.expires_at,
        })
    }
}

const HELD: &str = "HELD";

#[async_trait]
impl ReservationRepository for PgReservationRepository {
    async fn hold(&self, request: &HoldRequest) -> Result<HoldOutcome, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, Abort<HoldOutcome>, _>(async |conn| {
                        hold_in_transaction(conn, request).await
                    })
                    .await;
                match result {
                    Ok(row) => Ok(HoldOutcome::Held(row.into_domain()?)),
                    // The seat does not exist: nobody can hold it.
                    Err(Abort::Db(DieselError::DatabaseError(
                        DatabaseErrorKind::ForeignKeyViolation,
                        _,
                    ))) => Ok(HoldOutcome::SeatUnavailable),
                    Err(Abort::Outcome(outcome)) => Ok(outcome),
                    Err(Abort::Db(e)) => Err(from_diesel(e)),
                }
            })
            .await
    }

    async fn find(&self, id: ReservationId) -> Result<Option<Reservation>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<ReservationRow> = reservations::table
                    .find(id.get())
                    .select(ReservationRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                row.map(ReservationRow::into_domain).transpose()
            })
            .await
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<CancelOutcome, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let result = conn
                    .transaction::<_, Abort<Option<ReservationRow>>, _>(async |conn| {
                        // The guard: still the user's, still held, hold not run out at `now`.
                        let cancelled: Option<ReservationRow> = diesel::update(reservations::table)
                            .filter(reservations::id.eq(id.get()))
                            .filter(reservations::user_id.eq(user.get()))
                            .filter(reservations::status.eq(HELD))
                            .filter(reservations::expires_at.gt(now))
                            .set((
                                reservations::status.eq(ReservationStatus::Cancelled.as_str()),
                                reservations::updated_at.eq(now),
                            ))
                            .returning(ReservationRow::as_returning())
                            .cached()
                            .get_result(conn)
                            .await
                            .optional()?;
                        let Some(row) = cancelled else {
                            return Err(Abort::Outcome(None));
                        };
                        release_seat(conn, &row).await?;
                        Ok(Some(row))
                    })
                    .await;
                match settle(result)? {
                    Some(row) => Ok(CancelOutcome::Cancelled(row.into_domain()?)),
                    None => Ok(CancelOutcome::NotHeld),
                }
            })
            .await
    }

    async fn expire_lapsed(&self, now: OffsetDateTime, batch: u32) -> Result<u64, RepositoryError> {
        #[derive(QueryableByName)]
        struct Expired {
            #[diesel(sql_type = BigInt)]
            expired: i64,
        }
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                // One statement: lock a batch of lapsed holds (skipping rows another transaction
                // is paying, cancelling or expiring), mark them, and clear the seats that still
                // carry their claim. A seat already claimed by a newer hold is left alone.
                let row: Expired = diesel::sql_query(
                    "WITH lapsed AS ( \
                         SELECT id FROM reservations \
                         WHERE status = 'HELD' AND expires_at <= $1 \
                         ORDER BY expires_at \
                         LIMIT $2 \
                         FOR UPDATE SKIP LOCKED \
                     ), expired AS ( \
                         UPDATE reservations r SET status = 'EXPIRED', updated_at = $1 \
                         FROM lapsed WHERE r.id = lapsed.id \
                         RETURNING r.id, r.concert_id, r.date, r.seat_no \
                     ), released AS ( \
                         UPDATE seats s \
                         SET held_by_reservation = NULL, held_by_user = NULL, held_until = NULL \
                         FROM expired e \
                         WHERE s.concert_id = e.concert_id AND s.date = e.date \
                           AND s.seat_no = e.seat_no AND s.held_by_reservation = e.id \
                         RETURNING 1 \
                     ) \
                     SELECT count(*) AS expired FROM expired",
                )
                .bind::<Timestamptz, _>(now)
                .bind::<BigInt, _>(i64::from(batch))
                .get_result(&mut conn)
                .await
                .map_err(from_diesel)?;
                u64::try_from(row.expired).map_err(corrupt)
            })
            .await
    }

    async fn count_live_holds(&self, now: OffsetDateTime) -> Result<u64, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
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

/// The hold transaction; any `Err` rolls it back. Two statements after `BEGIN`: the user's lock,
/// then one statement (data-modifying CTEs) that counts, inserts, claims and tidies. They cannot
/// be one statement: under READ COMMITTED a statement reads the snapshot taken when it starts, so
/// the count must start after the lock is held to see every hold committed before it.
async fn hold_in_transaction(
    conn: &mut diesel_async::AsyncPgConnection,
    request: &HoldRequest,
) -> Result<ReservationRow, Abort<HoldOutcome>> {
    #[derive(QueryableByName)]
    struct Attempt {
        /// The user's holds live at `now`, before this one.
        #[diesel(sql_type = BigInt)]
        live: i64,
        /// The new reservation, when the limit allowed it.
        #[diesel(sql_type = Nullable<BigInt>)]
        reservation: Option<i64>,
        /// Its deadline as stored (microseconds).
        #[diesel(sql_type = Nullable<Timestamptz>)]
        expires_at: Option<OffsetDateTime>,
        /// Whether the seat was free and is now held by it.
        #[diesel(sql_type = Bool)]
        claimed: bool,
    }
    let user = request.user.get();
    let now = request.now;
    let seat_no = i32::from(request.seat_no.get());
    // 1. Serialise this user's holds across every instance, so the count below cannot be passed
    //    by two holds committing at once.
    diesel::sql_query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind::<Integer, _>(locks::USER_HOLDS)
        .bind::<SqlUuid, _>(user)
        .cached()
        .execute(conn)
        .await?;
    // 2. One statement, each step feeding the next:
    //    - `live`: the limit counts holds that are live at `now`; lapsed ones no longer count;
    //    - `inserted`: the reservation (so the seat can point at it), only under the limit;
    //    - `claimed`: the claim, one conditional write. Of any number of racing holds, exactly
    //      one matches; the others wait for its row lock, re-check the condition on the new row
    //      version and match nothing. A lapsed hold (`held_until <= now`) is simply overwritten:
    //      no sweeper is needed for the seat to be free again;
    //    - `tidied`: the lapsed hold we overwrote reads EXPIRED from now on. SKIP LOCKED: a row
    //      another transaction is paying, cancelling or sweeping is left to it (it will find the
    //      seat gone), so this can never wait on, or deadlock with, that transaction. (The new
    //      reservation is not in this statement's snapshot, so it cannot be picked.)
    //    An inserted reservation whose claim failed is rolled back with the transaction below.
    let attempt: Attempt = diesel::sql_query(
        "WITH live AS ( \
             SELECT count(*) AS n FROM reservations \
             WHERE user_id = $1 AND status = 'HELD' AND expires_at > $2 \
         ), inserted AS ( \
             INSERT INTO reservations (user_id, concert_id, date, seat_no, price, status, \
                                       expires_at, created_at, updated_at) \
             SELECT $1, $3, $4, $5, $6, 'HELD', $7, $2, $2 FROM live WHERE live.n < $8 \
             RETURNING id, expires_at \
         ), claimed AS ( \
             UPDATE seats SET held_by_reservation = inserted.id, held_by_user = $1, held_until = $7 \
             FROM inserted \
             WHERE seats.concert_id = $3 AND seats.date = $4 AND seats.seat_no = $5 \
               AND seats.sold_to_user IS NULL \
               AND (seats.held_until IS NULL OR seats.held_until <= $2) \
             RETURNING inserted.id \
         ), tidied AS ( \
             UPDATE reservations SET status = 'EXPIRED', updated_at = $2 \
             WHERE id IN ( \
                 SELECT id FROM reservations \
                 WHERE concert_id = $3 AND date = $4 AND seat_no = $5 \
                   AND status = 'HELD' AND expires_at <= $2 \
                   AND EXISTS (SELECT 1 FROM claimed) \
                 FOR UPDATE SKIP LOCKED) \
         ) \
         SELECT (SELECT n FROM live) AS live, (SELECT id FROM inserted) AS reservation, \
                (SELECT expires_at FROM inserted) AS expires_at, \
                EXISTS (SELECT 1 FROM claimed) AS claimed",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(request.concert.get())
    .bind::<diesel::sql_types::Date, _>(request.date)
    .bind::<Integer, _>(seat_no)
    .bind::<BigInt, _>(request.price.get())
    .bind::<Timestamptz, _>(request.until)
    .bind::<BigInt, _>(i64::from(request.limit.get()))
    .cached()
    .get_result(conn)
    .await?;
    let live = u32::try_from(attempt.live).unwrap_or(u32::MAX);
    if request.limit.allows_another(live).is_err() {
        return Err(Abort::Outcome(HoldOutcome::HoldLimitReached));
    }
    let (Some(id), Some(expires_at), true) =
        (attempt.reservation, attempt.expires_at, attempt.claimed)
    else {
        return Err(Abort::Outcome(HoldOutcome::SeatUnavailable));
    };
    Ok(ReservationRow {
        id,
        user_id: user,
        concert_id: request.concert.get(),
        date: request.date,
        seat_no,
        price: request.price.get(),
        status: HELD.to_owned(),
        expires_at,
    })
}

/// Clears the seat claim of a reservation that no longer holds it (only if it still does).
async fn release_seat(
    conn: &mut diesel_async::AsyncPgConnection,
    row: &ReservationRow,
) -> Result<usize, DieselError> {
    diesel::update(seats::table)
        .filter(seats::concert_id.eq(row.concert_id))
        .filter(seats::date.eq(row.date))
        .filter(seats::seat_no.eq(row.seat_no))
        .filter(seats::held_by_reservation.eq(row.id))
        .set((
            seats::held_by_reservation.eq(None::<i64>),
            seats::held_by_user.eq(None::<Uuid>),
            seats::held_until.eq(None::<OffsetDateTime>),
        ))
        .cached()
        .execute(conn)
        .await
}
