//! Races of the waiting line (`PgQueueRepository`), driven as the use cases drive the port
//! (`queue::issue`, `queue::try_admit`).

use std::collections::HashSet;

use concert_application::ports::QueueRepository;
use concert_domain::{QueuePolicy, TicketStatus};
use time::Duration;

use crate::queue::{issue, try_admit};
use crate::support::{Ctx, NOW, count_on, race, user};

/// Waiting tickets with a smaller number than some active ticket: always zero under FIFO.
const PASSED_SQL: &str = "SELECT count(*) AS count FROM queue_tickets w JOIN queue_tickets a \
     ON w.status = 'WAITING' AND a.status = 'ACTIVE' AND w.ticket < a.ticket";

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap() {
    let ctx = Ctx::with_connections(20).await;
    ctx.warm_up(20).await;
    let queue = ctx.queue();
    let someone = user();

    let issued = race(20, |_| {
        let queue = queue.clone();
        async move { issue(&queue, someone, NOW, &QueuePolicy::default()).await }
    })
    .await;

    assert_eq!(issued.iter().filter(|i| i.created).count(), 1);
    let tickets: HashSet<_> = issued.iter().map(|i| i.ticket.ticket()).collect();
    assert_eq!(tickets.len(), 1, "everyone got the same ticket");
    let next = issue(&queue, user(), NOW, &QueuePolicy::default()).await;
    assert_eq!(
        next.ticket.ticket().get(),
        issued[0].ticket.ticket().get() + 1,
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
            issue(&queue, user(), NOW, &QueuePolicy::default())
                .await
                .ticket
                .ticket(),
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
        async move {
            try_admit(&queue, &policy, NOW)
                .await
                .map_or(0, |report| report.admitted)
        }
    })
    .await;

    assert_eq!(reports.iter().sum::<u64>(), 12, "each slot filled once");
    for (i, ticket) in issued.iter().enumerate() {
        let status = queue
            .find(*ticket)
            .await
            .expect("find")
            .expect("ticket")
            .stored_status();
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
                    issue(&queue, someone, NOW, &QueuePolicy::default()).await;
                }
                0
            } else {
                let mut admitted = 0;
                for _ in 0..10 {
                    admitted += try_admit(&queue, &policy, NOW)
                        .await
                        .map_or(0, |report| report.admitted);
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
    let final_step = try_admit(&queue, &policy, NOW)
        .await
        .map_or(0, |report| report.admitted);
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
