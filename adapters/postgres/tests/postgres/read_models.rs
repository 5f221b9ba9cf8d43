//! The read models that filter or count in SQL for speed (available seats and dates, lapsed holds,
//! live holds) agree with the domain's rules (`Seat::is_available`, `Reservation::status_at`) on
//! random states of the seats and reservations, so the two cannot drift apart. The queue
//! snapshot's counts have their own randomized test in `queue.rs`.

use std::collections::BTreeSet;

use concert_application::ports::{CatalogRepository, ReservationRepository};
use concert_domain::{
    ConcertId, Price, Reservation, ReservationId, ReservationStatus, Seat, SeatClaim, SeatCount,
    SeatNo, SeatRef, UserId,
};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::support::{Ctx, DATE, NOW, PRICE, Random, TODAY, concert_with};

const SEATS: i64 = 12;
const ROUNDS: u64 = 30;

/// A deadline around `NOW`, exactly `NOW` now and then (the boundary the rules care about).
fn deadline(random: &mut Random) -> OffsetDateTime {
    match random.below(5) {
        0 => NOW,
        1 => NOW - Duration::seconds(1),
        2 => NOW + Duration::seconds(1),
        _ => NOW + Duration::seconds(i64::try_from(random.below(600)).unwrap_or(0) - 300),
    }
}

fn sql_time(at: OffsetDateTime) -> String {
    let text = at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    format!("'{text}'")
}

#[tokio::test(flavor = "multi_thread")]
async fn read_models_agree_with_the_domain_on_random_states() {
    let ctx = Ctx::new().await;
    let dates = [DATE, DATE + Duration::days(1)];
    let concert = concert_with(&ctx, &dates, SEATS, PRICE).await;
    let mut random = Random(0x5eed_2026_1130);
    let mut next_id = 1_i64;
    for round in 0..ROUNDS {
        ctx.execute(
            "UPDATE seats SET held_by_reservation = NULL, held_by_user = NULL, held_until = NULL, \
             sold_to_user = NULL, sold_reservation = NULL",
        )
        .await;
        ctx.execute("DELETE FROM reservations").await;
        let mut seats: Vec<(Date, Seat)> = Vec::new();
        let mut reservations: Vec<Reservation> = Vec::new();
        for date in dates {
            for no in 1..=SEATS {
                let seat_no =
                    SeatNo::parse(no, SeatCount::parse(SEATS).expect("count")).expect("no");
                let at = SeatRef {
                    concert_id: concert,
                    date,
                    seat_no,
                };
                // Now and then a reservation still stored HELD whose seat went to a later hold.
                if random.below(6) == 0 {
                    let stale = reservation(
                        &mut next_id,
                        at,
                        ReservationStatus::Held,
                        NOW - Duration::seconds(30),
                    );
                    insert(&ctx, &stale).await;
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
                        insert(&ctx, &held).await;
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
                        insert(&ctx, &sold).await;
                        let claim = SeatClaim::Sold {
                            reservation: sold.id(),
                            owner: sold.user(),
                        };
                        reservations.push(sold);
                        claim
                    }
                };
                set_claim(&ctx, concert, date, no, claim).await;
                seats.push((date, Seat::new(seat_no, Price::from_stored(PRICE), claim)));
            }
        }

        // Available seats of each date, and the dates that have any, by the domain's rule.
        let catalog = ctx.catalog();
        for date in dates {
            let by_sql: BTreeSet<u16> = catalog
                .available_seats(concert, date, NOW)
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
            assert_eq!(by_sql, by_rule, "round {round}: available seats of {date}");
            // The seat map's load: every seat of the date with its claim, in seat order.
            let loaded = catalog.seats_of(concert, date).await.expect("seat map");
            let stored: Vec<Seat> = seats
                .iter()
                .filter(|(on, _)| *on == date)
                .map(|(_, seat)| seat.clone())
                .collect();
            assert_eq!(loaded, stored, "round {round}: the seats of {date}");
        }
        let by_sql: Vec<(Date, u32)> = catalog
            .available_dates(concert, TODAY, NOW)
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
        assert_eq!(by_sql, by_rule, "round {round}: available dates");

        // Lapsed holds for the sweeper, and live holds for the gauge.
        let reservations_port = ctx.reservations();
        let by_sql: BTreeSet<i64> = reservations_port
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
        assert_eq!(by_sql, by_rule, "round {round}: lapsed holds");
        let live = reservations
            .iter()
            .filter(|r| r.status_at(NOW) == ReservationStatus::Held)
            .count();
        assert_eq!(
            reservations_port
                .count_live_holds(NOW)
                .await
                .expect("count"),
            u64::try_from(live).expect("count"),
            "round {round}: live holds"
        );
    }
    ctx.finish().await;
}

fn reservation(
    next_id: &mut i64,
    seat: SeatRef,
    status: ReservationStatus,
    expires_at: OffsetDateTime,
) -> Reservation {
    let id = ReservationId::new(*next_id).expect("id");
    *next_id += 1;
    Reservation::restore(
        id,
        UserId::from_uuid(Uuid::new_v4()),
        seat,
        Price::from_stored(PRICE),
        status,
        expires_at,
    )
}

async fn insert(ctx: &Ctx, r: &Reservation) {
    ctx.execute(&format!(
        "INSERT INTO reservations (id, user_id, concert_id, date, seat_no, price, status, \
         expires_at, created_at, updated_at) VALUES ({}, '{}', {}, '{}', {}, {}, '{}', {}, {}, {})",
        r.id().get(),
        r.user(),
        r.concert_id().get(),
        r.date(),
        r.seat_no().get(),
        r.price().get(),
        r.stored_status().as_str(),
        sql_time(r.expires_at()),
        sql_time(NOW),
        sql_time(NOW),
    ))
    .await;
}

async fn set_claim(ctx: &Ctx, concert: ConcertId, date: Date, no: i64, claim: SeatClaim) {
    let set = match claim {
        SeatClaim::Available => "held_by_reservation = NULL".to_owned(),
        SeatClaim::Held {
            reservation,
            holder,
            until,
        } => format!(
            "held_by_reservation = {}, held_by_user = '{holder}', held_until = {}",
            reservation.get(),
            sql_time(until)
        ),
        SeatClaim::Sold { reservation, owner } => format!(
            "sold_to_user = '{owner}', sold_reservation = {}",
            reservation.get()
        ),
    };
    ctx.execute(&format!(
        "UPDATE seats SET {set} WHERE concert_id = {} AND date = '{date}' AND seat_no = {no}",
        concert.get()
    ))
    .await;
}
