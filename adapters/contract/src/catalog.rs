//! `CatalogRepository`: a concert is created whole (every seat of every date) and reads back as
//! created, concerts and dates are listed and found as stored, and what is on sale leaves out
//! every seat sold or under a live hold at the instant asked about (a hold lapses exactly at its
//! deadline). The read models that filter and count in the store agree with the domain's rules
//! on random states.

use std::collections::BTreeSet;
use std::sync::Arc;

use concert_application::ports::{AvailableSeat, DateAvailability, DateLookup};
use concert_domain::{
    ConcertDate, ConcertId, Price, Reservation, ReservationId, ReservationStatus, Seat, SeatClaim,
    SeatCount, SeatNo, SeatRef,
};
use time::macros::date;
use time::{Date, Duration, OffsetDateTime};

use crate::fixtures::{
    DATE, HOLD_TTL, LATER_DATE, NOW, PRICE, TODAY, active_ticket, charge, concert, finish, hold,
    new_concert, paid, price, race, seat_no, seat_on, seat_ref, shared, try_pay, user,
};
use crate::{RACERS, Store};

/// A concert playing on `dates`, each with `seats` seats at `price_each`.
async fn concert_with<S: Store>(
    store: &S,
    dates: &[Date],
    seats: i64,
    price_each: i64,
) -> ConcertId {
    store
        .catalog()
        .create_concert(&new_concert(dates, seats, price_each))
        .await
        .expect("create_concert")
}

pub async fn a_fresh_store_is_ready_and_empty<S: Store>() {
    let store = S::fresh().await;
    store.readiness().check().await.expect("the store answers");
    let catalog = store.catalog();
    assert!(!catalog.has_concerts().await.expect("has_concerts"));
    assert_eq!(catalog.list_concerts(TODAY).await.expect("list"), vec![]);
    assert_eq!(
        catalog
            .find_date(ConcertId::new(1).expect("an id"), DATE)
            .await
            .expect("find_date"),
        DateLookup::ConcertNotFound
    );
    store.finish().await;
}

pub async fn a_concert_reads_back_with_its_dates_and_seats<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    let first = catalog
        .create_concert(&new_concert(&[DATE, LATER_DATE], 4, PRICE))
        .await
        .expect("create_concert");
    let second = catalog
        .create_concert(&new_concert(&[DATE], 2, 5_000))
        .await
        .expect("create_concert");
    assert_ne!(first, second, "each concert gets its own id");
    assert!(catalog.has_concerts().await.expect("has_concerts"));

    let listed: Vec<ConcertId> = catalog
        .list_concerts(TODAY)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![first.min(second), first.max(second)], "by id");
    let after_first_date: Vec<ConcertId> = catalog
        .list_concerts(DATE + Duration::days(1))
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        after_first_date,
        vec![first],
        "only concerts with a date from then on"
    );

    assert_eq!(
        catalog
            .find_date(first, LATER_DATE)
            .await
            .expect("find_date"),
        DateLookup::Found(ConcertDate {
            concert_id: first,
            date: LATER_DATE,
            price: price(PRICE),
            seats: SeatCount::parse(4).expect("count"),
        })
    );
    assert_eq!(
        catalog
            .find_date(second, LATER_DATE)
            .await
            .expect("find_date"),
        DateLookup::DateNotFound
    );
    let seats = catalog.seats_of(first, DATE).await.expect("seats_of");
    assert_eq!(
        seats
            .iter()
            .map(|s| (s.no().get(), s.price(), s.claim()))
            .collect::<Vec<_>>(),
        (1..=4)
            .map(|n| (n, price(PRICE), SeatClaim::Available))
            .collect::<Vec<_>>(),
        "every seat, free, in seat order"
    );
    store.finish().await;
}

pub async fn creating_a_concert_creates_every_seat_of_every_date<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    assert!(!catalog.has_concerts().await.expect("has_concerts"));
    let (first, second) = (DATE, DATE + Duration::days(1));
    let id = concert_with(&store, &[first, second], 30, 90_000).await;

    assert!(catalog.has_concerts().await.expect("has_concerts"));
    assert_eq!(
        store.catalog_counts().await,
        (2, 60),
        "two dates of 30 seats"
    );
    for day in [first, second] {
        let seats = catalog.seats_of(id, day).await.expect("seats_of");
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
    let next = concert(&store, 1).await;
    assert!(next.get() > id.get());
    store.finish().await;
}

pub async fn concerts_are_listed_by_id_when_they_play_on_or_after_the_day<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
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
    store.finish().await;
}

pub async fn available_dates_count_free_seats_and_tell_a_missing_concert<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    let full_day = DATE;
    let free_day = DATE + Duration::days(1);
    let past_day = TODAY;
    let id = concert_with(&store, &[past_day, full_day, free_day], 2, 1000).await;
    // Both seats of full_day are held by two users: the day has nothing left.
    hold(&store, user(), seat_ref(id, 1), NOW).await;
    hold(&store, user(), seat_ref(id, 2), NOW).await;

    let dates = catalog
        .available_dates(id, TODAY + Duration::days(1), NOW)
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
    let later = NOW + Duration::days(1);
    let buyer = user();
    let sold = hold(&store, buyer, seat_ref(id, 1), later).await;
    charge(&store, buyer, 1000, later, None).await;
    let ticket = active_ticket(&store, buyer, later).await;
    try_pay(&store, sold.id(), buyer, paid(ticket), later)
        .await
        .expect("paid");
    let dates = catalog
        .available_dates(id, DATE, later + Duration::days(1))
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
    let missing = ConcertId::new(id.get() + 100).expect("an id");
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
            .available_dates(id, free_day + Duration::days(1), NOW)
            .await
            .expect("dates"),
        Some(Vec::new())
    );
    store.finish().await;
}

pub async fn find_date_tells_a_missing_concert_from_a_missing_date<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    let id = concert_with(&store, &[DATE], 42, 77_000).await;
    for _ in 0..2 {
        // Twice: a store may answer the second from what it remembered of the first.
        assert_eq!(
            catalog.find_date(id, DATE).await.expect("find_date"),
            DateLookup::Found(ConcertDate {
                concert_id: id,
                date: DATE,
                price: price(77_000),
                seats: SeatCount::parse(42).expect("count"),
            })
        );
    }
    assert_eq!(
        catalog
            .find_date(id, DATE + Duration::days(1))
            .await
            .expect("find_date"),
        DateLookup::DateNotFound
    );
    let missing = ConcertId::new(id.get() + 1).expect("an id");
    assert_eq!(
        catalog.find_date(missing, DATE).await.expect("find_date"),
        DateLookup::ConcertNotFound
    );
    store.finish().await;
}

pub async fn seat_list_leaves_out_sold_seats_and_live_holds_but_not_lapsed_ones<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    let gala = concert(&store, 5).await;
    let (holder, buyer) = (user(), user());
    let sold = hold(&store, buyer, seat_ref(gala, 2), NOW).await;
    charge(&store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    try_pay(&store, sold.id(), buyer, paid(ticket), NOW)
        .await
        .expect("paid");
    let held = hold(&store, holder, seat_ref(gala, 4), NOW).await;

    let on_sale = |seats: &[i64]| -> Vec<AvailableSeat> {
        seats
            .iter()
            .map(|n| AvailableSeat {
                seat_no: seat_no(*n),
                price: price(PRICE),
            })
            .collect()
    };
    assert_eq!(
        catalog
            .available_seats(gala, DATE, NOW)
            .await
            .expect("seats"),
        on_sale(&[1, 3, 5])
    );
    assert_eq!(
        catalog
            .available_dates(gala, TODAY, NOW)
            .await
            .expect("dates"),
        Some(vec![DateAvailability {
            date: DATE,
            available_seats: 3
        }])
    );
    // The hold on seat 4 lapses exactly at its deadline; the sold seat never comes back.
    assert_eq!(
        catalog
            .available_seats(gala, DATE, NOW + HOLD_TTL - Duration::microseconds(1))
            .await
            .expect("seats"),
        on_sale(&[1, 3, 5]),
        "a hold is live until its deadline"
    );
    assert_eq!(
        catalog
            .available_seats(gala, DATE, NOW + HOLD_TTL)
            .await
            .expect("seats"),
        on_sale(&[1, 3, 4, 5])
    );
    assert_eq!(
        catalog
            .available_seats(gala, LATER_DATE, NOW)
            .await
            .expect("seats"),
        vec![],
        "a date the concert does not play"
    );
    assert_eq!(
        catalog
            .available_dates(gala, DATE + Duration::days(1), NOW)
            .await
            .expect("dates"),
        Some(vec![]),
        "only dates from then on"
    );
    assert_eq!(
        catalog
            .available_dates(ConcertId::new(gala.get() + 1).expect("an id"), TODAY, NOW)
            .await
            .expect("dates"),
        None,
        "a concert that does not exist"
    );

    // The seat map shows every seat with its claim, the lapsing hold as stored.
    let map = catalog.seats_of(gala, DATE).await.expect("seats_of");
    assert_eq!(
        map.iter().map(Seat::claim).collect::<Vec<_>>(),
        vec![
            SeatClaim::Available,
            SeatClaim::Sold {
                reservation: sold.id(),
                owner: buyer
            },
            SeatClaim::Available,
            SeatClaim::Held {
                reservation: held.id(),
                holder,
                until: NOW + HOLD_TTL
            },
            SeatClaim::Available,
        ]
    );
    store.finish().await;
}

pub async fn concerts_created_at_once_each_get_their_own_id_and_all_their_seats<S: Store>() {
    let store = shared::<S>().await;
    let ids = race(RACERS, |_| {
        let store = Arc::clone(&store);
        async move { concert_with(&*store, &[DATE, TODAY], 50, 1000).await }
    })
    .await;
    let distinct: BTreeSet<ConcertId> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), RACERS, "no id drawn twice: {ids:?}");
    let racers = u64::try_from(RACERS).expect("a few racers");
    assert_eq!(store.catalog_counts().await, (racers * 2, racers * 2 * 50));
    let catalog = store.catalog();
    for id in ids {
        for day in [TODAY, DATE] {
            assert_eq!(
                catalog.seats_of(id, day).await.expect("seats_of").len(),
                50,
                "concert {id:?} on {day}"
            );
        }
    }
    finish(store).await;
}

// ---- The read models against the domain's rules. ----

/// A small deterministic generator (xorshift64*): the same seed gives the same states every run,
/// so a failure replays.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// A deadline around `NOW`, exactly `NOW` now and then (the boundary the rules care about).
fn deadline(random: &mut Random) -> OffsetDateTime {
    match random.below(5) {
        0 => NOW,
        1 => NOW - Duration::seconds(1),
        2 => NOW + Duration::seconds(1),
        _ => NOW + Duration::seconds(i64::try_from(random.below(600)).unwrap_or(0) - 300),
    }
}

fn reservation(
    next_id: &mut i64,
    seat: SeatRef,
    status: ReservationStatus,
    expires_at: OffsetDateTime,
) -> Reservation {
    let id = ReservationId::new(*next_id).expect("an id");
    *next_id += 1;
    Reservation::restore(id, user(), seat, price(PRICE), status, expires_at)
}

/// The read models that filter or count in the store for speed (seats and dates on sale, the
/// seat map, lapsed holds, live holds) agree with the domain's rules (`Seat::is_available`,
/// `Reservation::status_at`) on random states of the seats and reservations, so the two cannot
/// drift apart.
pub async fn read_models_agree_with_the_domain_on_random_states<S: Store>() {
    const SEATS: i64 = 12;
    const ROUNDS: u64 = 30;
    let store = S::fresh().await;
    let dates = [DATE, DATE + Duration::days(1)];
    let gala = concert_with(&store, &dates, SEATS, PRICE).await;
    let mut random = Random(0x5eed_2026_1130);
    let mut next_id = 1_i64;
    for round in 0..ROUNDS {
        store.clear_bookings().await;
        let mut seats: Vec<(Date, Seat)> = Vec::new();
        let mut reservations: Vec<Reservation> = Vec::new();
        for date in dates {
            for no in 1..=SEATS {
                let number =
                    SeatNo::parse(no, SeatCount::parse(SEATS).expect("count")).expect("no");
                let at = seat_on(gala, date, no);
                // Now and then a reservation still stored HELD whose seat went to a later hold.
                if random.below(6) == 0 {
                    let stale = reservation(
                        &mut next_id,
                        at,
                        ReservationStatus::Held,
                        NOW - Duration::seconds(30),
                    );
                    store.insert_reservation(&stale, NOW).await;
                    reservations.push(stale);
                }
                let claim = match random.below(4) {
                    0 => SeatClaim::Available,
                    1 | 2 => {
                        let held = reservation(
                            &mut next_id,
                            at,
                            ReservationStatus::Held,
                            deadline(&mut random),
                        );
                        store.insert_reservation(&held, NOW).await;
                        let claim = SeatClaim::Held {
                            reservation: held.id(),
                            holder: held.user(),
                            until: held.expires_at(),
                        };
                        reservations.push(held);
                        claim
                    }
                    _ => {
                        let sold = reservation(
                            &mut next_id,
                            at,
                            ReservationStatus::Confirmed,
                            NOW - Duration::hours(1),
                        );
                        store.insert_reservation(&sold, NOW).await;
                        let claim = SeatClaim::Sold {
                            reservation: sold.id(),
                            owner: sold.user(),
                        };
                        reservations.push(sold);
                        claim
                    }
                };
                store.set_claim(at, claim).await;
                seats.push((date, Seat::new(number, Price::from_stored(PRICE), claim)));
            }
        }

        // Available seats of each date, and the dates that have any, by the domain's rule.
        let catalog = store.catalog();
        for date in dates {
            let by_store: BTreeSet<u16> = catalog
                .available_seats(gala, date, NOW)
                .await
                .expect("seats")
                .iter()
                .map(|seat| seat.seat_no.get())
                .collect();
            let by_rule: BTreeSet<u16> = seats
                .iter()
                .filter(|(on, seat)| *on == date && seat.is_available(NOW))
                .map(|(_, seat)| seat.no().get())
                .collect();
            assert_eq!(
                by_store, by_rule,
                "round {round}: available seats of {date}"
            );
            // The seat map's load: every seat of the date with its claim, in seat order.
            let loaded = catalog.seats_of(gala, date).await.expect("seat map");
            let stored: Vec<Seat> = seats
                .iter()
                .filter(|(on, _)| *on == date)
                .map(|(_, seat)| seat.clone())
                .collect();
            assert_eq!(loaded, stored, "round {round}: the seats of {date}");
        }
        let by_store: Vec<(Date, u32)> = catalog
            .available_dates(gala, TODAY, NOW)
            .await
            .expect("dates")
            .expect("the concert exists")
            .iter()
            .map(|found| (found.date, found.available_seats))
            .collect();
        let by_rule: Vec<(Date, u32)> = dates
            .iter()
            .map(|date| {
                let free = seats
                    .iter()
                    .filter(|(on, seat)| on == date && seat.is_available(NOW))
                    .count();
                (*date, u32::try_from(free).expect("count"))
            })
            .filter(|(_, free)| *free > 0)
            .collect();
        assert_eq!(by_store, by_rule, "round {round}: available dates");

        // Lapsed holds for the sweeper, and live holds for the gauge.
        let booked = store.reservations();
        let by_store: BTreeSet<i64> = booked
            .lapsed(NOW, 10_000)
            .await
            .expect("lapsed")
            .iter()
            .map(|booking| booking.reservation.value.id().get())
            .collect();
        let by_rule: BTreeSet<i64> = reservations
            .iter()
            .filter(|r| {
                r.stored_status() == ReservationStatus::Held
                    && r.status_at(NOW) == ReservationStatus::Expired
            })
            .map(|r| r.id().get())
            .collect();
        assert_eq!(by_store, by_rule, "round {round}: lapsed holds");
        let live = reservations
            .iter()
            .filter(|r| r.status_at(NOW) == ReservationStatus::Held)
            .count();
        assert_eq!(
            booked.count_live_holds(NOW).await.expect("count"),
            u64::try_from(live).expect("count"),
            "round {round}: live holds"
        );
    }
    store.finish().await;
}
