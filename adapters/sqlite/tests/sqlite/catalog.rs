//! `SqliteCatalogRepository`: a concert is created whole (every seat of every date), concerts and
//! dates are listed and found as stored, and a seat counts as free when it is neither sold nor
//! under a live hold (a hold lapses exactly at its deadline). Also the fixtures the catalog,
//! room and retention tests share.

use std::sync::Mutex;

use concert_application::ports::{CatalogRepository, DateAvailability, DateLookup};
use concert_domain::{
    ConcertId, ConcertTitle, NewConcert, NewConcertDate, Price, SeatClaim, SeatCount, UserId,
};
use concert_sqlite::{SqliteCatalogRepository, SqliteStore};
use diesel::connection::SimpleConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
use time::macros::{date, datetime};
use time::{Date, Duration, OffsetDateTime};

use crate::store::Scratch;

pub const NOW: OffsetDateTime = datetime!(2030-06-01 12:00 UTC);
pub const TODAY: Date = date!(2030 - 06 - 01);
pub const DATE: Date = date!(2030 - 06 - 10);
pub const HOLD_TTL: Duration = Duration::minutes(5);
pub const PRICE: i64 = 120_000;

pub fn user() -> UserId {
    UserId::from_uuid(uuid::Uuid::new_v4())
}

/// An instant as the store keeps it (microseconds since the epoch), for raw fixtures.
pub fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).expect("in range")
}

/// A concert called "Winter Gala" playing on `dates`, each with `seats` seats at `price`.
pub async fn concert_with(
    store: &SqliteStore,
    dates: &[Date],
    seats: i64,
    price: i64,
) -> ConcertId {
    let new = NewConcert::new(
        ConcertTitle::parse("Winter Gala").expect("title"),
        dates
            .iter()
            .map(|date| NewConcertDate {
                date: *date,
                price: Price::parse(price, 10_000_000).expect("price"),
                seats: SeatCount::parse(seats).expect("seat count"),
            })
            .collect(),
        TODAY,
    )
    .expect("a valid concert");
    SqliteCatalogRepository::new(store.clone())
        .create_concert(&new)
        .await
        .expect("concert created")
}

/// One date (`DATE`) with `seats` seats at [`PRICE`].
pub async fn concert(store: &SqliteStore, seats: i64) -> ConcertId {
    concert_with(store, &[DATE], seats, PRICE).await
}

/// A store on a file of its own, with a second, raw connection to the same file for what no
/// port of this part writes or shows (holds, sales, tickets, row counts).
pub struct Raw {
    pub store: SqliteStore,
    conn: Mutex<SqliteConnection>,
    _scratch: Scratch,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl Raw {
    pub async fn new() -> Self {
        let scratch = Scratch::new();
        let url = scratch.url("concert.db");
        let store = SqliteStore::open(&url).await.expect("open");
        let path = url.strip_prefix("sqlite://").expect("a file URL");
        let mut conn = SqliteConnection::establish(path).expect("raw connection");
        conn.batch_execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .expect("pragmas");
        Self {
            store,
            conn: Mutex::new(conn),
            _scratch: scratch,
        }
    }

    pub fn execute(&self, sql: &str) {
        self.conn
            .lock()
            .expect("raw connection")
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The one `count` column `sql` selects.
    pub fn count(&self, sql: &str) -> i64 {
        diesel::sql_query(sql)
            .get_result::<Count>(&mut *self.conn.lock().expect("raw connection"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .count
    }

    /// Holds seat `seat_no` of `concert` on `DATE` for `who` by reservation `reservation` until
    /// `until` (raw: the reservation port has its own tests).
    pub fn hold(
        &self,
        concert: ConcertId,
        seat_no: i64,
        who: UserId,
        reservation: i64,
        until: OffsetDateTime,
    ) {
        self.execute(&format!(
            "UPDATE seats SET held_by_reservation = {reservation}, held_by_user = '{}', \
                              held_until = {}, version = version + 1 \
             WHERE concert_id = {} AND date = '{DATE}' AND seat_no = {seat_no}",
            who.get(),
            micros(until),
            concert.get()
        ));
    }

    /// Sells seat `seat_no` of `concert` on `DATE` to `who` (raw).
    pub fn sell(&self, concert: ConcertId, seat_no: i64, who: UserId, reservation: i64) {
        self.execute(&format!(
            "UPDATE seats SET sold_to_user = '{}', sold_reservation = {reservation}, \
                              held_by_reservation = NULL, held_by_user = NULL, \
                              held_until = NULL, version = version + 1 \
             WHERE concert_id = {} AND date = '{DATE}' AND seat_no = {seat_no}",
            who.get(),
            concert.get()
        ));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_concert_creates_every_seat_of_every_date() {
    let raw = Raw::new().await;
    let catalog = SqliteCatalogRepository::new(raw.store.clone());
    assert!(!catalog.has_concerts().await.expect("has_concerts"));

    let (first, second) = (date!(2030 - 06 - 10), date!(2030 - 06 - 11));
    let id = concert_with(&raw.store, &[first, second], 30, 90_000).await;

    assert!(catalog.has_concerts().await.expect("has_concerts"));
    assert_eq!(raw.count("SELECT count(*) AS count FROM concert_dates"), 2);
    assert_eq!(
        raw.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE concert_id = {}",
            id.get()
        )),
        60
    );
    for day in [first, second] {
        let seats = catalog.seats_of(id, day).await.expect("seats");
        assert_eq!(
            seats.iter().map(|s| s.no().get()).collect::<Vec<_>>(),
            (1..=30).collect::<Vec<u16>>(),
            "seats are numbered 1..=N"
        );
        assert!(
            seats
                .iter()
                .all(|s| s.claim() == SeatClaim::Available && s.price().get() == 90_000)
        );
    }
    let second_concert = concert(&raw.store, 1).await;
    assert!(second_concert.get() > id.get());
}

#[tokio::test(flavor = "multi_thread")]
async fn concerts_are_listed_by_id_when_they_play_on_or_after_the_day() {
    let store = SqliteStore::in_memory().expect("store");
    let catalog = SqliteCatalogRepository::new(store.clone());
    let early = concert_with(&store, &[date!(2030 - 06 - 01)], 5, 1000).await;
    let late = concert_with(
        &store,
        &[date!(2030 - 06 - 01), date!(2030 - 07 - 01)],
        5,
        1000,
    )
    .await;

    let on_first = catalog
        .list_concerts(date!(2030 - 06 - 01))
        .await
        .expect("list");
    assert_eq!(
        on_first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![early, late]
    );
    assert_eq!(on_first[0].title.as_str(), "Winter Gala");

    let on_second = catalog
        .list_concerts(date!(2030 - 06 - 02))
        .await
        .expect("list");
    assert_eq!(
        on_second.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![late]
    );
    let after_all = catalog
        .list_concerts(date!(2030 - 07 - 02))
        .await
        .expect("list");
    assert!(after_all.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn available_dates_count_free_seats_and_tell_a_missing_concert() {
    let raw = Raw::new().await;
    let catalog = SqliteCatalogRepository::new(raw.store.clone());
    let full_day = DATE;
    let free_day = date!(2030 - 06 - 11);
    let past_day = date!(2030 - 06 - 01);
    let id = concert_with(&raw.store, &[past_day, full_day, free_day], 2, 1000).await;
    // Both seats of full_day are held by two users: the day has nothing left.
    raw.hold(id, 1, user(), 1, NOW + HOLD_TTL);
    raw.hold(id, 2, user(), 2, NOW + HOLD_TTL);

    let dates = catalog
        .available_dates(id, date!(2030 - 06 - 02), NOW)
        .await
        .expect("dates")
        .expect("the concert exists");
    assert_eq!(
        dates,
        vec![DateAvailability {
            date: free_day,
            available_seats: 2
        }]
    );
    // Once the holds lapse (exactly at their deadline), the full day is back with both seats.
    let dates = catalog
        .available_dates(id, TODAY, NOW + HOLD_TTL)
        .await
        .expect("dates")
        .expect("the concert exists");
    assert_eq!(
        dates
            .iter()
            .map(|d| (d.date, d.available_seats))
            .collect::<Vec<_>>(),
        vec![(past_day, 2), (full_day, 2), (free_day, 2)]
    );
    // A sold seat never comes back.
    raw.sell(id, 1, user(), 3);
    let dates = catalog
        .available_dates(id, DATE, NOW + Duration::days(1))
        .await
        .expect("dates")
        .expect("the concert exists");
    assert_eq!(
        dates
            .iter()
            .map(|d| (d.date, d.available_seats))
            .collect::<Vec<_>>(),
        vec![(full_day, 1), (free_day, 2)]
    );
    let missing = ConcertId::new(id.get() + 100).expect("id");
    assert_eq!(
        catalog
            .available_dates(missing, TODAY, NOW)
            .await
            .expect("dates"),
        None
    );
    // A concert with no date left from the day on is found, with no date.
    assert_eq!(
        catalog
            .available_dates(id, date!(2030 - 07 - 01), NOW)
            .await
            .expect("dates"),
        Some(Vec::new())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn find_date_tells_a_missing_concert_from_a_missing_date() {
    let store = SqliteStore::in_memory().expect("store");
    let id = concert_with(&store, &[DATE], 42, 77_000).await;
    let catalog = SqliteCatalogRepository::new(store.clone());

    for _ in 0..2 {
        // Twice: the second answer comes from what the first remembered.
        match catalog.find_date(id, DATE).await.expect("find") {
            DateLookup::Found(found) => {
                assert_eq!(found.concert_id, id);
                assert_eq!(found.date, DATE);
                assert_eq!(found.price.get(), 77_000);
                assert_eq!(found.seats.get(), 42);
            }
            other => panic!("expected the date, got {other:?}"),
        }
    }
    assert_eq!(
        catalog
            .find_date(id, date!(2030 - 06 - 11))
            .await
            .expect("find"),
        DateLookup::DateNotFound
    );
    let missing = ConcertId::new(id.get() + 1).expect("id");
    assert_eq!(
        catalog.find_date(missing, DATE).await.expect("find"),
        DateLookup::ConcertNotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seat_list_leaves_out_sold_seats_and_live_holds_but_not_lapsed_ones() {
    let raw = Raw::new().await;
    let catalog = SqliteCatalogRepository::new(raw.store.clone());
    let id = concert(&raw.store, 5).await;
    let (buyer, holder) = (user(), user());
    raw.sell(id, 2, buyer, 1);
    raw.hold(id, 4, holder, 2, NOW + HOLD_TTL);

    let seats = catalog.available_seats(id, DATE, NOW).await.expect("seats");
    assert_eq!(
        seats.iter().map(|s| s.seat_no.get()).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
    assert!(seats.iter().all(|s| s.price.get() == PRICE));

    // The hold on seat 4 lapses exactly at its deadline; the sold seat never comes back.
    let just_before = catalog
        .available_seats(id, DATE, NOW + HOLD_TTL - Duration::microseconds(1))
        .await
        .expect("seats");
    assert_eq!(just_before.len(), 3, "a hold is live until its deadline");
    let seats = catalog
        .available_seats(id, DATE, NOW + HOLD_TTL)
        .await
        .expect("seats");
    assert_eq!(
        seats.iter().map(|s| s.seat_no.get()).collect::<Vec<_>>(),
        vec![1, 3, 4, 5]
    );

    let none = catalog
        .available_seats(id, date!(2030 - 06 - 11), NOW)
        .await
        .expect("seats");
    assert!(none.is_empty());

    // The seat map shows every seat with its claim, the lapsed hold as stored.
    let map = catalog.seats_of(id, DATE).await.expect("seats");
    assert_eq!(map.len(), 5);
    assert_eq!(
        map[1].claim(),
        SeatClaim::Sold {
            reservation: concert_domain::ReservationId::new(1).expect("id"),
            owner: buyer
        }
    );
    assert_eq!(
        map[3].claim(),
        SeatClaim::Held {
            reservation: concert_domain::ReservationId::new(2).expect("id"),
            holder,
            until: NOW + HOLD_TTL
        }
    );
    assert!(
        [0, 2, 4]
            .iter()
            .all(|&i| map[i].claim() == SeatClaim::Available)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concerts_created_at_once_each_get_their_own_id_and_all_their_seats() {
    const CONCERTS: usize = 12;
    let raw = Raw::new().await;
    let handles: Vec<_> = (0..CONCERTS)
        .map(|_| {
            let store = raw.store.clone();
            tokio::spawn(async move { concert_with(&store, &[DATE, TODAY], 50, 1000).await })
        })
        .collect();
    let mut ids = Vec::new();
    for handle in handles {
        ids.push(handle.await.expect("joined").get());
    }
    ids.sort_unstable();
    assert_eq!(
        ids,
        (1..=i64::try_from(CONCERTS).expect("small")).collect::<Vec<_>>(),
        "ids drawn without gaps or repeats"
    );
    assert_eq!(
        raw.count("SELECT count(*) AS count FROM seats"),
        i64::try_from(CONCERTS * 2 * 50).expect("small")
    );
}
