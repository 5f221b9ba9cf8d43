//! `CatalogRepository`: concerts, their dates and the seats of each date.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use concert_application::ports::{
    AvailableSeat, CatalogRepository, DateAvailability, DateLookup, RepositoryError,
};
use concert_domain::{
    Concert, ConcertDate, ConcertId, ConcertTitle, NewConcert, Price, Seat, SeatNo,
};
use diesel::sql_types::{BigInt, Date as SqlDate, Integer, Nullable, Text};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl};
use time::{Date, OffsetDateTime};

use crate::columns::{SEAT_COLUMNS, SeatRow, concert_id, micros, seat_count};
use crate::counters::{IdTable, next_id};
use crate::error::{corrupt, from_diesel};
use crate::store::SqliteStore;

/// Concert dates already found, by (concert, date). A date row is written once, with its concert,
/// and never changed or deleted, so a date found once is the same for ever: `find_date` (every
/// seat list and every hold asks it) answers those from memory. Missing concerts and dates are
/// never remembered (they may be created later).
type KnownDates = Arc<RwLock<HashMap<(i64, Date), ConcertDate>>>;

/// Dates remembered at most; past that the memory starts over (it only saves a read).
const KNOWN_DATES_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct SqliteCatalogRepository {
    store: SqliteStore,
    known_dates: KnownDates,
}

impl SqliteCatalogRepository {
    pub fn new(store: SqliteStore) -> Self {
        Self {
            store,
            known_dates: KnownDates::default(),
        }
    }

    fn known_date(&self, concert: ConcertId, date: Date) -> Option<ConcertDate> {
        self.known_dates
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(concert.get(), date))
            .cloned()
    }

    fn remember_date(&self, found: &ConcertDate) {
        let mut known = self
            .known_dates
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= KNOWN_DATES_MAX {
            known.clear();
        }
        known.insert((found.concert_id.get(), found.date), found.clone());
    }
}

/// A seat is free at `?N` (its instant in microseconds) when it is not sold and carries no
/// hold, or only a lapsed one.
fn seat_is_free_at(now_param: &str) -> String {
    format!("s.sold_to_user IS NULL AND (s.held_until IS NULL OR s.held_until <= {now_param})")
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Integer)]
    found: i32,
}

fn concert_exists(
    conn: &mut diesel::SqliteConnection,
    concert: i64,
) -> Result<bool, diesel::result::Error> {
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM concerts WHERE id = ?1) AS found")
        .bind::<BigInt, _>(concert)
        .get_result::<Exists>(conn)
        .map(|row| row.found != 0)
}

#[async_trait]
impl CatalogRepository for SqliteCatalogRepository {
    async fn create_concert(&self, concert: &NewConcert) -> Result<ConcertId, RepositoryError> {
        let title = concert.title().as_str().to_owned();
        let dates: Vec<(Date, i64, i32)> = concert
            .dates()
            .iter()
            .map(|entry| (entry.date, entry.price.get(), i32::from(entry.seats.get())))
            .collect();
        let created_at = micros(OffsetDateTime::now_utc());
        let id = self
            .store
            .write(move |conn| {
                let id = next_id(conn, IdTable::Concerts).map_err(from_diesel)?;
                diesel::sql_query(
                    "INSERT INTO concerts (id, title, created_at) VALUES (?1, ?2, ?3)",
                )
                .bind::<BigInt, _>(id)
                .bind::<Text, _>(&title)
                .bind::<BigInt, _>(created_at)
                .execute(conn)
                .map_err(from_diesel)?;
                for (date, price, seats) in &dates {
                    diesel::sql_query(
                        "INSERT INTO concert_dates (concert_id, date, price, seat_count) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )
                    .bind::<BigInt, _>(id)
                    .bind::<SqlDate, _>(*date)
                    .bind::<BigInt, _>(*price)
                    .bind::<Integer, _>(*seats)
                    .execute(conn)
                    .map_err(from_diesel)?;
                    diesel::sql_query(
                        "INSERT INTO seats (concert_id, date, seat_no) \
                         WITH RECURSIVE n(seat_no) AS ( \
                             SELECT 1 UNION ALL SELECT seat_no + 1 FROM n WHERE seat_no < ?3) \
                         SELECT ?1, ?2, seat_no FROM n",
                    )
                    .bind::<BigInt, _>(id)
                    .bind::<SqlDate, _>(*date)
                    .bind::<Integer, _>(*seats)
                    .execute(conn)
                    .map_err(from_diesel)?;
                }
                Ok(id)
            })
            .await?;
        concert_id(id)
    }

    async fn has_concerts(&self) -> Result<bool, RepositoryError> {
        self.store
            .read(|conn| {
                diesel::sql_query("SELECT EXISTS (SELECT 1 FROM concerts) AS found")
                    .get_result::<Exists>(conn)
                    .map(|row| row.found != 0)
                    .map_err(from_diesel)
            })
            .await
    }

    async fn list_concerts(&self, from: Date) -> Result<Vec<Concert>, RepositoryError> {
        #[derive(QueryableByName)]
        struct ConcertRow {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            title: String,
        }
        let rows: Vec<ConcertRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(
                    "SELECT c.id, c.title FROM concerts c WHERE EXISTS ( \
                         SELECT 1 FROM concert_dates d WHERE d.concert_id = c.id AND d.date >= ?1) \
                     ORDER BY c.id",
                )
                .bind::<SqlDate, _>(from)
                .load(conn)
                .map_err(from_diesel)
            })
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Concert {
                    id: concert_id(row.id)?,
                    title: ConcertTitle::parse(&row.title).map_err(corrupt)?,
                })
            })
            .collect()
    }

    async fn available_dates(
        &self,
        concert: ConcertId,
        from: Date,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<DateAvailability>>, RepositoryError> {
        #[derive(QueryableByName)]
        struct DateRow {
            #[diesel(sql_type = SqlDate)]
            date: Date,
            #[diesel(sql_type = BigInt)]
            available: i64,
        }
        let id = concert.get();
        let now = micros(now);
        // Both statements on one snapshot (a read transaction).
        let rows: Option<Vec<DateRow>> = self
            .store
            .read(move |conn| {
                conn.transaction::<_, diesel::result::Error, _>(|conn| {
                    if !concert_exists(conn, id)? {
                        return Ok(None);
                    }
                    diesel::sql_query(format!(
                        "SELECT s.date AS date, count(*) AS available FROM seats s \
                         WHERE s.concert_id = ?1 AND s.date >= ?2 AND {} \
                         GROUP BY s.date ORDER BY s.date",
                        seat_is_free_at("?3")
                    ))
                    .bind::<BigInt, _>(id)
                    .bind::<SqlDate, _>(from)
                    .bind::<BigInt, _>(now)
                    .load(conn)
                    .map(Some)
                })
                .map_err(from_diesel)
            })
            .await?;
        rows.map(|rows| {
            rows.into_iter()
                .map(|row| {
                    Ok(DateAvailability {
                        date: row.date,
                        available_seats: u32::try_from(row.available).map_err(corrupt)?,
                    })
                })
                .collect()
        })
        .transpose()
    }

    async fn find_date(
        &self,
        concert: ConcertId,
        date: Date,
    ) -> Result<DateLookup, RepositoryError> {
        #[derive(QueryableByName)]
        struct DateRow {
            #[diesel(sql_type = Nullable<BigInt>)]
            price: Option<i64>,
            #[diesel(sql_type = Nullable<Integer>)]
            seat_count: Option<i32>,
        }
        if let Some(found) = self.known_date(concert, date) {
            return Ok(DateLookup::Found(found));
        }
        let id = concert.get();
        let row: Option<DateRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(
                    "SELECT d.price, d.seat_count FROM concerts c \
                     LEFT JOIN concert_dates d ON d.concert_id = c.id AND d.date = ?2 \
                     WHERE c.id = ?1",
                )
                .bind::<BigInt, _>(id)
                .bind::<SqlDate, _>(date)
                .get_result(conn)
                .optional()
                .map_err(from_diesel)
            })
            .await?;
        let lookup = match row {
            None => DateLookup::ConcertNotFound,
            Some(DateRow {
                price: Some(price),
                seat_count: Some(seats),
            }) => DateLookup::Found(ConcertDate {
                concert_id: concert,
                date,
                price: Price::from_stored(price),
                seats: seat_count(seats)?,
            }),
            Some(_) => DateLookup::DateNotFound,
        };
        if let DateLookup::Found(found) = &lookup {
            self.remember_date(found);
        }
        Ok(lookup)
    }

    async fn seats_of(&self, concert: ConcertId, date: Date) -> Result<Vec<Seat>, RepositoryError> {
        let id = concert.get();
        let rows: Vec<SeatRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(format!(
                    "SELECT {SEAT_COLUMNS} FROM seats s \
                     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
                     WHERE s.concert_id = ?1 AND s.date = ?2 ORDER BY s.seat_no"
                ))
                .bind::<BigInt, _>(id)
                .bind::<SqlDate, _>(date)
                .load(conn)
                .map_err(from_diesel)
            })
            .await?;
        rows.into_iter()
            .map(|row| row.into_domain().map(|seat| seat.value))
            .collect()
    }

    async fn available_seats(
        &self,
        concert: ConcertId,
        date: Date,
        now: OffsetDateTime,
    ) -> Result<Vec<AvailableSeat>, RepositoryError> {
        #[derive(QueryableByName)]
        struct FreeRow {
            #[diesel(sql_type = Integer)]
            seat_no: i32,
            #[diesel(sql_type = BigInt)]
            price: i64,
            #[diesel(sql_type = Integer)]
            seat_count: i32,
        }
        let id = concert.get();
        let now = micros(now);
        let rows: Vec<FreeRow> = self
            .store
            .read(move |conn| {
                diesel::sql_query(format!(
                    "SELECT s.seat_no, d.price, d.seat_count FROM seats s \
                     JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
                     WHERE s.concert_id = ?1 AND s.date = ?2 AND {} ORDER BY s.seat_no",
                    seat_is_free_at("?3")
                ))
                .bind::<BigInt, _>(id)
                .bind::<SqlDate, _>(date)
                .bind::<BigInt, _>(now)
                .load(conn)
                .map_err(from_diesel)
            })
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(AvailableSeat {
                    seat_no: SeatNo::parse(row.seat_no.into(), seat_count(row.seat_count)?)
                        .map_err(corrupt)?,
                    price: Price::from_stored(row.price),
                })
            })
            .collect()
    }
}
