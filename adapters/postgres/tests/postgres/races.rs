//! Races with real parallelism through the real use cases (`HoldSeat`, `ChargePoints`,
//! `PayReservation`, `CancelReservation`) over the PostgreSQL adapters, split over two pools as
//! two instances of the service would be: many tasks released together by a barrier, each on its
//! own pooled connection, and every assertion an exact count. The use cases load, let the domain
//! decide and write with compare-and-set, loading again after a stale write.

use std::collections::HashSet;
use std::sync::Arc;

use concert_application::authorize_request::{ActiveUser, AuthorizeError};
use concert_application::cancel_reservation::CancelReservationError;
use concert_application::charge_points::ChargePointsCommand;
use concert_application::hold_seat::{HoldSeatCommand, HoldSeatError};
use concert_application::pay_reservation::{PayReservationCommand, PayReservationError};
use concert_application::ports::{ReservationRepository, WalletRepository};
use concert_application::services::Services;
use concert_domain::seat::HoldRefused;
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{Balance, HoldDenied, HoldLimit, IdempotencyKey, ReservationStatus, TicketNo};
use time::Duration;

use crate::support::{
    Ctx, DATE, NOW, PRICE, SkewedClock, active_ticket, charge, claims, concert, fixed, hold, race,
    user,
};

/// The use cases of two instances, one per pool, on a clock fixed at `NOW`.
fn two_instances(ctx: &Ctx, limit: HoldLimit) -> [Arc<Services>; 2] {
    [
        Arc::new(ctx.services(0, fixed(NOW), limit)),
        Arc::new(ctx.services(1, fixed(NOW), limit)),
    ]
}

/// Lets both instances see the tickets admitted so far.
async fn refresh(apps: &[Arc<Services>; 2]) {
    for app in apps {
        app.lines
            .default_line()
            .refresh(NOW)
            .await
            .expect("refresh");
    }
}

fn caller(user: concert_domain::UserId) -> ActiveUser {
    ActiveUser {
        user,
        ticket: TicketNo::new(1).expect("ticket"),
    }
}

fn hold_command(concert: concert_domain::ConcertId, seat_no: i64) -> HoldSeatCommand {
    HoldSeatCommand {
        concert,
        date: DATE,
        seat_no,
    }
}

/// A payment that lost to another one of the same payer: the reservation is no longer held, the
/// balance is short, or the token ended with the winner's payment.
fn lost_payment(error: &PayReservationError) -> bool {
    matches!(
        error,
        PayReservationError::NotHeld(_)
            | PayReservationError::InsufficientBalance { .. }
            | PayReservationError::Unauthorized(AuthorizeError::TokenExpired)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_holds_of_one_seat_make_exactly_one_hold() {
    let ctx = Ctx::with_two_pools(25).await;
    let id = concert(&ctx, 10).await;
    ctx.warm_up(25).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);

    let outcomes = race(50, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.hold_seat
                .execute(caller(user()), hold_command(id, 7))
                .await
        }
    })
    .await;

    let held: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let refused = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(HoldSeatError::Denied {
                    denied: HoldDenied::SeatUnavailable(HoldRefused::HeldByOther),
                    ..
                })
            )
        })
        .count();
    assert_eq!((held.len(), refused), (1, 49), "{outcomes:?}");
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        1,
        "no loser left a reservation"
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 7 AND version = 2 \
             AND held_by_reservation = {}",
            held[0].id().get()
        ))
        .await,
        1,
        "the seat was written once, by the winner"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_holds_of_one_user_stop_exactly_at_the_limit() {
    let ctx = Ctx::with_two_pools(10).await;
    let id = concert(&ctx, 50).await;
    ctx.warm_up(10).await;
    let limit = HoldLimit::new(4).expect("limit");
    let apps = two_instances(&ctx, limit);
    let holder = user();

    let outcomes = race(20, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.hold_seat
                .execute(caller(holder), hold_command(id, i as i64 + 1))
                .await
        }
    })
    .await;

    let held = outcomes.iter().filter(|o| o.is_ok()).count();
    let limited = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(HoldSeatError::Denied {
                    denied: HoldDenied::LimitReached(_),
                    ..
                })
            )
        })
        .count();
    assert_eq!((held, limited), (4, 16), "{outcomes:?}");
    assert_eq!(
        ctx.reservations()
            .count_live_holds(NOW)
            .await
            .expect("count"),
        4
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        4
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        4,
        "no seat claimed without its reservation"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_charges_add_up_exactly_with_one_entry_each() {
    let ctx = Ctx::with_two_pools(25).await;
    ctx.warm_up(25).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);
    let someone = user(); // a new user: the wallet itself is created under the race

    let outcomes = race(50, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.charge_points
                .execute(ChargePointsCommand {
                    user: someone,
                    amount: i as i64 + 1,
                    idempotency_key: None,
                })
                .await
        }
    })
    .await;

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let expected: i64 = (1..=50).sum();
    let balances: HashSet<i64> = outcomes
        .iter()
        .map(|o| o.as_ref().expect("charged").get())
        .collect();
    assert_eq!(balances.len(), 50, "every charge saw its own balance");
    assert_eq!(balances.iter().max(), Some(&expected));
    let wallets = ctx.wallets();
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        expected
    );
    let history = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(history.len(), 50);
    assert!(ledger_is_consistent(
        &history,
        Balance::new(expected).expect("balance")
    ));
    let mut amounts: Vec<i64> = history.iter().map(|e| e.amount).collect();
    amounts.sort_unstable();
    assert_eq!(
        amounts,
        (1..=50).collect::<Vec<_>>(),
        "one entry per charge"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_charges_on_two_instances_with_skewed_clocks_never_date_history_backwards() {
    let ctx = Ctx::with_two_pools(25).await;
    ctx.warm_up(25).await;
    // Two instances on real clocks, the second 2 s behind the first (as machines' clocks drift).
    let apps = [
        Arc::new(ctx.services(0, Arc::new(SkewedClock(Duration::ZERO)), HoldLimit::DEFAULT)),
        Arc::new(ctx.services(
            1,
            Arc::new(SkewedClock(Duration::seconds(-2))),
            HoldLimit::DEFAULT,
        )),
    ];
    let someone = user();

    let outcomes = race(50, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.charge_points
                .execute(ChargePointsCommand {
                    user: someone,
                    amount: 10,
                    idempotency_key: None,
                })
                .await
        }
    })
    .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    let wallets = ctx.wallets();
    let history = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(history.len(), 50);
    assert!(ledger_is_consistent(
        &history,
        Balance::new(500).expect("balance")
    ));
    for pair in history.windows(2) {
        assert!(
            pair[0].at >= pair[1].at,
            "entry {} at {} is earlier than the older entry {} at {}",
            pair[0].id.get(),
            pair[0].at,
            pair[1].id.get(),
            pair[1].at
        );
    }
    let wallet = wallets.load(someone).await.expect("load").value;
    assert_eq!(wallet.last_change_at(), Some(history[0].at));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_payments_of_one_reservation_pay_once() {
    let ctx = Ctx::with_two_pools(10).await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 5, NOW).await;
    ctx.warm_up(10).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);
    refresh(&apps).await;

    let outcomes = race(20, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let command = PayReservationCommand {
            claims: claims(buyer, ticket),
            reservation: reservation.id(),
            idempotency_key: None,
        };
        async move { app.pay_reservation.execute(command).await }
    })
    .await;

    let paid = outcomes.iter().filter(|o| o.is_ok()).count();
    let lost = outcomes
        .iter()
        .filter(|o| o.as_ref().err().is_some_and(lost_payment))
        .count();
    assert_eq!((paid, lost), (1, 19), "{outcomes:?}");
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM ledger_entries WHERE kind = 'PAYMENT'")
            .await,
        1
    );
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        1_000_000 - PRICE
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_payments_with_a_balance_for_one_never_both_go_through() {
    const ROUNDS: usize = 5;
    let ctx = Ctx::with_two_pools(4).await;
    let id = concert(&ctx, 2 * ROUNDS as i64).await;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let buyer = user();
        charge(&ctx, buyer, 150_000).await; // one seat at 120,000
        let ticket = active_ticket(&ctx, buyer).await;
        let first = hold(&ctx, buyer, id, 2 * round as i64 + 1, NOW).await;
        let second = hold(&ctx, buyer, id, 2 * round as i64 + 2, NOW).await;
        rounds.push((buyer, ticket, [first.id(), second.id()]));
    }
    ctx.warm_up(4).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);
    refresh(&apps).await;

    for (buyer, ticket, reservations) in rounds {
        let outcomes = race(2, |i| {
            let app = Arc::clone(&apps[i % 2]);
            let command = PayReservationCommand {
                claims: claims(buyer, ticket),
                reservation: reservations[i],
                idempotency_key: None,
            };
            async move { app.pay_reservation.execute(command).await }
        })
        .await;
        let paid = outcomes.iter().filter(|o| o.is_ok()).count();
        let lost = outcomes
            .iter()
            .filter(|o| o.as_ref().err().is_some_and(lost_payment))
            .count();
        assert_eq!((paid, lost), (1, 1), "{outcomes:?}");
        assert_eq!(
            ctx.wallets().balance(buyer).await.expect("balance").get(),
            30_000
        );
        assert_eq!(
            ctx.count(&format!(
                "SELECT count(*) AS count FROM ledger_entries WHERE user_id = '{buyer}' \
                 AND kind = 'PAYMENT'"
            ))
            .await,
            1
        );
    }
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM payments").await,
        ROUNDS as i64
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE sold_to_user IS NOT NULL")
            .await,
        ROUNDS as i64
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_in_parallel_takes_effect_once_and_every_answer_is_the_same() {
    let ctx = Ctx::with_two_pools(10).await;
    ctx.warm_up(10).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);
    let someone = user();
    let same_key = IdempotencyKey::parse("same-key").expect("key");

    let outcomes = race(20, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let command = ChargePointsCommand {
            user: someone,
            amount: 700,
            idempotency_key: Some(same_key.clone()),
        };
        async move { app.charge_points.execute(command).await }
    })
    .await;
    let answers: Vec<i64> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|b| b.get()).map_err(|e| format!("{e:?}")))
        .collect::<Result<_, _>>()
        .expect("every charge answered");
    assert_eq!(answers, vec![700; 20]);
    let wallets = ctx.wallets();
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 700);
    assert_eq!(
        wallets
            .history(someone, 100, None)
            .await
            .expect("history")
            .len(),
        1
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM idempotency_keys")
            .await,
        1
    );

    // The same for a payment: one payment, one debit, one receipt for everyone.
    let id = concert(&ctx, 10).await;
    charge(&ctx, someone, 1_000_000).await;
    let ticket = active_ticket(&ctx, someone).await;
    let reservation = hold(&ctx, someone, id, 3, NOW).await;
    refresh(&apps).await;
    let payment_key = IdempotencyKey::parse("same-payment-key").expect("key");
    let outcomes = race(20, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let command = PayReservationCommand {
            claims: claims(someone, ticket),
            reservation: reservation.id(),
            idempotency_key: Some(payment_key.clone()),
        };
        async move { app.pay_reservation.execute(command).await }
    })
    .await;
    let receipts: Vec<_> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|r| *r).map_err(|e| format!("{e:?}")))
        .collect::<Result<_, _>>()
        .expect("every payment answered");
    assert!(receipts.iter().all(|r| *r == receipts[0]), "{receipts:?}");
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        700 + 1_000_000 - PRICE
    );
    ctx.finish().await;
}

#[derive(Debug)]
enum Either {
    Pay(Result<(), PayReservationError>),
    Cancel(Result<(), CancelReservationError>),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_racing_a_payment_of_the_same_hold_lets_exactly_one_through() {
    const ROUNDS: usize = 8;
    let ctx = Ctx::with_two_pools(4).await;
    let id = concert(&ctx, ROUNDS as i64).await;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let buyer = user();
        charge(&ctx, buyer, 1_000_000).await;
        let ticket = active_ticket(&ctx, buyer).await;
        let reservation = hold(&ctx, buyer, id, round as i64 + 1, NOW).await;
        rounds.push((buyer, ticket, reservation.id()));
    }
    ctx.warm_up(4).await;
    let apps = two_instances(&ctx, HoldLimit::DEFAULT);
    refresh(&apps).await;

    for (buyer, ticket, reservation) in rounds {
        let (pay_app, cancel_app) = (Arc::clone(&apps[0]), Arc::clone(&apps[1]));
        let outcomes = race(2, |i| {
            let (pay_app, cancel_app) = (Arc::clone(&pay_app), Arc::clone(&cancel_app));
            async move {
                if i == 0 {
                    Either::Pay(
                        pay_app
                            .pay_reservation
                            .execute(PayReservationCommand {
                                claims: claims(buyer, ticket),
                                reservation,
                                idempotency_key: None,
                            })
                            .await
                            .map(|_| ()),
                    )
                } else {
                    Either::Cancel(
                        cancel_app
                            .cancel_reservation
                            .execute(
                                ActiveUser {
                                    user: buyer,
                                    ticket,
                                },
                                reservation,
                            )
                            .await
                            .map(|_| ()),
                    )
                }
            }
        })
        .await;
        let stored = ctx
            .reservations()
            .find(reservation)
            .await
            .expect("find")
            .expect("stored")
            .stored_status();
        let balance = ctx.wallets().balance(buyer).await.expect("balance").get();
        match (&outcomes[0], &outcomes[1]) {
            (Either::Pay(Ok(())), Either::Cancel(Err(CancelReservationError::NotHeld(_)))) => {
                assert_eq!(stored, ReservationStatus::Confirmed);
                assert_eq!(balance, 1_000_000 - PRICE);
            }
            (Either::Pay(Err(PayReservationError::NotHeld(_))), Either::Cancel(Ok(()))) => {
                assert_eq!(stored, ReservationStatus::Cancelled);
                assert_eq!(balance, 1_000_000);
            }
            other => panic!("exactly one must go through: {other:?}"),
        }
    }
    // Every seat is either sold with its payment or free with its cancellation.
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE sold_to_user IS NOT NULL")
            .await,
        ctx.count("SELECT count(*) AS count FROM payments").await
    );
    ctx.finish().await;
}
