//! `CatalogRepository`: concerts, their dates and the seats of each date.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use concert_application::ports::{
    AvailableSeat, CatalogRepository, DateAvailability, DateLookup, RepositoryError,
};
use concert_domain::{
    Concert, ConcertDate, ConcertId, ConcertTitle, NewConcert, Price, Seat, SeatCount, SeatNo,
};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Date as SqlDate, Integer};
use diesel_async::{AsyncConnection, RunQueryDsl};
use time::{Date, OffsetDateTime};

use crate::cached::CachedExt;
use crate::columns::{SEAT_COLUMNS, SeatRow};
use crate::error::{corrupt, from_diesel};
use crate::pool::PgPool;
use crate::schema::{concert_dates, concerts, seats};

/// Concert dates already found, by (concert, date). A date row is written once, with its concert,
/// and never changed or deleted, so a date found once is the same for ever, on every instance:
/// `find_date` (every seat list and every hold asks it) answers those from memory. Missing
/// concerts and dates are never remembered (they may be created later).
type KnownDates = Arc<RwLock<HashMap<(i64, Date), ConcertDate>>>;

/// Dates remembered at most; past that the memory starts over (it only saves a read).
const KNOWN_DATES_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PgCatalogRepository {
    pool: PgPool,
    known_dates: KnownDates,
}

impl PgCatalogRepository {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
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

/// A seat is free at `now` when it is not sold and carries no hold, or only a lapsed one.
macro_rules! seat_is_free_at {
    ($now:expr) => {
        seats::sold_to_user
            .is_null()
            .and(seats::held_until.is_null().or(seats::held_until.le($now)))
    };
}

pub(crate) fn concert_id(raw: i64) -> Result<ConcertId, RepositoryError> {
    ConcertId::new(raw).map_err(corrupt)
}

pub(crate) fn seat_count(raw: i32) -> Result<SeatCount, RepositoryError> {
    SeatCount::parse(raw.into()).map_err(corrupt)
}

/// A stored seat number, valid by the schema's checks (1..=1000).
pub(crate) fn stored_seat_no(raw: i32) -> Result<SeatNo, RepositoryError> {
    SeatNo::parse(
        raw.into(),
        SeatCount::parse(SeatCount::MAX.into()).map_err(corrupt)?,
    )
    .map_err(corrupt)
}

/// Every seat of a date with its claim and its date's price.
static SEATS_OF: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {SEAT_COLUMNS} FROM seats s \
         JOIN concert_dates d ON d.concert_id = s.concert_id AND d.date = s.date \
         WHERE s.concert_id = $1 AND s.date = $2 ORDER BY s.seat_no"
    )
});

#[async_trait]
impl CatalogRepository for PgCatalogRepository {
    async fn create_concert(&self, concert: &NewConcert) -> Result<ConcertId, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let id = conn
                    .transaction::<i64, diesel::result::Error, _>(async |conn| {
                        let id: i64 = diesel::insert_into(concerts::table)
                            .values(concerts::title.eq(concert.title().as_str()))
                            .returning(concerts::id)
                            .get_result(conn)
                            .await?;
                        for entry in concert.dates() {
                            diesel::insert_into(concert_dates::table)
                                .values((
                                    concert_dates::concert_id.eq(id),
                                    concert_dates::date.eq(entry.date),
                                    concert_dates::price.eq(entry.price.get()),
                                    concert_dates::seat_count.eq(i32::from(entry.seats.get())),
                                ))
                                .execute(conn)
                                .await?;
                            diesel::sql_query(
                                "INSERT INTO seats (concert_id, date, seat_no) \
                                 SELECT $1, $2, n FROM generate_series(1, $3) AS n",
                            )
                            .bind::<BigInt, _>(id)
                            .bind::<SqlDate, _>(entry.date)
                            .bind::<Integer, _>(i32::from(entry.seats.get()))
                            .execute(conn)
                            .await?;
                        }
                        Ok(id)
                    })
                    .await
                    .map_err(from_diesel)?;
                concert_id(id)
            })
            .await
    }

    async fn has_concerts(&self) -> Result<bool, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                diesel::select(diesel::dsl::exists(concerts::table.select(concerts::id)))
                    .get_result(&mut conn)
                    .await
                    .map_err(from_diesel)
            })
            .await
    }

    async fn list_concerts(&self, from: Date) -> Result<Vec<Concert>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<(i64, String)> = concerts::table
                    .filter(diesel::dsl::exists(
                        concert_dates::table
                            .filter(concert_dates::concert_id.eq(concerts::id))
                            .filter(concert_dates::date.ge(from)),
                    ))
                    .select((concerts::id, concerts::title))
                    .order(concerts::id)
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|(id, title)| {
                        Ok(Concert {
                            id: concert_id(id)?,
                            title: ConcertTitle::parse(&title).map_err(corrupt)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn available_dates(
        &self,
        concert: ConcertId,
        from: Date,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<DateAvailability>>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let exists: bool = diesel::select(diesel::dsl::exists(
                    concerts::table.filter(concerts::id.eq(concert.get())),
                ))
                .get_result(&mut conn)
                .await
                .map_err(from_diesel)?;
                if !exists {
                    return Ok(None);
                }
                let rows: Vec<(Date, i64)> = seats::table
                    .filter(seats::concert_id.eq(concert.get()))
                    .filter(seats::date.ge(from))
                    .filter(seat_is_free_at!(now))
                    .group_by(seats::date)
                    .select((seats::date, diesel::dsl::count_star()))
                    .order(seats::date)
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|(date, count)| {
                        Ok(DateAvailability {
                            date,
                            available_seats: u32::try_from(count).map_err(corrupt)?,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            })
            .await
    }

    async fn find_date(
        &self,
        concert: ConcertId,
        date: Date,
    ) -> Result<DateLookup, RepositoryError> {
        if let Some(found) = self.known_date(concert, date) {
            return Ok(DateLookup::Found(found));
        }
        let lookup = self
            .pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let row: Option<(i64, Option<i64>, Option<i32>)> = concerts::table
                    .left_join(
                        concert_dates::table.on(concert_dates::concert_id
                            .eq(concerts::id)
                            .and(concert_dates::date.eq(date))),
                    )
                    .filter(concerts::id.eq(concert.get()))
                    .select((
                        concerts::id,
                        concert_dates::price.nullable(),
                        concert_dates::seat_count.nullable(),
                    ))
                    .first(&mut conn)
                    .await
                    .optional()
                    .map_err(from_diesel)?;
                Ok(match row {
                    None => DateLookup::ConcertNotFound,
                    Some((_, Some(price), Some(seats))) => DateLookup::Found(ConcertDate {
                        concert_id: concert,
                        date,
                        price: Price::from_stored(price),
                        seats: seat_count(seats)?,
                    }),
                    Some(_) => DateLookup::DateNotFound,
                })
            })
            .await?;
        if let DateLookup::Found(found) = &lookup {
            self.remember_date(found);
        }
        Ok(lookup)
    }

    async fn seats_of(&self, concert: ConcertId, date: Date) -> Result<Vec<Seat>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<SeatRow> = diesel::sql_query(SEATS_OF.as_str())
                    .bind::<BigInt, _>(concert.get())
                    .bind::<SqlDate, _>(date)
                    .cached()
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|row| row.into_domain().map(|seat| seat.value))
                    .collect()
            })
            .await
    }

    async fn available_seats(
        &self,
        concert: ConcertId,
        date: Date,
        now: OffsetDateTime,
    ) -> Result<Vec<AvailableSeat>, RepositoryError> {
        self.pool
            .run(async {
                let mut conn = self.pool.get().await?;
                let rows: Vec<(i32, i64, i32)> = seats::table
                    .inner_join(
                        concert_dates::table.on(concert_dates::concert_id
                            .eq(seats::concert_id)
                            .and(concert_dates::date.eq(seats::date))),
                    )
                    .filter(seats::concert_id.eq(concert.get()))
                    .filter(seats::date.eq(date))
                    .filter(seat_is_free_at!(now))
                    .select((
                        seats::seat_no,
                        concert_dates::price,
                        concert_dates::seat_count,
                    ))
                    .order(seats::seat_no)
                    .load(&mut conn)
                    .await
                    .map_err(from_diesel)?;
                rows.into_iter()
                    .map(|(seat_no, price, count)| {
                        Ok(AvailableSeat {
                            seat_no: SeatNo::parse(seat_no.into(), seat_count(count)?)
                                .map_err(corrupt)?,
                            price: Price::from_stored(price),
                        })
                    })
                    .collect()
            })
            .await
    }
}
