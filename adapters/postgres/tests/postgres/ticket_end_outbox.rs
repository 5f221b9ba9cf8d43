//! Payments whose ticket end goes to `ticket_end_outbox` (`TicketEnds::Outbox`, the line kept in
//! another store), the outbox itself, and the relay that applies the ends, here with
//! `PgQueueRepository` standing in for the line: what the payment's statement writes, that a
//! failing commit writes neither the payment nor the row, and that an end whose process died
//! between the two steps is applied by the relay of a process started afterwards.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use concert_application::pay_reservation::{
    PayReservation, PayReservationCommand, PayReservationPorts,
};
use concert_application::ports::{
    AdmissionTrigger, PaymentRepository, PendingTicketEnd, QueueRepository, TicketEndOutbox,
    Written,
};
use concert_application::relay_ticket_ends::{
    AppliedEnd, RELAY_BATCH, RelayTicketEnds, RelayTicketEndsPorts,
};
use concert_application::room_lines::RoomLines;
use concert_contract::Store;
use concert_contract::fixtures::{
    NOW, PRICE, active_ticket, charge, claims, concert, decide_payment, fixed, hold, instance,
    paid, seat_ref, user,
};
use concert_domain::{
    EndReason, HoldLimit, QueuePolicy, ReservationId, TicketNo, TicketStatus, UserId,
};
use concert_postgres::{
    PgPaymentRepository, PgPool, PgQueueRepository, PgTicketEndOutbox, TicketEnds,
};
use time::Duration;

use crate::contract::PgStore;
use crate::support::{count_on, ticket_status};

/// The contract runs admission steps itself.
struct NoAdmission;

#[async_trait::async_trait]
impl AdmissionTrigger for NoAdmission {
    fn request_admission(&self) {}

    async fn admit_soon(&self, _within: StdDuration) {}
}

/// A buyer with an active ticket, a hold on a seat of a fresh concert and the points to pay it.
async fn ready_to_pay(store: &PgStore) -> (UserId, ReservationId, TicketNo) {
    let concert = concert(store, 10).await;
    let buyer = user();
    let held = hold(store, buyer, seat_ref(concert, 5), NOW).await;
    charge(store, buyer, PRICE, NOW, None).await;
    let ticket = active_ticket(store, buyer, NOW).await;
    (buyer, held.id(), ticket)
}

fn outbox_payments(pool: &PgPool) -> PgPaymentRepository {
    PgPaymentRepository::with_ticket_ends(pool.clone(), TicketEnds::Outbox)
}

async fn outbox_rows(pool: &PgPool) -> i64 {
    count_on(pool, "SELECT count(*) AS count FROM ticket_end_outbox").await
}

/// A relay over `pool`, with the line in the same database (`PgQueueRepository`).
fn relay_over(pool: &PgPool, now: time::OffsetDateTime) -> RelayTicketEnds {
    let queue: Arc<dyn QueueRepository> = Arc::new(PgQueueRepository::new(pool.clone()));
    RelayTicketEnds::new(RelayTicketEndsPorts {
        outbox: Arc::new(PgTicketEndOutbox::new(pool.clone())),
        lines: RoomLines::new(queue.clone(), QueuePolicy::default()),
        queue,
        admission: Arc::new(NoAdmission),
        clock: fixed(now),
    })
}

async fn stored_end_reason(store: &PgStore, ticket: TicketNo) -> i64 {
    store
        .ctx
        .count(&format!(
            "SELECT count(*) AS count FROM queue_tickets WHERE ticket = {} \
             AND status = 'EXPIRED' AND end_reason = 'PAID'",
            ticket.get()
        ))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_payment_writes_one_outbox_row_and_leaves_the_ticket_alone() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;
    let payments = outbox_payments(&store.ctx.pool);

    let write = decide_payment(&store, reservation, buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let saved = payments.save(&write).await.expect("save");

    assert!(matches!(saved, Written::Done(_)), "{saved:?}");
    assert_eq!(
        store
            .ctx
            .count("SELECT count(*) AS count FROM payments")
            .await,
        1
    );
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");
    let pending = PgTicketEndOutbox::new(store.ctx.pool.clone())
        .pending(10)
        .await
        .expect("pending");
    assert_eq!(
        pending,
        vec![PendingTicketEnd {
            end: paid(ticket),
            payer: buyer,
            written_at: write.change.at,
        }]
    );
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_in_transaction_payment_ends_the_ticket_and_writes_no_outbox_row() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;
    let payments =
        PgPaymentRepository::with_ticket_ends(store.ctx.pool.clone(), TicketEnds::InTransaction);
    assert_eq!(
        PgPaymentRepository::new(store.ctx.pool.clone()).ticket_ends(),
        TicketEnds::InTransaction,
        "the default"
    );

    let write = decide_payment(&store, reservation, buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    let saved = payments.save(&write).await.expect("save");

    assert!(matches!(saved, Written::Done(_)), "{saved:?}");
    assert_eq!(stored_end_reason(&store, ticket).await, 1);
    assert_eq!(outbox_rows(&store.ctx.pool).await, 0);
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_outbox_payment_writes_no_outbox_row() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;
    let write = decide_payment(&store, reservation, buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    store.bump_wallet(buyer).await;

    let saved = outbox_payments(&store.ctx.pool)
        .save(&write)
        .await
        .expect("save");

    assert_eq!(saved, Written::Stale);
    assert_eq!(outbox_rows(&store.ctx.pool).await, 0);
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_payment_of_the_same_number_replaces_the_row_and_done_spares_it() {
    let store = PgStore::fresh().await;
    let concert = concert(&store, 10).await;
    let buyer = user();
    let first = hold(&store, buyer, seat_ref(concert, 1), NOW).await;
    let second = hold(&store, buyer, seat_ref(concert, 2), NOW).await;
    charge(&store, buyer, 2 * PRICE, NOW, None).await;
    let ticket = active_ticket(&store, buyer, NOW).await;
    let payments = outbox_payments(&store.ctx.pool);
    let outbox = PgTicketEndOutbox::new(store.ctx.pool.clone());

    // The token stays active until the end is applied: a second payment may come first.
    let write = decide_payment(&store, first.id(), buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    payments.save(&write).await.expect("save");
    let read = outbox.pending(10).await.expect("pending");
    let later = NOW + Duration::seconds(2);
    let write = decide_payment(&store, second.id(), buyer, paid(ticket), later, None)
        .await
        .expect("payable");
    assert!(matches!(
        payments.save(&write).await.expect("save"),
        Written::Done(_)
    ));

    let replaced = outbox.pending(10).await.expect("pending");
    assert_eq!(replaced.len(), 1);
    assert_eq!(replaced[0].written_at, later);
    // A relay that read the first row forgets only that one.
    outbox.done(&read[0]).await.expect("done");
    assert_eq!(outbox.pending(10).await.expect("pending"), replaced);
    outbox.done(&replaced[0]).await.expect("done");
    assert_eq!(outbox_rows(&store.ctx.pool).await, 0);
    outbox.done(&replaced[0]).await.expect("done twice is fine");
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_ends_come_oldest_first_up_to_the_limit() {
    let store = PgStore::fresh().await;
    let payer = user();
    for (ticket, seconds) in [(7, 3), (5, 1), (9, 1), (3, 2)] {
        store
            .ctx
            .execute(&format!(
                "INSERT INTO ticket_end_outbox VALUES ({ticket}, '{payer}', 'ACTIVE', 'PAID', \
                 timestamptz '2030-06-01T12:00:00Z' + interval '{seconds} seconds')"
            ))
            .await;
    }

    let pending = PgTicketEndOutbox::new(store.ctx.pool.clone())
        .pending(3)
        .await
        .expect("pending");

    let order: Vec<(i64, TicketStatus, EndReason)> = pending
        .iter()
        .map(|p| (p.end.ticket.get(), p.end.read_as, p.end.reason))
        .collect();
    assert_eq!(
        order,
        vec![
            (5, TicketStatus::Active, EndReason::Paid),
            (9, TicketStatus::Active, EndReason::Paid),
            (3, TicketStatus::Active, EndReason::Paid),
        ]
    );
    assert!(pending.iter().all(|p| p.payer == payer));
    store.finish().await;
}

/// The use case as a server wires it for a line in another store: payments to the outbox, and a
/// relay over `line` applying each payment's end before the answer.
async fn paying_through_the_outbox(
    store: &PgStore,
    payments_pool: &PgPool,
    line: Arc<dyn QueueRepository>,
) -> PayReservation {
    let services = instance(store, fixed(NOW), HoldLimit::DEFAULT).await;
    let relay = RelayTicketEnds::new(RelayTicketEndsPorts {
        outbox: Arc::new(PgTicketEndOutbox::new(payments_pool.clone())),
        queue: line,
        lines: services.lines.clone(),
        admission: Arc::new(NoAdmission),
        clock: fixed(NOW),
    });
    PayReservation::new(PayReservationPorts {
        authorize: services.authorize.clone(),
        payments: Arc::new(outbox_payments(payments_pool)),
        idempotency: store.idempotency(),
        admission: Arc::new(NoAdmission),
        clock: fixed(NOW),
    })
    .with_ticket_end_relay(Arc::new(relay))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_through_the_outbox_ends_the_token_before_it_is_answered() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;
    let pay = paying_through_the_outbox(&store, &store.ctx.pool, store.queue()).await;

    pay.execute(PayReservationCommand {
        claims: claims(buyer, ticket),
        reservation,
        idempotency_key: None,
    })
    .await
    .expect("paid");

    assert_eq!(stored_end_reason(&store, ticket).await, 1);
    assert_eq!(outbox_rows(&store.ctx.pool).await, 0);
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_end_whose_process_died_after_the_payment_is_applied_by_the_next_process() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;

    // The first process: its line answers nothing after the payment (its one connection is
    // taken), so the payment commits and then waits to end the ticket; it dies right there.
    let first = store.ctx.db.pool(2);
    let stuck_line = {
        let mut config = store.ctx.db.config();
        config.max_connections = 1;
        config.acquire_timeout = StdDuration::from_secs(120);
        concert_postgres::build_pool(&config).expect("a pool")
    };
    let taken = stuck_line.get().await.expect("the line's one connection");
    let pay = paying_through_the_outbox(
        &store,
        &first,
        Arc::new(PgQueueRepository::new(stuck_line.clone())),
    )
    .await;
    let paying = tokio::spawn(async move {
        pay.execute(PayReservationCommand {
            claims: claims(buyer, ticket),
            reservation,
            idempotency_key: None,
        })
        .await
    });
    let mut waited = 0;
    while outbox_rows(&store.ctx.pool).await == 0 {
        assert!(waited < 1_500, "the payment never committed");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
        waited += 1;
    }
    paying.abort();
    assert!(
        paying.await.expect_err("killed").is_cancelled(),
        "the payment was never answered"
    );
    drop(taken);
    stuck_line.close();
    first.close();
    assert_eq!(
        store
            .ctx
            .count("SELECT count(*) AS count FROM payments")
            .await,
        1
    );
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");

    // The next process: a new pool, a new relay, at start.
    let next = store.ctx.db.pool(2);
    let relay = relay_over(&next, NOW + Duration::seconds(5));
    let settled = relay.relay_pending(RELAY_BATCH).await.expect("relayed");

    assert_eq!(settled, 1);
    assert_eq!(stored_end_reason(&store, ticket).await, 1);
    assert_eq!(outbox_rows(&next).await, 0);
    assert_eq!(
        relay.relay_pending(RELAY_BATCH).await.expect("relayed"),
        0,
        "nothing left"
    );
    next.close();
    store.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_drops_an_end_whose_number_now_names_another_ticket() {
    let store = PgStore::fresh().await;
    let (buyer, reservation, ticket) = ready_to_pay(&store).await;
    let write = decide_payment(&store, reservation, buyer, paid(ticket), NOW, None)
        .await
        .expect("payable");
    outbox_payments(&store.ctx.pool)
        .save(&write)
        .await
        .expect("save");
    // As after the line's store started again empty: the number went to someone else.
    let someone = user();
    store
        .ctx
        .execute(&format!(
            "UPDATE queue_tickets SET user_id = '{someone}' WHERE ticket = {}",
            ticket.get()
        ))
        .await;

    let relay = relay_over(&store.ctx.pool, NOW + Duration::seconds(1));
    let pending = PgTicketEndOutbox::new(store.ctx.pool.clone())
        .pending(1)
        .await
        .expect("pending");
    let applied = relay.apply(&pending[0]).await.expect("applied");

    assert_eq!(applied, AppliedEnd::Dropped);
    assert_eq!(ticket_status(&store.ctx, ticket).await, "ACTIVE");
    assert_eq!(outbox_rows(&store.ctx.pool).await, 0);
    store.finish().await;
}
