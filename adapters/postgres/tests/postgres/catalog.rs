//! `PgCatalogRepository`.

use concert_application::ports::{CatalogRepository, DateAvailability, DateLookup};
use concert_domain::ConcertId;
use time::macros::date;

use crate::support::{Ctx, DATE, NOW, TODAY, concert, concert_with, hold, user};

#[tokio::test(flavor = "multi_thread")]
async fn creating_a_concert_creates_every_seat_of_every_date() {
    let ctx = Ctx::new().await;
    let catalog = ctx.catalog();
    assert!(!catalog.has_concerts().await.expect("has_concerts"));

    let id = concert_with(
        &ctx,
        &[date!(2030 - 06 - 10), date!(2030 - 06 - 11)],
        30,
        90_000,
    )
    .await;

    assert!(catalog.has_concerts().await.expect("has_concerts"));
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM concert_dates")
            .await,
        2
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE concert_id = {}",
            id.get()
        ))
        .await,
        60
    );
    assert_eq!(
        ctx.count("SELECT max(seat_no)::bigint AS count FROM seats")
            .await,
        30,
        "seats are numbered 1..=N"
    );
    let second = concert(&ctx, 1).await;
    assert!(second.get() > id.get());
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concerts_are_listed_by_id_when_they_play_on_or_after_the_day() {
    let ctx = Ctx::new().await;
    let early = concert_with(&ctx, &[date!(2030 - 06 - 01)], 5, 1000).await;
    let late = concert_with(
        &ctx,
        &[date!(2030 - 06 - 01), date!(2030 - 07 - 01)],
        5,
        1000,
    )
    .await;

    let on_first = ctx
        .catalog()
        .list_concerts(date!(2030 - 06 - 01))
        .await
        .expect("list");
    assert_eq!(
        on_first.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![early, late]
    );
    assert_eq!(on_first[0].title.as_str(), "Winter Gala");

    let on_second = ctx
        .catalog()
        .list_concerts(date!(2030 - 06 - 02))
        .await
        .expect("list");
    assert_eq!(
        on_second.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![late]
    );

    let after_all = ctx
        .catalog()
        .list_concerts(date!(2030 - 07 - 02))
        .await
        .expect("list");
    assert!(after_all.is_empty());
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn available_dates_count_free_seats_and_tell_a_missing_concert() {
    let ctx = Ctx::new().await;
    let catalog = ctx.catalog();
    let full_day = date!(2030 - 06 - 10);
    let free_day = date!(2030 - 06 - 11);
    let past_day = date!(2030 - 06 - 01);
    let id = concert_with(&ctx, &[past_day, full_day, free_day], 2, 1000).await;
    // Both seats of full_day (DATE) are held by two users: the day has nothing left.
    assert_eq!(full_day, DATE);
    hold(&ctx, user(), id, 1, NOW).await;
    hold(&ctx, user(), id, 2, NOW).await;

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
    // Once the holds lapse, the full day is back with both seats.
    let later = NOW + crate::support::HOLD_TTL;
    let dates = catalog
        .available_dates(id, TODAY, later)
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
    let missing = ConcertId::new(id.get() + 100).expect("id");
    assert_eq!(
        catalog
            .available_dates(missing, TODAY, NOW)
            .await
            .expect("dates"),
        None
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn find_date_tells_a_missing_concert_from_a_missing_date() {
    let ctx = Ctx::new().await;
    let id = concert_with(&ctx, &[DATE], 42, 77_000).await;
    let catalog = ctx.catalog();

    match catalog.find_date(id, DATE).await.expect("find") {
        DateLookup::Found(found) => {
            assert_eq!(found.concert_id, id);
            assert_eq!(found.date, DATE);
            assert_eq!(found.price.get(), 77_000);
            assert_eq!(found.seats.get(), 42);
        }
        other => panic!("expected the date, got {other:?}"),
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
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn seat_list_leaves_out_sold_seats_and_live_holds_but_not_lapsed_ones() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 5).await;
    let buyer = user();
    crate::support::charge(&ctx, buyer, 1_000_000).await;
    let sold = hold(&ctx, buyer, id, 2, NOW).await;
    let ticket = crate::support::active_ticket(&ctx, buyer).await;
    crate::support::pay(&ctx, sold.id(), buyer, crate::support::active(ticket), NOW).await;
    hold(&ctx, user(), id, 4, NOW).await;

    let seats = ctx
        .catalog()
        .available_seats(id, DATE, NOW)
        .await
        .expect("seats");
    assert_eq!(
        seats.iter().map(|s| s.seat_no.get()).collect::<Vec<_>>(),
        vec![1, 3, 5]
    );
    assert!(seats.iter().all(|s| s.price.get() == 120_000));

    // The hold on seat 4 lapses exactly at its deadline; the sold seat never comes back.
    let lapsed = NOW + crate::support::HOLD_TTL;
    let seats = ctx
        .catalog()
        .available_seats(id, DATE, lapsed)
        .await
        .expect("seats");
    assert_eq!(
        seats.iter().map(|s| s.seat_no.get()).collect::<Vec<_>>(),
        vec![1, 3, 4, 5]
    );

    let none = ctx
        .catalog()
        .available_seats(id, date!(2030 - 06 - 11), NOW)
        .await
        .expect("seats");
    assert!(none.is_empty());
    ctx.finish().await;
}
