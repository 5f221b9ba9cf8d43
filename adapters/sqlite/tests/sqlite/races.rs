//! Races with real parallelism over the SQLite adapters (the PostgreSQL adapter's `races.rs`
//! there): many tasks on the multi-threaded runtime released together by a barrier, and every
//! assertion an exact count. The store has one connection, so the writes are serialised, but the
//! tasks' loads and writes interleave: every decision is made on a state that may be stale by
//! its write, which the compare-and-set must catch. The real `ChargePoints` and
//! `CancelReservation` use cases run as they are; holds and payments run the use cases' loop
//! over the ports (`hold_seat`, `pay_reservation`: their use cases also need the catalog's and
//! the queue's ports).

use std::collections::HashSet;
use std::sync::Arc;

use concert_application::cancel_reservation::CancelReservationError;
use concert_application::charge_points::ChargePointsCommand;
use concert_application::ports::{PaymentReceipt, ReservationRepository, WalletRepository};
use concert_domain::booking::PaymentDenied;
use concert_domain::reservation::PayRefused;
use concert_domain::seat::HoldRefused;
use concert_domain::wallet::{DebitRefused, ledger_is_consistent};
use concert_domain::{Balance, HoldDenied, HoldLimit, IdempotencyKey, ReservationStatus};
use time::Duration;

use crate::booking_support::{
    Ctx, NOW, PRICE, PayRefusal, SkewedClock, active_ticket, caller, charge, concert, fixed, hold,
    hold_seat, key, pay_reservation, race, user,
};

/// A payment that lost to another one of the same payer: the reservation is no longer held, the
/// balance is short, or the ticket ended with the winner's payment.
fn lost_payment(refusal: &PayRefusal) -> bool {
    matches!(
        refusal,
        PayRefusal::TicketEnded
            | PayRefusal::Denied(
                PaymentDenied::Reservation(PayRefused::NotHeld)
                    | PaymentDenied::InsufficientBalance(DebitRefused::InsufficientBalance { .. })
            )
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_holds_of_one_seat_make_exactly_one_hold() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;

    let outcomes = race(50, |_| {
        let reservations = ctx.reservations();
        async move { hold_seat(&reservations, user(), id, 7, HoldLimit::DEFAULT, NOW).await }
    })
    .await;

    let held: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    let refused = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o,
                Err(HoldDenied::SeatUnavailable(HoldRefused::HeldByOther))
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
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_holds_of_one_user_stop_exactly_at_the_limit() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 50).await;
    let limit = HoldLimit::new(4).expect("limit");
    let holder = user();

    let outcomes = race(20, |i| {
        let reservations = ctx.reservations();
        async move { hold_seat(&reservations, holder, id, i as i64 + 1, limit, NOW).await }
    })
    .await;

    let held = outcomes.iter().filter(|o| o.is_ok()).count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Err(HoldDenied::LimitReached(_))))
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
    assert_eq!(
        ctx.count(&format!(
            "SELECT version AS count FROM user_holds WHERE user_id = '{holder}'"
        ))
        .await,
        4,
        "the holder's version moved once per hold written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_charges_add_up_exactly_with_one_entry_each() {
    let ctx = Ctx::new();
    let charge_points = Arc::new(ctx.charge_points(fixed(NOW)));
    let someone = user(); // a new user: the wallet itself is created under the race

    let outcomes = race(50, |i| {
        let charge_points = Arc::clone(&charge_points);
        async move {
            charge_points
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
    assert_eq!(
        wallets.load(someone).await.expect("load").version.get(),
        50,
        "one version per charge written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn simultaneous_charges_with_skewed_clocks_never_date_history_backwards() {
    let ctx = Ctx::new();
    // Two callers on real clocks, the second 2 s behind the first (as machines' clocks drift).
    let apps = [
        Arc::new(ctx.charge_points(Arc::new(SkewedClock(Duration::ZERO)))),
        Arc::new(ctx.charge_points(Arc::new(SkewedClock(Duration::seconds(-2))))),
    ];
    let someone = user();

    let outcomes = race(50, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.execute(ChargePointsCommand {
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
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_payments_of_one_reservation_pay_once() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 5, NOW).await.id();

    let outcomes = race(20, |_| {
        let ctx = ctx.clone();
        async move { pay_reservation(&ctx, buyer, ticket, reservation, None, NOW).await }
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
}

#[tokio::test(flavor = "multi_thread")]
async fn two_payments_with_a_balance_for_one_never_both_go_through() {
    const ROUNDS: usize = 5;
    let ctx = Ctx::new();
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

    for (buyer, ticket, reservations) in rounds {
        let outcomes = race(2, |i| {
            let ctx = ctx.clone();
            async move { pay_reservation(&ctx, buyer, ticket, reservations[i], None, NOW).await }
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
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_in_parallel_takes_effect_once_and_every_answer_is_the_same() {
    let ctx = Ctx::new();
    let charge_points = Arc::new(ctx.charge_points(fixed(NOW)));
    let someone = user();
    let same_key = IdempotencyKey::parse("same-key").expect("key");

    let outcomes = race(20, |_| {
        let charge_points = Arc::clone(&charge_points);
        let command = ChargePointsCommand {
            user: someone,
            amount: 700,
            idempotency_key: Some(same_key.clone()),
        };
        async move { charge_points.execute(command).await }
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
    let reservation = hold(&ctx, someone, id, 3, NOW).await.id();
    let outcomes = race(20, |_| {
        let ctx = ctx.clone();
        let payment_key = Some(key("same-payment-key"));
        async move { pay_reservation(&ctx, someone, ticket, reservation, payment_key, NOW).await }
    })
    .await;
    let receipts: Vec<PaymentReceipt> = outcomes
        .iter()
        .map(|o| o.clone().map_err(|e| format!("{e:?}")))
        .collect::<Result<_, _>>()
        .expect("every payment answered");
    assert!(receipts.iter().all(|r| *r == receipts[0]), "{receipts:?}");
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        700 + 1_000_000 - PRICE
    );
}

#[derive(Debug)]
enum Either {
    Pay(Result<PaymentReceipt, PayRefusal>),
    Cancel(Result<(), CancelReservationError>),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_racing_a_payment_of_the_same_hold_lets_exactly_one_through() {
    const ROUNDS: usize = 8;
    let ctx = Ctx::new();
    let id = concert(&ctx, ROUNDS as i64).await;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let buyer = user();
        charge(&ctx, buyer, 1_000_000).await;
        let ticket = active_ticket(&ctx, buyer).await;
        let reservation = hold(&ctx, buyer, id, round as i64 + 1, NOW).await;
        rounds.push((buyer, ticket, reservation.id()));
    }
    let cancel = Arc::new(ctx.cancel_reservation(fixed(NOW)));

    for (buyer, ticket, reservation) in rounds {
        let outcomes = race(2, |i| {
            let (ctx, cancel) = (ctx.clone(), Arc::clone(&cancel));
            async move {
                if i == 0 {
                    Either::Pay(pay_reservation(&ctx, buyer, ticket, reservation, None, NOW).await)
                } else {
                    Either::Cancel(
                        cancel
                            .execute(caller(buyer, ticket), reservation)
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
            (Either::Pay(Ok(_)), Either::Cancel(Err(CancelReservationError::NotHeld(_)))) => {
                assert_eq!(stored, ReservationStatus::Confirmed);
                assert_eq!(balance, 1_000_000 - PRICE);
            }
            (
                Either::Pay(Err(PayRefusal::Denied(PaymentDenied::Reservation(
                    PayRefused::NotHeld,
                )))),
                Either::Cancel(Ok(())),
            ) => {
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
}
