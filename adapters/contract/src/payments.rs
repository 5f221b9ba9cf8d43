//! `PaymentRepository`: a payment confirms the reservation, sells the seat, debits the wallet
//! with one ledger entry, records the payment and ends the payer's ticket in one atomic step,
//! over the versions read: exact under races, nothing written when stale.

use std::sync::Arc;

use concert_application::ports::{ReleaseWrite, TicketEnd, Version, Versioned, Written};
use concert_domain::booking;
use concert_domain::reservation::PayRefused;
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{
    EndReason, LedgerKind, PaymentDenied, ReservationId, ReservationStatus, SeatClaim,
    TicketStatus, Wallet,
};
use time::Duration;

use crate::fixtures::{
    HOLD_TTL, NOW, PRICE, active_ticket, charge, concert, decide_charge, decide_payment, finish,
    hold, key, load_hold, paid, pay, price, race, seat_ref, shared, ticket, try_pay, user,
};
use crate::{RACERS, Store, StoredKey, StoredPayment};

pub async fn load_gives_the_reservation_its_seat_and_the_payers_wallet_with_versions<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    let held = hold(&store, buyer, seat_ref(gala, 9), NOW).await;
    let payments = store.payments();

    let state = payments
        .load(held.id(), buyer)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(state.booking.reservation.value, held);
    assert_eq!(state.booking.reservation.version, Version::new(1));
    assert_eq!(state.booking.seat.version, Version::new(2));
    assert_eq!(state.wallet.version, Version::ABSENT, "no wallet yet");
    assert_eq!(state.wallet.value, Wallet::empty(buyer));

    charge(&store, buyer, 200_000, NOW, None).await;
    let state = payments
        .load(held.id(), buyer)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(state.wallet.version, Version::new(1));
    assert_eq!(state.wallet.value.balance().get(), 200_000);
    assert_eq!(state.wallet.value.last_change_at(), Some(NOW));
    // Another payer's wallet is loaded as theirs (the domain then refuses: not theirs).
    let stranger = user();
    let theirs = payments
        .load(held.id(), stranger)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(theirs.wallet.value, Wallet::empty(stranger));
    let missing = ReservationId::new(held.id().get() + 1000).expect("an id");
    assert!(payments.load(missing, buyer).await.expect("load").is_none());
    store.finish().await;
}

pub async fn a_payment_writes_every_row_at_once_and_its_replay_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    charge(&store, buyer, 200_000, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 9), NOW).await;
    let at = NOW + Duration::minutes(1);

    let write = decide_payment(
        &store,
        held.id(),
        buyer,
        paid(ticket),
        at,
        Some(key("pay-1")),
    )
    .await
    .expect("payable");
    let Written::Done(receipt) = store.payments().save(&write).await.expect("save") else {
        panic!("nothing moved since the load");
    };
    assert_eq!(receipt.reservation_id, held.id());
    assert_eq!(receipt.amount.get(), PRICE);
    assert_eq!(receipt.balance.get(), 80_000);
    assert_eq!(receipt.paid_at, at);

    let booking = store
        .reservations()
        .load_booking(held.id())
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(
        booking.reservation.value.stored_status(),
        ReservationStatus::Confirmed
    );
    assert_eq!(booking.reservation.version, Version::new(2));
    assert_eq!(booking.seat.version, Version::new(3));
    assert_eq!(
        booking.seat.value.claim(),
        SeatClaim::Sold {
            reservation: held.id(),
            owner: buyer
        }
    );
    let wallets = store.wallets();
    let wallet = wallets.load(buyer).await.expect("load");
    assert_eq!(wallet.version, Version::new(2));
    assert_eq!(wallet.value.balance().get(), 80_000);
    assert_eq!(wallet.value.last_change_at(), Some(at));
    let history = wallets.history(buyer, 10, None).await.expect("history");
    assert_eq!(history.len(), 2, "the charge and exactly one payment entry");
    assert_eq!(history[0].kind, LedgerKind::Payment);
    assert_eq!(history[0].amount, -PRICE);
    assert_eq!(history[0].balance_after.get(), 80_000);
    assert_eq!(history[0].at, at);
    assert_eq!(
        store.stored_payment(receipt.payment_id).await,
        Some(StoredPayment {
            reservation: held.id(),
            user: buyer,
            amount: PRICE,
            ledger_entry: history[0].id,
            paid_at: at,
        })
    );
    assert_eq!(
        store
            .stored_key(
                buyer,
                concert_domain::IdempotencyScope::Payment,
                &key("pay-1").key
            )
            .await,
        Some(StoredKey {
            request_hash: "hash-of-pay-1".to_owned(),
            ledger_entry: history[0].id,
            payment: Some(receipt.payment_id),
            created_at: at,
        })
    );
    let ended = store
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(ended.stored_status(), TicketStatus::Expired);
    assert_eq!(ended.end_reason(), Some(EndReason::Paid));
    assert_eq!(store.ticket_ended_at(ticket).await, Some(at));

    // The same write again: every version it names is old now; nothing moves.
    let before = store.booking_rows().await;
    assert_eq!(
        store.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    assert_eq!(store.booking_rows().await, before);
    store.finish().await;
}

pub async fn a_payment_never_ends_another_users_ticket<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let (buyer, other) = (user(), user());
    charge(&store, buyer, 1_000_000, NOW, None).await;
    let theirs = active_ticket(&store, other, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 1), NOW).await;
    pay(&store, held.id(), buyer, paid(theirs), NOW).await;
    let stored = store
        .queue()
        .find(theirs)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(stored.stored_status(), TicketStatus::Active);
    assert_eq!(store.ticket_ended_at(theirs).await, None);
    store.finish().await;
}

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
    let gala = concert(&store, 2).await;
    let who = user();
    charge(&store, who, 2 * PRICE, NOW, None).await;
    let first = hold(&store, who, seat_ref(gala, 1), NOW).await;
    let second = hold(&store, who, seat_ref(gala, 2), NOW).await;
    let active = active_ticket(&store, who, NOW).await;
    // The user leaves the line between the payment's read and its write.
    let write = decide_payment(&store, first.id(), who, paid(active), NOW, None)
        .await
        .expect("payable");
    let left_at = NOW + Duration::seconds(30);
    let left = TicketEnd {
        ticket: active,
        read_as: TicketStatus::Active,
        reason: EndReason::Left,
    };
    assert_eq!(
        store.queue().end(&left, left_at).await.expect("end"),
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
        .find(active)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(ended.stored_status(), TicketStatus::Expired);
    assert_eq!(
        ended.end_reason(),
        Some(EndReason::Left),
        "not in the status read: left alone"
    );
    assert_eq!(store.ticket_ended_at(active).await, Some(left_at));
    assert_eq!(
        store.wallets().balance(who).await.expect("balance").get(),
        PRICE
    );

    // A waiting ticket read as waiting is ended by the payment.
    let waiting = ticket(&store, who, NOW).await.ticket();
    let end = TicketEnd {
        ticket: waiting,
        read_as: TicketStatus::Waiting,
        reason: EndReason::Paid,
    };
    pay(&store, second.id(), who, end, NOW).await;
    let ended = store
        .queue()
        .find(waiting)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(ended.stored_status(), TicketStatus::Expired);
    assert_eq!(
        ended.end_reason(),
        Some(EndReason::Paid),
        "the payment recorded why the ticket ended"
    );
    assert_eq!(store.ticket_ended_at(waiting).await, Some(NOW));
    store.finish().await;
}

/// Which row another write moves under a decided payment.
#[derive(Debug, Clone, Copy)]
enum Moved {
    Reservation,
    Seat,
    Wallet,
}

/// A payment decided over versions, one of which another write of that row alone then moves:
/// stale, and nothing written; decided again over what is stored now, it goes through.
async fn stale_after<S: Store>(moved: Moved) {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    charge(&store, buyer, 1_000_000, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 3), NOW).await;
    let write = decide_payment(
        &store,
        held.id(),
        buyer,
        paid(ticket),
        NOW,
        Some(key("stale")),
    )
    .await
    .expect("payable");
    match moved {
        Moved::Reservation => store.bump_reservation(held.id()).await,
        Moved::Seat => store.bump_seat(seat_ref(gala, 3)).await,
        Moved::Wallet => store.bump_wallet(buyer).await,
    }
    let before = store.booking_rows().await;

    assert_eq!(
        store.payments().save(&write).await.expect("save"),
        Written::Stale,
        "after a write of the {moved:?}"
    );
    assert_eq!(
        store.booking_rows().await,
        before,
        "nothing written after a write of the {moved:?}"
    );
    pay(&store, held.id(), buyer, paid(ticket), NOW).await;
    assert_eq!(store.booking_counts().await.payments, 1);
    store.finish().await;
}

pub async fn a_payment_over_an_older_reservation_version_is_stale<S: Store>() {
    stale_after::<S>(Moved::Reservation).await;
}

pub async fn a_payment_over_an_older_seat_version_is_stale<S: Store>() {
    stale_after::<S>(Moved::Seat).await;
}

pub async fn a_payment_over_an_older_wallet_version_is_stale<S: Store>() {
    stale_after::<S>(Moved::Wallet).await;
}

pub async fn a_payment_decided_before_a_lapse_cannot_sell_a_seat_taken_over_since<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    charge(&store, buyer, 1_000_000, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let held = hold(&store, buyer, seat_ref(gala, 4), NOW).await;
    let just_before = NOW + HOLD_TTL - Duration::seconds(1);
    // An instance whose clock is a second behind decides the payment while the hold is live ...
    let write = decide_payment(&store, held.id(), buyer, paid(ticket), just_before, None)
        .await
        .expect("payable");
    // ... and another user takes the lapsed seat over before the payment is written (the same
    // write marks the lapsed reservation EXPIRED).
    let newer = hold(&store, user(), seat_ref(gala, 4), NOW + HOLD_TTL).await;
    let before = store.booking_rows().await;

    assert_eq!(
        store.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    assert_eq!(
        store.booking_rows().await,
        before,
        "no double sale, no debit"
    );
    assert_eq!(
        decide_payment(&store, held.id(), buyer, paid(ticket), just_before, None)
            .await
            .map(|_| ()),
        Err(PaymentDenied::Reservation(PayRefused::Expired)),
        "decided again, the domain sees the hold is over"
    );
    assert!(matches!(
        load_hold(&store, buyer, seat_ref(gala, 4)).await.seat.value.claim(),
        SeatClaim::Held { reservation, .. } if reservation == newer.id()
    ));
    store.finish().await;
}

pub async fn a_payment_whose_key_is_already_stored_is_stale_and_writes_nothing<S: Store>() {
    let store = S::fresh().await;
    let gala = concert(&store, 10).await;
    let buyer = user();
    charge(&store, buyer, 1_000_000, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let first = hold(&store, buyer, seat_ref(gala, 1), NOW).await;
    let second = hold(&store, buyer, seat_ref(gala, 2), NOW).await;
    let write = decide_payment(
        &store,
        first.id(),
        buyer,
        paid(ticket),
        NOW,
        Some(key("the-key")),
    )
    .await
    .expect("payable");
    assert!(matches!(
        store.payments().save(&write).await.expect("save"),
        Written::Done(_)
    ));

    // Another payment, decided on current versions, with the key already stored.
    let other = decide_payment(
        &store,
        second.id(),
        buyer,
        paid(ticket),
        NOW,
        Some(key("the-key")),
    )
    .await
    .expect("payable");
    let before = store.booking_rows().await;
    assert_eq!(
        store.payments().save(&other).await.expect("save"),
        Written::Stale
    );
    assert_eq!(store.booking_rows().await, before);
    assert_eq!(
        store
            .reservations()
            .find(second.id())
            .await
            .expect("find")
            .expect("stored")
            .stored_status(),
        ReservationStatus::Held
    );
    // A charge key of the same text is another scope: not in the way.
    let charge_write = decide_charge(&store, buyer, 1, NOW, Some(key("the-key"))).await;
    assert_eq!(
        store
            .wallets()
            .save_charge(&charge_write)
            .await
            .expect("save"),
        Written::Done(())
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
