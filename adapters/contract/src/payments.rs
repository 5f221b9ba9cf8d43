//! `PaymentRepository`: a payment confirms the reservation, sells the seat, debits the wallet
//! with one ledger entry, records the payment and ends the payer's ticket in one atomic step,
//! over the versions read: exact under races, nothing written when stale.

use std::sync::Arc;

use concert_application::ports::{ReleaseWrite, TicketEnd, Versioned, Written};
use concert_domain::booking;
use concert_domain::reservation::PayRefused;
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{
    EndReason, LedgerKind, PaymentDenied, ReservationStatus, SeatClaim, TicketStatus,
};

use crate::fixtures::{
    HOLD_TTL, NOW, PRICE, active_ticket, charge, concert, decide_payment, finish, hold, load_hold,
    paid, price, race, seat_ref, shared, try_pay, user,
};
use crate::{RACERS, Store};

pub async fn a_payment_is_atomic_and_exact<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 2).await;
    let who = user();
    charge(&store, who, 200_000, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;

    let write = decide_payment(&store, held.id(), who, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let receipt = match store.payments().save(&write).await.expect("save") {
        Written::Done(receipt) => receipt,
        Written::Stale => panic!("nothing moved since the load"),
    };
    assert_eq!(receipt.reservation_id, held.id());
    assert_eq!(receipt.amount, price(PRICE));
    assert_eq!(receipt.balance.get(), 200_000 - PRICE);
    assert_eq!(receipt.paid_at, NOW);

    let reservations = store.reservations();
    let stored = reservations
        .find(held.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(stored.stored_status(), ReservationStatus::Confirmed);
    assert_eq!(
        load_hold(&store, user(), seat_ref(gala, 1))
            .await
            .seat
            .value
            .claim(),
        SeatClaim::Sold {
            reservation: held.id(),
            owner: who
        }
    );
    let wallets = store.wallets();
    let balance = wallets.balance(who).await.expect("balance");
    assert_eq!(balance.get(), 200_000 - PRICE);
    let history = wallets.history(who, 10, None).await.expect("history");
    assert_eq!(
        history
            .iter()
            .map(|e| (e.kind, e.amount))
            .collect::<Vec<_>>(),
        vec![(LedgerKind::Payment, -PRICE), (LedgerKind::Charge, 200_000)]
    );
    assert!(ledger_is_consistent(&history, balance));
    assert_eq!(reservations.count_live_holds(NOW).await.expect("count"), 0);
    let ended = store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        ended.stored_status(),
        TicketStatus::Expired,
        "the payment ends the ticket"
    );
    assert_eq!(ended.end_reason(), Some(EndReason::Paid));
    assert_eq!(
        store
            .catalog()
            .available_seats(gala, seat_ref(gala, 1).date, NOW + HOLD_TTL)
            .await
            .expect("seats")
            .len(),
        1,
        "sold for good"
    );
    store.finish().await;
}

pub async fn a_payment_ends_the_ticket_only_as_read<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, PRICE, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    // The user leaves the line between the payment's read and its write.
    let write = decide_payment(&store, held.id(), who, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let left = TicketEnd {
        ticket,
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(
        store.queue().end(&left, NOW).await.expect("end"),
        Written::Done(())
    );

    assert!(
        matches!(
            store.payments().save(&write).await.expect("save"),
            Written::Done(_)
        ),
        "an ended ticket never blocks the sale"
    );
    let ended = store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        ended.end_reason(),
        Some(EndReason::Left),
        "the first end stays"
    );
    assert_eq!(
        store.wallets().balance(who).await.expect("balance").get(),
        0
    );
    store.finish().await;
}

pub async fn a_payment_over_moved_state_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, 300_000, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    let write = decide_payment(&store, held.id(), who, paid(ticket), NOW, None)
        .await
        .expect("payable");
    // A charge moves the wallet meanwhile.
    charge(&store, who, 1, NOW, None).await;

    assert_eq!(
        store.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    let stored = store
        .reservations()
        .find(held.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(stored.stored_status(), ReservationStatus::Held);
    assert!(matches!(
        load_hold(&store, who, seat_ref(gala, 1))
            .await
            .seat
            .value
            .claim(),
        SeatClaim::Held { .. }
    ));
    let wallets = store.wallets();
    assert_eq!(wallets.balance(who).await.expect("balance").get(), 300_001);
    assert_eq!(
        wallets.history(who, 10, None).await.expect("history").len(),
        2
    );
    let live = store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        live.stored_status(),
        TicketStatus::Active,
        "the ticket lives on"
    );

    // Decided again over what is stored now, it goes through.
    let receipt = try_pay(&store, held.id(), who, paid(ticket), NOW)
        .await
        .expect("paid");
    assert_eq!(receipt.balance.get(), 300_001 - PRICE);
    store.finish().await;
}

pub async fn a_payment_over_a_moved_reservation_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 1).await;
    let who = user();
    charge(&store, who, PRICE, NOW, None).await;
    let held = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let ticket = active_ticket(&store, who, NOW).await;
    let write = decide_payment(&store, held.id(), who, paid(ticket), NOW, None)
        .await
        .expect("payable");
    // The user cancels the reservation meanwhile (the wallet does not move).
    let reservations = store.reservations();
    let booking = reservations
        .load_booking(held.id())
        .await
        .expect("load")
        .expect("booking");
    let (mut reservation, mut seat) = (booking.reservation.value, booking.seat.value);
    booking::cancel(&mut reservation, &mut seat, who, NOW).expect("cancelled");
    let cancel = ReleaseWrite {
        reservation: Versioned::new(reservation, booking.reservation.version),
        seat: Some(Versioned::new(seat, booking.seat.version)),
        now: NOW,
    };
    assert_eq!(
        reservations.save_releases(&[cancel]).await.expect("cancel"),
        1
    );

    assert_eq!(
        store.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    let stored = reservations
        .find(held.id())
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(stored.stored_status(), ReservationStatus::Cancelled);
    assert_eq!(
        load_hold(&store, who, seat_ref(gala, 1))
            .await
            .seat
            .value
            .claim(),
        SeatClaim::Available
    );
    assert_eq!(
        store.wallets().balance(who).await.expect("balance").get(),
        PRICE
    );
    let live = store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(live.stored_status(), TicketStatus::Active);
    store.finish().await;
}

pub async fn racing_payments_of_one_reservation_pay_once<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 1).await;
    let who = user();
    charge(&*store, who, 10 * PRICE, NOW, None).await;
    let held = hold(&*store, who, seat_ref(gala, 1), NOW).await.id();
    let ticket = active_ticket(&*store, who, NOW).await;
    let outcomes = race(RACERS, |_| {
        let store = Arc::clone(&store);
        async move { try_pay(&*store, held, who, paid(ticket), NOW).await }
    })
    .await;
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.is_ok() || *o == Err(PaymentDenied::Reservation(PayRefused::NotHeld))),
        "{outcomes:?}"
    );
    let wallets = store.wallets();
    assert_eq!(
        wallets.balance(who).await.expect("balance").get(),
        9 * PRICE
    );
    assert_eq!(
        wallets
            .history(who, 100, None)
            .await
            .expect("history")
            .len(),
        2
    );
    finish(store).await;
}

pub async fn payments_racing_charges_keep_the_balance_exact<S: Store>() {
    let store = shared::<S>().await;
    let gala = concert(&*store, 1).await;
    let who = user();
    charge(&*store, who, PRICE, NOW, None).await;
    let held = hold(&*store, who, seat_ref(gala, 1), NOW).await.id();
    let ticket = active_ticket(&*store, who, NOW).await;
    race(RACERS, |i| {
        let store = Arc::clone(&store);
        async move {
            if i == 0 {
                try_pay(&*store, held, who, paid(ticket), NOW)
                    .await
                    .expect("paid");
            } else {
                charge(&*store, who, 10, NOW, None).await;
            }
        }
    })
    .await;
    let wallets = store.wallets();
    let balance = wallets.balance(who).await.expect("balance");
    assert_eq!(balance.get(), 10 * (RACERS as i64 - 1));
    let history = wallets.history(who, 100, None).await.expect("history");
    assert_eq!(history.len(), RACERS + 1);
    assert!(ledger_is_consistent(&history, balance));
    finish(store).await;
}
