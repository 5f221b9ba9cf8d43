//! `PgPaymentRepository`: the hold-to-sale transaction.

use concert_application::ports::{
    PaymentOutcome, PaymentRepository, PaymentRequest, QueueRepository, ReservationRepository,
    WalletRepository,
};
use concert_domain::wallet::LedgerKind;
use concert_domain::{QueuePolicy, Reservation, ReservationStatus, TicketNo, TicketStatus, UserId};
use time::{Duration, OffsetDateTime};

use crate::support::{Ctx, HOLD_TTL, NOW, charge, concert, hold, user};

pub fn pay_request(
    reservation: &Reservation,
    user: UserId,
    ticket: TicketNo,
    now: OffsetDateTime,
) -> PaymentRequest {
    PaymentRequest {
        user,
        reservation: reservation.id,
        amount: reservation.price,
        ticket,
        now,
        idempotency: None,
    }
}

/// An admitted (ACTIVE) ticket for `user`.
pub async fn active_ticket(ctx: &Ctx, user: UserId) -> TicketNo {
    let queue = ctx.queue();
    let issued = queue
        .issue(user, NOW, &QueuePolicy::default())
        .await
        .expect("issue");
    queue
        .admit(&concert_domain::QueuePolicy::default(), NOW)
        .await
        .expect("admit");
    let ticket = queue
        .find(issued.ticket.ticket)
        .await
        .expect("find")
        .expect("ticket");
    assert_eq!(ticket.status, TicketStatus::Active);
    ticket.ticket
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_confirms_sells_debits_records_and_ends_the_ticket_at_once() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 200_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 9, NOW).await;
    let at = NOW + Duration::minutes(1);

    let outcome = ctx
        .payments()
        .pay(&pay_request(&reservation, buyer, ticket, at))
        .await
        .expect("pay");
    let PaymentOutcome::Paid(receipt) = outcome else {
        panic!("expected a payment, got {outcome:?}");
    };
    assert_eq!(receipt.reservation_id, reservation.id);
    assert_eq!(receipt.amount.get(), 120_000);
    assert_eq!(receipt.balance.get(), 80_000);
    assert_eq!(receipt.paid_at, at);

    let stored = ctx
        .reservations()
        .find(reservation.id)
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.status, ReservationStatus::Confirmed);
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        80_000
    );
    let history = ctx
        .wallets()
        .history(buyer, 10, None)
        .await
        .expect("history");
    assert_eq!(history[0].kind, LedgerKind::Payment);
    assert_eq!(history[0].amount, -120_000);
    assert_eq!(history[0].balance_after.get(), 80_000);
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM seats WHERE seat_no = 9 AND sold_to_user = '{buyer}' \
             AND sold_reservation = {} AND held_by_reservation IS NULL",
            reservation.id.get()
        ))
        .await,
        1
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT count(*) AS count FROM payments WHERE id = {} AND ledger_entry_id = {}",
            receipt.payment_id.get(),
            history[0].id.get()
        ))
        .await,
        1
    );
    let ended = ctx
        .queue()
        .find(ticket)
        .await
        .expect("find")
        .expect("ticket");
    assert_eq!(ended.status, TicketStatus::Expired);
    // A second payment of a paid reservation: not held any more, nothing moves.
    assert_eq!(
        ctx.payments()
            .pay(&pay_request(&reservation, buyer, ticket, at))
            .await
            .expect("pay"),
        PaymentOutcome::ReservationNotHeld
    );
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        80_000
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn insufficient_balance_changes_nothing_and_the_hold_stays() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 119_999).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 1, NOW).await;

    assert_eq!(
        ctx.payments()
            .pay(&pay_request(&reservation, buyer, ticket, NOW))
            .await
            .expect("pay"),
        PaymentOutcome::InsufficientBalance
    );
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        119_999
    );
    assert_eq!(
        ctx.reservations()
            .find(reservation.id)
            .await
            .expect("find")
            .expect("stored")
            .status,
        ReservationStatus::Held
    );
    assert_eq!(
        ctx.queue()
            .find(ticket)
            .await
            .expect("find")
            .expect("ticket")
            .status,
        TicketStatus::Active,
        "a refused payment keeps the ticket"
    );
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 0);
    // Topped up, the same hold is paid.
    charge(&ctx, buyer, 1).await;
    assert!(matches!(
        ctx.payments().pay(&pay_request(&reservation, buyer, ticket, NOW)).await.expect("pay"),
        PaymentOutcome::Paid(receipt) if receipt.balance.get() == 0
    ));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lapsed_cancelled_or_foreign_reservations_are_refused() {
    let ctx = Ctx::new().await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let payments = ctx.payments();

    let lapsing = hold(&ctx, buyer, id, 1, NOW).await;
    assert_eq!(
        payments
            .pay(&pay_request(&lapsing, buyer, ticket, NOW + HOLD_TTL))
            .await
            .expect("pay"),
        PaymentOutcome::HoldLapsed
    );
    let cancelled = hold(&ctx, buyer, id, 2, NOW).await;
    ctx.reservations()
        .cancel(cancelled.id, buyer, NOW)
        .await
        .expect("cancel");
    assert_eq!(
        payments
            .pay(&pay_request(&cancelled, buyer, ticket, NOW))
            .await
            .expect("pay"),
        PaymentOutcome::ReservationNotHeld
    );
    let someone_elses = hold(&ctx, user(), id, 3, NOW).await;
    assert_eq!(
        payments
            .pay(&pay_request(&someone_elses, buyer, ticket, NOW))
            .await
            .expect("pay"),
        PaymentOutcome::ReservationNotHeld
    );
    let mut missing = someone_elses.clone();
    missing.id = concert_domain::ReservationId::new(someone_elses.id.get() + 1000).expect("id");
    assert_eq!(
        payments
            .pay(&pay_request(&missing, buyer, ticket, NOW))
            .await
            .expect("pay"),
        PaymentOutcome::ReservationNotHeld
    );
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        1_000_000
    );
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 0);
    ctx.finish().await;
}
