//! `SqlitePaymentRepository`'s contract (the PostgreSQL adapter's, `payments.rs` there): the
//! reservation, its seat and the payer's wallet load with their versions; the payment is written
//! in one step over all three (with its ledger entry, payment row, ended ticket and key row), or
//! nothing is.

use concert_application::ports::{
    PaymentRepository, ReservationRepository, TicketEnd, Version, WalletRepository, Written,
};
use concert_domain::booking::{self, PaymentDenied};
use concert_domain::reservation::PayRefused;
use concert_domain::wallet::LedgerKind;
use concert_domain::{
    EndReason, ReservationId, ReservationStatus, SeatClaim, TicketStatus, Wallet,
};
use time::{Duration, OffsetDateTime};

use crate::booking_support::{
    Ctx, HOLD_TTL, NOW, PRICE, active, active_ticket, charge, concert, decide_charge,
    decide_payment, hold, key, pay, ticket_status, user, waiting_ticket,
};

/// An instant as the store keeps it (microseconds since the epoch), for raw-row assertions.
fn stored(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000
}

#[tokio::test(flavor = "multi_thread")]
async fn load_returns_the_reservation_its_seat_and_the_payers_wallet_with_versions() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    let reservation = hold(&ctx, buyer, id, 9, NOW).await;
    let payments = ctx.payments();

    let state = payments
        .load(reservation.id(), buyer)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(state.booking.reservation.value, reservation);
    assert_eq!(state.booking.reservation.version, Version::new(1));
    assert_eq!(state.booking.seat.version, Version::new(2));
    assert_eq!(state.wallet.version, Version::ABSENT, "no wallet yet");
    assert_eq!(state.wallet.value, Wallet::empty(buyer));

    charge(&ctx, buyer, 200_000).await;
    let state = payments
        .load(reservation.id(), buyer)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(state.wallet.version, Version::new(1));
    assert_eq!(state.wallet.value.balance().get(), 200_000);
    assert_eq!(state.wallet.value.last_change_at(), Some(NOW));
    // Another payer's wallet is loaded as theirs (the domain then refuses: not theirs).
    let stranger = user();
    let theirs = payments
        .load(reservation.id(), stranger)
        .await
        .expect("load")
        .expect("stored");
    assert_eq!(theirs.wallet.value, Wallet::empty(stranger));
    let missing = ReservationId::new(reservation.id().get() + 1000).expect("id");
    assert!(payments.load(missing, buyer).await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_writes_the_sale_the_debit_the_entry_the_payment_the_ticket_and_the_key_at_once()
{
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 200_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 9, NOW).await;
    let at = NOW + Duration::minutes(1);

    let mut write = decide_payment(&ctx, reservation.id(), buyer, active(ticket), at).await;
    write.idempotency = Some(key("pay-1"));
    let Written::Done(receipt) = ctx.payments().save(&write).await.expect("save") else {
        panic!("expected the payment to be written");
    };
    assert_eq!(receipt.reservation_id, reservation.id());
    assert_eq!(receipt.amount.get(), PRICE);
    assert_eq!(receipt.balance.get(), 80_000);
    assert_eq!(receipt.paid_at, at);

    let booking = ctx
        .reservations()
        .load_booking(reservation.id())
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
            reservation: reservation.id(),
            owner: buyer
        }
    );
    let wallet = ctx.wallets().load(buyer).await.expect("load");
    assert_eq!(wallet.version, Version::new(2));
    assert_eq!(wallet.value.balance().get(), 80_000);
    assert_eq!(wallet.value.last_change_at(), Some(at));
    let history = ctx
        .wallets()
        .history(buyer, 10, None)
        .await
        .expect("history");
    assert_eq!(history.len(), 2, "the charge and exactly one payment entry");
    assert_eq!(history[0].kind, LedgerKind::Payment);
    assert_eq!(history[0].amount, -PRICE);
    assert_eq!(history[0].balance_after.get(), 80_000);
    assert_eq!(history[0].at, at);
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM payments WHERE id = {} AND reservation_id = {} \
             AND user_id = '{buyer}' AND amount = {PRICE} AND ledger_entry_id = {} \
             AND paid_at = {}",
            receipt.payment_id.get(),
            reservation.id().get(),
            history[0].id.get(),
            stored(at)
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM idempotency_keys WHERE user_id = '{buyer}' \
             AND scope = 'payment' AND key = 'pay-1' AND payment_id = {} \
             AND ledger_entry_id = {} AND created_at = {}",
            receipt.payment_id.get(),
            history[0].id.get(),
            stored(at)
        ))
        .await,
        1
    );
    assert_eq!(ticket_status(&ctx, ticket).await, "EXPIRED");
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM queue_tickets WHERE ticket = {} \
             AND ended_at = {} AND end_reason = 'PAID'",
            ticket.get(),
            stored(at)
        ))
        .await,
        1
    );

    // The same write again: every version it names is old now; nothing moves.
    let before = ctx.rows().await;
    assert_eq!(
        ctx.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    assert_eq!(ctx.rows().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ticket_ends_only_if_it_is_still_in_the_status_read_and_never_blocks_the_sale() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let first = hold(&ctx, buyer, id, 1, NOW).await;
    let second = hold(&ctx, buyer, id, 2, NOW).await;
    // Decided on an active ticket, written after the ticket ended meanwhile (its deadline).
    let write = decide_payment(&ctx, first.id(), buyer, active(ticket), NOW).await;
    let ended_at = stored(NOW - Duration::hours(1));
    ctx.execute(&format!(
        "UPDATE queue_tickets SET status = 'EXPIRED', ended_at = {ended_at} WHERE ticket = {}",
        ticket.get()
    ))
    .await;
    assert!(matches!(
        ctx.payments().save(&write).await.expect("save"),
        Written::Done(_)
    ));
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM queue_tickets WHERE ticket = {} \
             AND status = 'EXPIRED' AND ended_at = {ended_at} AND end_reason IS NULL",
            ticket.get()
        ))
        .await,
        1,
        "not in the status read: left alone"
    );
    // A waiting ticket read as waiting is ended by the payment.
    let waiting = waiting_ticket(&ctx, buyer).await;
    let ended = TicketEnd {
        ticket: waiting,
        read_as: TicketStatus::Waiting,
        reason: EndReason::Paid,
    };
    pay(&ctx, second.id(), buyer, ended, NOW).await;
    assert_eq!(ticket_status(&ctx, waiting).await, "EXPIRED");
    let reason = ctx
        .count(&format!(
            "SELECT count(*) AS count FROM queue_tickets \
             WHERE ticket = {} AND end_reason = 'PAID'",
            waiting.get()
        ))
        .await;
    assert_eq!(reason, 1, "the payment recorded why the ticket ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_ticket_is_never_ended_by_a_payment() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let (buyer, other) = (user(), user());
    charge(&ctx, buyer, 1_000_000).await;
    let theirs = active_ticket(&ctx, other).await;
    let reservation = hold(&ctx, buyer, id, 1, NOW).await;
    pay(&ctx, reservation.id(), buyer, active(theirs), NOW).await;
    assert_eq!(ticket_status(&ctx, theirs).await, "ACTIVE");
}

/// A payment decided over versions, one of which is then bumped by `bump` (another write of that
/// row alone): stale, and nothing written.
async fn stale_after(bump: &str) {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 3, NOW).await;
    let mut write = decide_payment(&ctx, reservation.id(), buyer, active(ticket), NOW).await;
    write.idempotency = Some(key("stale"));
    ctx.execute(&bump.replace("{reservation}", &reservation.id().get().to_string()))
        .await;
    let before = ctx.rows().await;

    assert_eq!(
        ctx.payments().save(&write).await.expect("save"),
        Written::Stale,
        "after {bump}"
    );
    assert_eq!(ctx.rows().await, before, "nothing written after {bump}");
    // Decided again on what is stored now, it goes through.
    pay(&ctx, reservation.id(), buyer, active(ticket), NOW).await;
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_over_an_older_reservation_version_is_stale() {
    stale_after("UPDATE reservations SET version = version + 1 WHERE id = {reservation}").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_over_an_older_seat_version_is_stale() {
    stale_after("UPDATE seats SET version = version + 1 WHERE seat_no = 3").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_over_an_older_wallet_version_is_stale() {
    stale_after("UPDATE wallets SET version = version + 1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_decided_before_a_lapse_cannot_sell_a_seat_taken_over_since() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 4, NOW).await;
    // An instance whose clock is a second behind decides the payment while the hold is live ...
    let write = decide_payment(
        &ctx,
        reservation.id(),
        buyer,
        active(ticket),
        NOW + HOLD_TTL - Duration::seconds(1),
    )
    .await;
    // ... and another user takes the lapsed seat over before the payment is written (the same
    // write marks the lapsed reservation EXPIRED).
    let newer = hold(&ctx, user(), id, 4, NOW + HOLD_TTL).await;
    let before = ctx.rows().await;

    assert_eq!(
        ctx.payments().save(&write).await.expect("save"),
        Written::Stale
    );
    assert_eq!(ctx.rows().await, before, "no double sale, no debit");
    let state = ctx
        .payments()
        .load(reservation.id(), buyer)
        .await
        .expect("load")
        .expect("stored");
    let (mut r, mut s, mut w) = (
        state.booking.reservation.value,
        state.booking.seat.value,
        state.wallet.value,
    );
    assert_eq!(
        booking::pay(
            &mut r,
            &mut s,
            &mut w,
            buyer,
            NOW + HOLD_TTL - Duration::seconds(1)
        ),
        Err(PaymentDenied::Reservation(PayRefused::Expired)),
        "decided again, the domain sees the hold is over"
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 4 AND held_by_reservation = {}",
            newer.id().get()
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_key_is_already_stored_is_stale_and_writes_nothing() {
    let ctx = Ctx::new();
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let first = hold(&ctx, buyer, id, 1, NOW).await;
    let second = hold(&ctx, buyer, id, 2, NOW).await;
    let mut write = decide_payment(&ctx, first.id(), buyer, active(ticket), NOW).await;
    write.idempotency = Some(key("the-key"));
    assert!(matches!(
        ctx.payments().save(&write).await.expect("save"),
        Written::Done(_)
    ));

    // Another payment, decided on current versions, with the key already stored.
    let mut other = decide_payment(&ctx, second.id(), buyer, active(ticket), NOW).await;
    other.idempotency = Some(key("the-key"));
    let before = ctx.rows().await;
    assert_eq!(
        ctx.payments().save(&other).await.expect("save"),
        Written::Stale
    );
    assert_eq!(ctx.rows().await, before);
    assert_eq!(
        ctx.reservations()
            .find(second.id())
            .await
            .expect("find")
            .expect("stored")
            .stored_status(),
        ReservationStatus::Held
    );
    // A charge key of the same text is another scope: not in the way.
    let charge_write = decide_charge(&ctx, buyer, 1, NOW, Some(key("the-key"))).await;
    assert_eq!(
        ctx.wallets()
            .save_charge(&charge_write)
            .await
            .expect("save"),
        Written::Done(())
    );
}
