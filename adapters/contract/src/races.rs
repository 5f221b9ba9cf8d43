//! The booking and money use cases racing over one store (`HoldSeat`, `ChargePoints`,
//! `PayReservation`, `CancelReservation`), on two instances as two processes of the service
//! would be: [`RACERS`] tasks released together, and every assertion an exact count. The use
//! cases load, let the domain decide and write over the versions read, loading again after a
//! stale write: the store's compare-and-set is what keeps the counts exact.

use std::collections::HashSet;
use std::sync::Arc;

use concert_application::authorize_request::{ActiveUser, AuthorizeError};
use concert_application::cancel_reservation::CancelReservationError;
use concert_application::charge_points::ChargePointsCommand;
use concert_application::hold_seat::{HoldSeatCommand, HoldSeatError};
use concert_application::pay_reservation::{PayReservationCommand, PayReservationError};
use concert_application::ports::Version;
use concert_domain::seat::HoldRefused;
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{
    Balance, ConcertId, HoldDenied, HoldLimit, IdempotencyKey, LedgerKind, ReservationStatus,
    TicketNo, UserId,
};
use time::Duration;

use crate::fixtures::{
    DATE, HOLD_TTL, NOW, PRICE, SkewedClock, active_ticket, charge, claims, concert, finish, hold,
    instance, load_hold, race, seat_ref, shared, two_instances, user,
};
use crate::{RACERS, Store};

fn caller(user: UserId) -> ActiveUser {
    ActiveUser {
        user,
        ticket: TicketNo::new(1).expect("a ticket"),
    }
}

fn hold_command(concert: ConcertId, seat_no: i64) -> HoldSeatCommand {
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

/// How many payment debits `who`'s ledger has.
async fn payment_entries<S: Store>(store: &S, who: UserId) -> usize {
    store
        .wallets()
        .history(who, 100, None)
        .await
        .expect("history")
        .iter()
        .filter(|e| e.kind == LedgerKind::Payment)
        .count()
}

pub async fn racing_holds_of_one_seat_make_exactly_one_hold<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 10).await;
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;

    let outcomes = race(RACERS, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.hold_seat
                .execute(caller(user()), hold_command(gala, 7))
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
    assert_eq!((held.len(), refused), (1, RACERS - 1), "{outcomes:?}");
    assert_eq!(
        store.booking_counts().await.reservations,
        1,
        "no loser left a reservation"
    );
    let seat = load_hold(&*store, user(), seat_ref(gala, 7)).await.seat;
    assert_eq!(
        seat.version,
        Version::new(2),
        "the seat was written once, by the winner"
    );
    assert!(matches!(
        seat.value.claim(),
        concert_domain::SeatClaim::Held { reservation, until, .. }
            if reservation == held[0].id() && until == NOW + HOLD_TTL
    ));
    drop(apps);
    finish(store).await;
}

pub async fn racing_holds_of_one_user_stop_exactly_at_the_limit<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 50).await;
    let limit = HoldLimit::new(4).expect("a limit");
    let apps = two_instances(&*store, limit).await;
    let holder = user();

    let outcomes = race(RACERS, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.hold_seat
                .execute(caller(holder), hold_command(gala, i as i64 + 1))
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
    assert_eq!((held, limited), (4, RACERS - 4), "{outcomes:?}");
    assert_eq!(
        store
            .reservations()
            .count_live_holds(NOW)
            .await
            .expect("count"),
        4
    );
    let counts = store.booking_counts().await;
    assert_eq!(counts.reservations, 4);
    assert_eq!(
        counts.held_seats, 4,
        "no seat claimed without its reservation"
    );
    assert_eq!(
        load_hold(&*store, holder, seat_ref(gala, 50))
            .await
            .holds
            .version,
        Version::new(4),
        "the holder's version moved once per hold written"
    );
    drop(apps);
    finish(store).await;
}

pub async fn racing_charges_add_up_exactly_with_one_entry_each<S: Store>() {
    let store = shared::<S>().await;
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;
    let someone = user(); // a new user: the wallet itself is created under the race

    let outcomes = race(RACERS, |i| {
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
    let n = RACERS as i64;
    let expected: i64 = (1..=n).sum();
    let balances: HashSet<i64> = outcomes
        .iter()
        .map(|o| o.as_ref().expect("charged").get())
        .collect();
    assert_eq!(balances.len(), RACERS, "every charge saw its own balance");
    assert_eq!(balances.iter().max(), Some(&expected));
    let wallets = store.wallets();
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        expected
    );
    let history = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(history.len(), RACERS);
    assert!(ledger_is_consistent(
        &history,
        Balance::new(expected).expect("a balance")
    ));
    let mut amounts: Vec<i64> = history.iter().map(|e| e.amount).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, (1..=n).collect::<Vec<_>>(), "one entry per charge");
    assert_eq!(
        wallets.load(someone).await.expect("load").version,
        Version::new(n),
        "one version per charge written"
    );
    drop(apps);
    finish(store).await;
}

pub async fn racing_charges_with_skewed_clocks_never_date_history_backwards<S: Store>() {
    let store = shared::<S>().await;
    // Two instances on real clocks, the second 2 s behind the first (as machines' clocks drift).
    let apps = [
        instance(
            &*store,
            Arc::new(SkewedClock(Duration::ZERO)),
            HoldLimit::DEFAULT,
        )
        .await,
        instance(
            &*store,
            Arc::new(SkewedClock(Duration::seconds(-2))),
            HoldLimit::DEFAULT,
        )
        .await,
    ];
    let someone = user();

    let outcomes = race(RACERS, |i| {
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

    let wallets = store.wallets();
    let history = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(history.len(), RACERS);
    assert!(ledger_is_consistent(
        &history,
        Balance::new(10 * RACERS as i64).expect("a balance")
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
    drop(apps);
    finish(store).await;
}

pub async fn racing_payments_of_one_reservation_pay_once<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 10).await;
    let buyer = user();
    charge(&*store, buyer, 1_000_000, NOW, None).await;
    let ticket = active_ticket(&*store, buyer, NOW).await;
    let reservation = hold(&*store, buyer, seat_ref(gala, 5), NOW).await.id();
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;

    let outcomes = race(RACERS, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let command = PayReservationCommand {
            claims: claims(buyer, ticket),
            reservation,
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
    assert_eq!((paid, lost), (1, RACERS - 1), "{outcomes:?}");
    let counts = store.booking_counts().await;
    assert_eq!((counts.payments, counts.payment_entries), (1, 1));
    assert_eq!(
        store.wallets().balance(buyer).await.expect("balance").get(),
        1_000_000 - PRICE
    );
    drop(apps);
    finish(store).await;
}

pub async fn two_payments_with_a_balance_for_one_never_both_go_through<S: Store>() {
    const ROUNDS: usize = 5;
    let store = shared::<S>().await;
    let gala = concert(&*store, 2 * ROUNDS as i64).await;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS as i64 {
        let buyer = user();
        charge(&*store, buyer, 150_000, NOW, None).await; // one seat at 120,000
        let ticket = active_ticket(&*store, buyer, NOW).await;
        let first = hold(&*store, buyer, seat_ref(gala, 2 * round + 1), NOW).await;
        let second = hold(&*store, buyer, seat_ref(gala, 2 * round + 2), NOW).await;
        rounds.push((buyer, ticket, [first.id(), second.id()]));
    }
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;

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
            store.wallets().balance(buyer).await.expect("balance").get(),
            30_000
        );
        assert_eq!(payment_entries(&*store, buyer).await, 1);
    }
    let counts = store.booking_counts().await;
    assert_eq!(counts.payments, ROUNDS as i64);
    assert_eq!(counts.sold_seats, ROUNDS as i64);
    drop(apps);
    finish(store).await;
}

pub async fn the_same_key_in_parallel_takes_effect_once_and_every_answer_is_the_same<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 10).await;
    let someone = user();
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;
    let same_key = IdempotencyKey::parse("same-key").expect("a key");

    let outcomes = race(RACERS, |i| {
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
    assert_eq!(answers, vec![700; RACERS]);
    let wallets = store.wallets();
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 700);
    assert_eq!(
        wallets
            .history(someone, 100, None)
            .await
            .expect("history")
            .len(),
        1
    );
    assert_eq!(store.booking_counts().await.idempotency_keys, 1);
    drop(apps);

    // The same for a payment: one payment, one debit, one receipt for everyone.
    charge(&*store, someone, 1_000_000, NOW, None).await;
    let ticket = active_ticket(&*store, someone, NOW).await;
    let reservation = hold(&*store, someone, seat_ref(gala, 3), NOW).await.id();
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;
    let payment_key = IdempotencyKey::parse("same-payment-key").expect("a key");
    let outcomes = race(RACERS, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let command = PayReservationCommand {
            claims: claims(someone, ticket),
            reservation,
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
    let counts = store.booking_counts().await;
    assert_eq!((counts.payments, counts.idempotency_keys), (1, 2));
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        700 + 1_000_000 - PRICE
    );
    drop(apps);
    finish(store).await;
}

#[derive(Debug)]
enum Either {
    Pay(Result<(), PayReservationError>),
    Cancel(Result<(), CancelReservationError>),
}

pub async fn a_cancellation_racing_a_payment_of_the_same_hold_lets_exactly_one_through<S: Store>() {
    const ROUNDS: usize = 8;
    let store = shared::<S>().await;
    let gala = concert(&*store, ROUNDS as i64).await;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS as i64 {
        let buyer = user();
        charge(&*store, buyer, 1_000_000, NOW, None).await;
        let ticket = active_ticket(&*store, buyer, NOW).await;
        let reservation = hold(&*store, buyer, seat_ref(gala, round + 1), NOW).await;
        rounds.push((buyer, ticket, reservation.id()));
    }
    let apps = two_instances(&*store, HoldLimit::DEFAULT).await;

    for (buyer, ticket, reservation) in rounds {
        let outcomes = race(2, |i| {
            let app = Arc::clone(&apps[i % 2]);
            async move {
                if i == 0 {
                    Either::Pay(
                        app.pay_reservation
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
                        app.cancel_reservation
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
        let stored = store
            .reservations()
            .find(reservation)
            .await
            .expect("find")
            .expect("stored")
            .stored_status();
        let balance = store.wallets().balance(buyer).await.expect("balance").get();
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
    let counts = store.booking_counts().await;
    assert_eq!(counts.held_seats, 0);
    assert_eq!(counts.sold_seats, counts.payments);
    drop(apps);
    finish(store).await;
}
