//! `CatalogRepository`: a concert reads back as created, and what is on sale leaves out every
//! seat under a live hold or sold, at the instant asked about.

use concert_application::ports::{AvailableSeat, DateAvailability, DateLookup};
use concert_domain::{ConcertDate, ConcertId, SeatClaim, SeatCount};
use time::Duration;

use crate::Store;
use crate::fixtures::{
    DATE, HOLD_TTL, LATER_DATE, NOW, PRICE, TODAY, active_ticket, charge, concert, hold,
    new_concert, paid, price, seat_no, seat_ref, try_pay, user,
};

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

pub async fn dates_and_seats_on_sale_leave_out_live_holds_and_sales<S: Store>() {
    let store = S::fresh().await;
    let catalog = store.catalog();
    let gala = concert(&store, 3).await;
    let (holder, buyer) = (user(), user());
    hold(&store, holder, seat_ref(gala, 1), NOW).await;
    let sold = hold(&store, buyer, seat_ref(gala, 2), NOW).await;
    charge(&store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    try_pay(&store, sold.id(), buyer, paid(ticket), NOW)
        .await
        .expect("paid");

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
        on_sale(&[3])
    );
    assert_eq!(
        catalog
            .available_dates(gala, TODAY, NOW)
            .await
            .expect("dates"),
        Some(vec![DateAvailability {
            date: DATE,
            available_seats: 1
        }])
    );
    // The hold lapses at its deadline: the seat is on sale again, the sold one never.
    let lapsed = NOW + HOLD_TTL;
    assert_eq!(
        catalog
            .available_seats(gala, DATE, lapsed)
            .await
            .expect("seats"),
        on_sale(&[1, 3])
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
    store.finish().await;
}
