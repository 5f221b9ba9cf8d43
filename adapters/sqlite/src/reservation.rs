//! `ReservationRepository`: seat holds, their release (cancel, expiry) and the reads they need.
//!
//! Every write is one `BEGIN IMMEDIATE` transaction that re-reads the versions the decision was
//! made on, writes nothing (`Stale`) when one moved, and otherwise writes exactly what the domain
//! decided (docs/DATABASE.md §5.0–§5.3). Also here: the rows of a seat, a reservation and a
//! booking, and the drawing of ids from `counters`, which the payment and wallet writes share.

use async_trait::async_trait;
use concert_application::ports::{
    Booking, HoldState, HoldWrite, ReleaseWrite, RepositoryError, ReservationRepository, Version,
    Versioned, Written,
};
use concert_domain::{
    Price, Reservation, ReservationId, ReservationStatus, SeatClaim, SeatRef, UserHolds, UserId,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date as SqlDate, Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
use time::{Date, OffsetDateTime};

use crate::columns::{
    SEAT_COLUMNS, SeatRow, claim_columns, concert_id, instant, micros, stored_seat_no, user_id,
    user_text, version,
};
use crate::counters::{IdTable, next_id};
use crate::error::{corrupt, from_diesel, stale_on_unique_violation};
use crate::store::SqliteStore;

#[derive(Debug, Clone)]
pub struct SqliteReservationRepository {
    store: SqliteStore,
}

impl SqliteReservationRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self { store }
    }
}

const HELD: &str = ReservationStatus::Held.as_str();
const EXPIRED: &str = ReservationStatus::Expired.as_str();

fn parse_reservation_status(raw: &str) -> Result<ReservationStatus, RepositoryError> {
    ReservationStatus::parse(raw).ok_or_else(|| corrupt(format!("reservation status {raw:?}")))
}

/// Writes a seat's new claim over the version read and moves its version; `false` when the
/// seat is not at that version (nothing written).
pub(crate) fn write_claim(
    conn: &mut SqliteConnection,
    seat: SeatRef,
    read: Version,
    claim: SeatClaim,
) -> Result<bool, RepositoryError> {
    let (held_by, held_user, held_until, sold_to, sold_reservation) = claim_columns(claim);
    let written = diesel::sql_query(
        "UPDATE seats SET held_by_reservation = ?1, held_by_user = ?2, held_until = ?3, \
                          sold_to_user = ?4, sold_reservation = ?5, version = version + 1 \
         WHERE concert_id = ?6 AND date = ?7 AND seat_no = ?8 AND version = ?9",
    )
    .bind::<Nullable<BigInt>, _>(held_by)
    .bind::<Nullable<Text>, _>(held_user)
    .bind::<Nullable<BigInt>, _>(held_until)
    .bind::<Nullable<Text>, _>(sold_to)
    .bind::<Nullable<BigInt>, _>(sold_reservation)
    .bind::<BigInt, _>(seat.concert_id.get())
    .bind::<SqlDate, _>(seat.date)
    .bind::<Integer, _>(i32::from(seat.seat_no.get()))
    .bind::<BigInt, _>(read.get())
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(written == 1)
}

/// Writes a reservation's new status over the version read and moves its version; `false` when
/// the reservation is not at that version (nothing written).
pub(crate) fn write_status(
    conn: &mut SqliteConnection,
    id: ReservationId,
    read: Version,
    status: ReservationStatus,
    now: OffsetDateTime,
) -> Result<bool, RepositoryError> {
    let written = diesel::sql_query(
        "UPDATE reservations SET status = ?1, updated_at = ?2, version = version + 1 \
         WHERE id = ?3 AND version = ?4",
    )
    .bind::<Text, _>(status.as_str())
    .bind::<BigInt, _>(micros(now))
    .bind::<BigInt, _>(id.get())
    .bind::<BigInt, _>(read.get())
    .execute(conn)
    .map_err(from_diesel)?;
    Ok(written == 1)
}

// ---- Rows. ----

/// A reservation row, as selected by [`RESERVATION_COLUMNS`].
#[derive(Debug, QueryableByName)]
pub(crate) struct ReservationRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    concert_id: i64,
    #[diesel(sql_type = SqlDate)]
    date: Date,
    #[diesel(sql_type = Integer)]
    seat_no: i32,
    #[diesel(sql_type = BigInt)]
    price: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    expires_at: i64,
    #[diesel(sql_type = BigInt)]
    reservation_version: i64,
}

/// The select list of a [`ReservationRow`], for a query that names the reservation `r`.
pub(crate) const RESERVATION_COLUMNS: &str = "r.id, r.user_id, r.concert_id, r.date, r.seat_no, \
     r.price, r.status, r.expires_at, r.version AS reservation_version";

impl ReservationRow {
    pub(crate) fn into_domain(self) -> Result<Versioned<Reservation>, RepositoryError> {
        let reservation = Reservation::restore(
            ReservationId::new(self.id).map_err(corrupt)?,
            user_id(&self.user_id)?,
            SeatRef {
                concert_id: concert_id(self.concert_id)?,
                date: self.date,
                seat_no: stored_seat_no(self.seat_no)?,
            },
            Price::from_stored(self.price),
            parse_reservation_status(&self.status)?,
            instant(self.expires_at)?,
        );
        Ok(Versioned::new(
            reservation,
            version(self.reservation_version)?,
        ))
    }
}

/// A reservation joined with its seat and the seat's date.
#[derive(Debug, QueryableByName)]
pub(crate) struct BookingRow {
    #[diesel(embed)]
    reservation: ReservationRow,
    #[diesel(embed)]
    seat: SeatRow,
}

/// The `FROM` clause of a [`BookingRow`] query.
pub(crate) const BOOKING_FROM: &str = "reservations r \
     JOIN seats s ON s.concert_id = r.concert_id AND s.date = r.date AND s.seat_no = r.seat_no \
     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date";

impl BookingRow {
    pub(crate) fn into_domain(self) -> Result<Booking, RepositoryError> {
        Ok(Booking {
            reservation: self.reservation.into_domain()?,
            seat: self.seat.into_domain()?,
        })
    }
}

/// A reservation with its seat, each with its version, as stored now.
pub(crate) fn load_booking(
    conn: &mut SqliteConnection,
    id: ReservationId,
) -> Result<Option<Booking>, RepositoryError> {
    let row: Option<BookingRow> = diesel::sql_query(format!(
        "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS} FROM {BOOKING_FROM} WHERE r.id = ?1"
    ))
    .bind::<BigInt, _>(id.get())
    .get_result(conn)
    .optional()
    .map_err(from_diesel)?;
    row.map(BookingRow::into_domain).transpose()
}

/// The stored version of one row; `None` when the row is absent.
#[derive(QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = BigInt)]
    version: i64,
}

fn seat_version(
    conn: &mut SqliteConnection,
    seat: SeatRef,
) -> Result<Option<i64>, RepositoryError> {
    let row: Option<VersionRow> = diesel::sql_query(
        "SELECT version FROM seats WHERE concert_id = ?1 AND date = ?2 AND seat_no = ?3",
    )
    .bind::<BigInt, _>(seat.concert_id.get())
    .bind::<SqlDate, _>(seat.date)
    .bind::<Integer, _>(i32::from(seat.seat_no.get()))
    .get_result(conn)
    .optional()
    .map_err(from_diesel)?;
    Ok(row.map(|row| row.version))
}

fn holds_version(conn: &mut SqliteConnection, user: &str) -> Result<Option<i64>, RepositoryError> {
    let row: Option<VersionRow> =
        diesel::sql_query("SELECT version FROM user_holds WHERE user_id = ?1")
            .bind::<Text, _>(user)
            .get_result(conn)
            .optional()
            .map_err(from_diesel)?;
    Ok(row.map(|row| row.version))
}

/// Moves the user's hold version past the one read, as PostgreSQL's upsert does: a user never
/// seen gets a row at `read + 1`; a row at another version is a concurrent hold (`false`,
/// nothing written).
fn bump_holds(
    conn: &mut SqliteConnection,
    user: &str,
    read: Version,
) -> Result<bool, RepositoryError> {
    match holds_version(conn, user)? {
        None => {
            diesel::sql_query("INSERT INTO user_holds (user_id, version) VALUES (?1, ?2)")
                .bind::<Text, _>(user)
                .bind::<BigInt, _>(read.get() + 1)
                .execute(conn)
                .map_err(from_diesel)?;
            Ok(true)
        }
        Some(stored) if stored == read.get() => {
            diesel::sql_query("UPDATE user_holds SET version = version + 1 WHERE user_id = ?1")
                .bind::<Text, _>(user)
                .execute(conn)
                .map_err(from_diesel)?;
            Ok(true)
        }
        Some(_) => Ok(false),
    }
}

#[async_trait]
impl ReservationRepository for SqliteReservationRepository {
    /// One transaction reads the seat, the user's hold version and deadlines, and draws the new
    /// reservation's id from the `reservations` counter (as PostgreSQL's `nextval`: every load
    /// of an existing seat sets a new id aside, so two decisions never name the same id).
    async fn load_hold(
        &self,
        user: UserId,
        seat: SeatRef,
    ) -> Result<Option<HoldState>, RepositoryError> {
        #[derive(QueryableByName)]
        struct Deadline {
            #[diesel(sql_type = BigInt)]
            expires_at: i64,
        }
        self.store
            .write(move |conn| {
                let row: Option<SeatRow> = diesel::sql_query(format!(
                    "SELECT {SEAT_COLUMNS} FROM seats s \
                     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
                     WHERE s.concert_id = ?1 AND s.date = ?2 AND s.seat_no = ?3"
                ))
                .bind::<BigInt, _>(seat.concert_id.get())
                .bind::<SqlDate, _>(seat.date)
                .bind::<Integer, _>(i32::from(seat.seat_no.get()))
                .get_result(conn)
                .optional()
                .map_err(from_diesel)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let holder = user_text(user);
                let holds_version = match holds_version(conn, &holder)? {
                    None => Version::ABSENT,
                    Some(raw) => version(raw)?,
                };
                let deadlines: Vec<Deadline> = diesel::sql_query(
                    "SELECT expires_at FROM reservations WHERE user_id = ?1 AND status = ?2",
                )
                .bind::<Text, _>(&holder)
                .bind::<Text, _>(HELD)
                .load(conn)
                .map_err(from_diesel)?;
                let deadlines = deadlines
                    .into_iter()
                    .map(|d| instant(d.expires_at))
                    .collect::<Result<Vec<_>, _>>()?;
                let next = next_id(conn, IdTable::Reservations).map_err(from_diesel)?;
                Ok(Some(HoldState {
                    seat: row.into_domain()?,
                    holds: Versioned::new(UserHolds::new(deadlines), holds_version),
                    next_reservation: ReservationId::new(next).map_err(corrupt)?,
                }))
            })
            .await
    }

    /// The seat at the version read, then the user's holds at the version read; only then the
    /// seat's new claim, the reservation and the replaced (lapsed) reservation written `EXPIRED`
    /// (the seat's unchanged version proves that reservation unchanged too, as on PostgreSQL).
    async fn save_hold(&self, write: &HoldWrite) -> Result<Written<()>, RepositoryError> {
        let write = write.clone();
        let written = self
            .store
            .write(move |conn| {
                let reservation = &write.granted.reservation;
                let seat = reservation.seat();
                if seat_version(conn, seat)? != Some(write.seat.version.get()) {
                    return Ok(Written::Stale);
                }
                let holder = user_text(reservation.user());
                if !bump_holds(conn, &holder, write.holds_version)? {
                    return Ok(Written::Stale);
                }
                if !write_claim(conn, seat, write.seat.version, write.seat.value.claim())? {
                    return Err(RepositoryError::Unexpected(
                        "the seat moved inside its own write transaction".into(),
                    ));
                }
                diesel::sql_query(
                    "INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, \
                                               status, expires_at, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                )
                .bind::<BigInt, _>(reservation.id().get())
                .bind::<Text, _>(&holder)
                .bind::<BigInt, _>(seat.concert_id.get())
                .bind::<SqlDate, _>(seat.date)
                .bind::<Integer, _>(i32::from(seat.seat_no.get()))
                .bind::<BigInt, _>(reservation.price().get())
                .bind::<Text, _>(reservation.stored_status().as_str())
                .bind::<BigInt, _>(micros(reservation.expires_at()))
                .bind::<BigInt, _>(micros(write.now))
                .execute(conn)
                .map_err(from_diesel)?;
                if let Some(replaced) = write.granted.replaced {
                    diesel::sql_query(
                        "UPDATE reservations SET status = ?1, updated_at = ?2, \
                                                 version = version + 1 \
                         WHERE id = ?3",
                    )
                    .bind::<Text, _>(EXPIRED)
                    .bind::<BigInt, _>(micros(write.now))
                    .bind::<BigInt, _>(replaced.get())
                    .execute(conn)
                    .map_err(from_diesel)?;
                }
                Ok(Written::Done(()))
            })
            .await;
        // An id taken meanwhile rolled the whole write back: a lost race, as on PostgreSQL.
        stale_on_unique_violation(written)
    }

    async fn find(&self, id: ReservationId) -> Result<Option<Reservation>, RepositoryError> {
        self.store
            .read(move |conn| {
                let row: Option<ReservationRow> = diesel::sql_query(format!(
                    "SELECT {RESERVATION_COLUMNS} FROM reservations r WHERE r.id = ?1"
                ))
                .bind::<BigInt, _>(id.get())
                .get_result(conn)
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
        self.store.read(move |conn| load_booking(conn, id)).await
    }

    async fn lapsed(
        &self,
        now: OffsetDateTime,
        batch: u32,
    ) -> Result<Vec<Booking>, RepositoryError> {
        self.store
            .read(move |conn| {
                // A read model: the domain decides each expiry (`booking::expire`).
                let rows: Vec<BookingRow> = diesel::sql_query(format!(
                    "SELECT {RESERVATION_COLUMNS}, {SEAT_COLUMNS} FROM {BOOKING_FROM} \
                     WHERE r.status = ?1 AND r.expires_at <= ?2 \
                     ORDER BY r.expires_at, r.id LIMIT ?3"
                ))
                .bind::<Text, _>(HELD)
                .bind::<BigInt, _>(micros(now))
                .bind::<BigInt, _>(i64::from(batch))
                .load(conn)
                .map_err(from_diesel)?;
                rows.into_iter().map(BookingRow::into_domain).collect()
            })
            .await
    }

    /// Each release in a transaction of its own: the reservation (and, when the decision freed
    /// it, the seat) at the versions read, then the new status and the seat's new claim.
    async fn save_releases(&self, writes: &[ReleaseWrite]) -> Result<u64, RepositoryError> {
        let mut count = 0;
        for write in writes {
            let write = write.clone();
            let written = self
                .store
                .write(move |conn| {
                    let reservation = &write.reservation;
                    let Some(current) = load_booking(conn, reservation.value.id())? else {
                        return Ok(Written::Stale);
                    };
                    if current.reservation.version != reservation.version {
                        return Ok(Written::Stale);
                    }
                    if let Some(seat) = &write.seat
                        && current.seat.version != seat.version
                    {
                        return Ok(Written::Stale);
                    }
                    if !write_status(
                        conn,
                        reservation.value.id(),
                        reservation.version,
                        reservation.value.stored_status(),
                        write.now,
                    )? {
                        return Ok(Written::Stale);
                    }
                    if let Some(seat) = &write.seat
                        && !write_claim(
                            conn,
                            current.reservation.value.seat(),
                            seat.version,
                            seat.value.claim(),
                        )?
                    {
                        return Err(RepositoryError::Unexpected(
                            "the seat moved inside its own write transaction".into(),
                        ));
                    }
                    Ok(Written::Done(()))
                })
                .await;
            if let Written::Done(()) = stale_on_unique_violation(written)? {
                count += 1;
            }
        }
        Ok(count)
    }

    async fn count_live_holds(&self, now: OffsetDateTime) -> Result<u64, RepositoryError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            count: i64,
        }
        self.store
            .read(move |conn| {
                // A read model for the `seat_holds_live` gauge.
                let row: Count = diesel::sql_query(
                    "SELECT count(*) AS count FROM reservations \
                     WHERE status = ?1 AND expires_at > ?2",
                )
                .bind::<Text, _>(HELD)
                .bind::<BigInt, _>(micros(now))
                .get_result(conn)
                .map_err(from_diesel)?;
                u64::try_from(row.count).map_err(corrupt)
            })
            .await
    }
}
