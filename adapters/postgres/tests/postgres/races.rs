//! Races with real parallelism: many tasks, each on its own pooled connection, released together
//! by a barrier. Every assertion is an exact count.

use std::collections::HashSet;

use concert_application::ports::{
    ChargeOutcome, ChargeRequest, HoldOutcome, PaymentOutcome, PaymentRepository, QueueRepository,
    ReservationRepository, WalletRepository,
};
use concert_domain::{HoldLimit, QueuePolicy, TicketStatus};
use time::Duration;

use crate::payments::{active_ticket, pay_request};
use crate::support::{
    Ctx, MAX_BALANCE, NOW, amount, charge, concert, count_on, hold, hold_request, key, race, user,
};

/// Waiting tickets with a smaller number than some active ticket: always zero under FIFO.
const PASSED_SQL: &str = "SELECT count(*) AS count FROM queue_tickets w JOIN queue_tickets a \
     ON w.status = 'WAITING' AND a.status = 'ACTIVE' AND w.ticket < a.ticket";

#[tokio::test(flavor = "multi_thread")]
async fn fifty_holds_of_one_seat_make_exactly_one_hold() {
    let ctx = Ctx::with_connections(50).await;
    let id = concert(&ctx, 10).await;
    ctx.warm_up(50).await;
    let repo = ctx.reservations();

    let outcomes = race(50, |_| {
        let repo = repo.clone();
        let request = hold_request(user(), id, 7, NOW);
        async move { repo.hold(&request).await.expect("hold") }
    })
    .await;

    let held = outcomes
        .iter()
        .filter(|o| matches!(o, HoldOutcome::Held(_)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == HoldOutcome::SeatUnavailable)
        .count();
    assert_eq!((held, refused), (1, 49));
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM reservations")
            .await,
        1,
        "losers rolled back"
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM seats WHERE held_by_reservation IS NOT NULL")
            .await,
        1
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_holds_of_one_user_stop_exactly_at_the_limit() {
    let ctx = Ctx::with_connections(20).await;
    let id = concert(&ctx, 50).await;
    ctx.warm_up(20).await;
    let repo = ctx.reservations();
    let holder = user();

    let outcomes = race(20, |i| {
        let repo = repo.clone();
        let mut request = hold_request(holder, id, i as i64 + 1, NOW);
        request.limit = HoldLimit::DEFAULT;
        async move { repo.hold(&request).await.expect("hold") }
    })
    .await;

    let held = outcomes
        .iter()
        .filter(|o| matches!(o, HoldOutcome::Held(_)))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| **o == HoldOutcome::HoldLimitReached)
        .count();
    assert_eq!((held, limited), (HoldLimit::DEFAULT.get() as usize, 16));
    assert_eq!(repo.count_live_holds(NOW).await.expect("count"), 4);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_parallel_charges_add_up_exactly_with_one_entry_each() {
    let ctx = Ctx::with_connections(50).await;
    ctx.warm_up(50).await;
    let wallets = ctx.wallets();
    let someone = user(); // a new user: the wallet itself is created under the race

    let outcomes = race(50, |i| {
        let wallets = wallets.clone();
        let request = ChargeRequest {
            user: someone,
            amount: amount(i as i64 + 1),
            max_balance: MAX_BALANCE,
            now: NOW,
            idempotency: None,
        };
        async move { wallets.charge(&request).await.expect("charge") }
    })
    .await;

    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, ChargeOutcome::Charged(_)))
    );
    let expected: i64 = (1..=50).sum();
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        expected
    );
    let history = wallets.history(someone, 100, None).await.expect("history");
    assert_eq!(history.len(), 50);
    assert!(concert_domain::wallet::ledger_is_consistent(
        &history,
        concert_domain::Balance::new(expected).expect("balance")
    ));
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_payments_of_one_reservation_pay_once() {
    let ctx = Ctx::with_connections(20).await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 1_000_000).await;
    let ticket = active_ticket(&ctx, buyer).await;
    let reservation = hold(&ctx, buyer, id, 5, NOW).await;
    ctx.warm_up(20).await;
    let payments = ctx.payments();

    let outcomes = race(20, |_| {
        let payments = payments.clone();
        let request = pay_request(&reservation, buyer, ticket, NOW);
        async move { payments.pay(&request).await.expect("pay") }
    })
    .await;

    let paid = outcomes
        .iter()
        .filter(|o| matches!(o, PaymentOutcome::Paid(_)))
        .count();
    let not_held = outcomes
        .iter()
        .filter(|o| **o == PaymentOutcome::ReservationNotHeld)
        .count();
    assert_eq!((paid, not_held), (1, 19));
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM ledger_entries WHERE kind = 'PAYMENT'")
            .await,
        1
    );
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        880_000
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_payments_with_a_balance_for_one_never_go_negative() {
    let ctx = Ctx::with_connections(10).await;
    let id = concert(&ctx, 10).await;
    let buyer = user();
    charge(&ctx, buyer, 150_000).await; // one seat at 120,000
    let ticket = active_ticket(&ctx, buyer).await;
    let first = hold(&ctx, buyer, id, 1, NOW).await;
    let second = hold(&ctx, buyer, id, 2, NOW).await;
    ctx.warm_up(10).await;
    let payments = ctx.payments();

    for _round in 0..1 {
        let outcomes = race(2, |i| {
            let payments = payments.clone();
            let reservation = if i == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let request = pay_request(&reservation, buyer, ticket, NOW);
            async move { payments.pay(&request).await.expect("pay") }
        })
        .await;
        let paid = outcomes
            .iter()
            .filter(|o| matches!(o, PaymentOutcome::Paid(_)))
            .count();
        let short = outcomes
            .iter()
            .filter(|o| **o == PaymentOutcome::InsufficientBalance)
            .count();
        assert_eq!((paid, short), (1, 1));
    }
    assert_eq!(
        ctx.wallets().balance(buyer).await.expect("balance").get(),
        30_000
    );
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM wallets WHERE balance < 0")
            .await,
        0
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_in_parallel_takes_effect_once() {
    let ctx = Ctx::with_connections(20).await;
    ctx.warm_up(20).await;
    let wallets = ctx.wallets();
    let someone = user();

    let outcomes = race(20, |_| {
        let wallets = wallets.clone();
        let request = ChargeRequest {
            user: someone,
            amount: amount(700),
            max_balance: MAX_BALANCE,
            now: NOW,
            idempotency: Some(key("same-key")),
        };
        async move { wallets.charge(&request).await.expect("charge") }
    })
    .await;
    let charged = outcomes
        .iter()
        .filter(|o| matches!(o, ChargeOutcome::Charged(_)))
        .count();
    let used = outcomes
        .iter()
        .filter(|o| **o == ChargeOutcome::KeyAlreadyUsed)
        .count();
    assert_eq!((charged, used), (1, 19));
    assert_eq!(wallets.balance(someone).await.expect("balance").get(), 700);
    assert_eq!(
        wallets
            .history(someone, 100, None)
            .await
            .expect("history")
            .len(),
        1
    );

    // The same for a payment: one payment, one debit.
    let id = concert(&ctx, 10).await;
    charge(&ctx, someone, 1_000_000).await;
    let ticket = active_ticket(&ctx, someone).await;
    let reservation = hold(&ctx, someone, id, 3, NOW).await;
    let payments = ctx.payments();
    let outcomes = race(20, |_| {
        let payments = payments.clone();
        let mut request = pay_request(&reservation, someone, ticket, NOW);
        request.idempotency = Some(key("same-payment-key"));
        async move { payments.pay(&request).await.expect("pay") }
    })
    .await;
    let paid = outcomes
        .iter()
        .filter(|o| matches!(o, PaymentOutcome::Paid(_)))
        .count();
    let used = outcomes
        .iter()
        .filter(|o| **o == PaymentOutcome::KeyAlreadyUsed)
        .count();
    assert_eq!((paid, used), (1, 19));
    assert_eq!(ctx.count("SELECT count(*) AS count FROM payments").await, 1);
    assert_eq!(
        wallets.balance(someone).await.expect("balance").get(),
        700 + 1_000_000 - 120_000
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap() {
    let ctx = Ctx::with_connections(20).await;
    ctx.warm_up(20).await;
    let queue = ctx.queue();
    let someone = user();

    let issued = race(20, |_| {
        let queue = queue.clone();
        async move {
            queue
                .issue(someone, NOW, &QueuePolicy::default())
                .await
                .expect("issue")
        }
    })
    .await;

    assert_eq!(issued.iter().filter(|i| i.created).count(), 1);
    let tickets: HashSet<_> = issued.iter().map(|i| i.ticket.ticket).collect();
    assert_eq!(tickets.len(), 1, "everyone got the same ticket");
    let next = queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue");
    assert_eq!(
        next.ticket.ticket.get(),
        issued[0].ticket.ticket.get() + 1,
        "the losers consumed no ticket number"
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_admission_steps_admit_each_ticket_once_in_ticket_order() {
    let ctx = Ctx::with_connections(20).await;
    let queue = ctx.queue();
    let mut issued = Vec::new();
    for _ in 0..30 {
        issued.push(
            queue
                .issue(user(), NOW, &QueuePolicy::default())
                .await
                .expect("issue")
                .ticket
                .ticket,
        );
    }
    ctx.warm_up(20).await;
    let policy = QueuePolicy {
        max_active: 12,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
    };

    let reports = race(8, |_| {
        let queue = queue.clone();
        async move { queue.admit(&policy, NOW).await.expect("admit") }
    })
    .await;

    assert_eq!(
        reports.iter().map(|r| r.admitted).sum::<u64>(),
        12,
        "each slot filled once"
    );
    for (i, ticket) in issued.iter().enumerate() {
        let status = queue
            .find(*ticket)
            .await
            .expect("find")
            .expect("ticket")
            .status;
        let expected = if i < 12 {
            TicketStatus::Active
        } else {
            TicketStatus::Waiting
        };
        assert_eq!(status, expected, "ticket {}", ticket.get());
    }
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!(snapshot.serving.get(), issued[11].get());
    assert_eq!(
        (snapshot.active, snapshot.waiting, snapshot.admitted_total),
        (12, 18, 12)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issues_racing_admission_steps_never_let_a_later_ticket_pass_an_earlier_one() {
    let ctx = Ctx::with_connections(24).await;
    ctx.warm_up(24).await;
    let queue = ctx.queue();
    let policy = QueuePolicy {
        max_active: 1_000,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
    };

    // 20 users asking for tokens (several times each) while 4 admission steps run in a loop.
    let tasks = race(24, |i| {
        let queue = queue.clone();
        let pool = ctx.pool.clone();
        async move {
            if i < 20 {
                let someone = user();
                for _ in 0..3 {
                    queue
                        .issue(someone, NOW, &QueuePolicy::default())
                        .await
                        .expect("issue");
                }
                0
            } else {
                let mut admitted = 0;
                for _ in 0..10 {
                    admitted += queue.admit(&policy, NOW).await.expect("admit").admitted;
                    // FIFO, in every committed state: no waiting ticket below an active one.
                    let passed = count_on(&pool, PASSED_SQL).await;
                    assert_eq!(
                        passed, 0,
                        "a later ticket was admitted before an earlier one"
                    );
                }
                admitted
            }
        }
    })
    .await;
    let final_step = queue.admit(&policy, NOW).await.expect("admit").admitted;
    assert_eq!(
        tasks.iter().sum::<u64>() + final_step,
        20,
        "every ticket admitted exactly once"
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        20
    );
    assert_eq!(
        ctx.count("SELECT max(ticket) - min(ticket) + 1 AS count FROM queue_tickets")
            .await,
        20,
        "no gap in the numbers"
    );
    assert_eq!(ctx.count(PASSED_SQL).await, 0);
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (snapshot.waiting, snapshot.active, snapshot.admitted_total),
        (0, 20, 20)
    );
    ctx.finish().await;
}
