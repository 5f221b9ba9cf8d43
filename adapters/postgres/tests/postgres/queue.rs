//! `PgQueueRepository`: tickets, admission, deadlines and the snapshot.

use concert_application::ports::QueueRepository;
use concert_domain::{QueuePolicy, TicketNo, TicketStatus};
use time::Duration;

use crate::support::{Ctx, NOW, user};

fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_gets_one_live_ticket_and_asking_again_returns_it() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let first_user = user();
    let first = queue
        .issue(first_user, NOW, &QueuePolicy::default())
        .await
        .expect("issue");
    assert!(first.created);
    assert_eq!(first.ticket.status, TicketStatus::Waiting);
    assert_eq!(first.ticket.user, first_user);
    assert_eq!(first.ticket.issued_at, NOW);
    assert_eq!(first.ticket.active_until, None);

    let again = queue
        .issue(
            first_user,
            NOW + Duration::seconds(5),
            &QueuePolicy::default(),
        )
        .await
        .expect("issue");
    assert!(!again.created);
    assert_eq!(again.ticket, first.ticket);

    let second = queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue");
    assert_eq!(
        second.ticket.ticket.get(),
        first.ticket.ticket.get() + 1,
        "no gap"
    );
    assert_eq!(
        queue.find(first.ticket.ticket).await.expect("find"),
        Some(first.ticket.clone())
    );
    let missing = TicketNo::new(first.ticket.ticket.get() + 100).expect("ticket");
    assert_eq!(queue.find(missing).await.expect("find"), None);
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_fills_free_slots_in_ticket_order_and_moves_the_counters() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let mut tickets = Vec::new();
    for _ in 0..5 {
        tickets.push(
            queue
                .issue(user(), NOW, &QueuePolicy::default())
                .await
                .expect("issue")
                .ticket
                .ticket,
        );
    }
    let before = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (
            before.serving.get(),
            before.admitted_total,
            before.waiting,
            before.active
        ),
        (0, 0, 5, 0)
    );

    let report = queue.admit(&policy(2), NOW).await.expect("admit");
    assert_eq!(
        (report.expired, report.admitted, report.serving.get()),
        (0, 2, tickets[1].get())
    );
    for (i, ticket) in tickets.iter().enumerate() {
        let stored = queue.find(*ticket).await.expect("find").expect("ticket");
        let expected = if i < 2 {
            TicketStatus::Active
        } else {
            TicketStatus::Waiting
        };
        assert_eq!(stored.status, expected, "ticket {i}");
        if i < 2 {
            assert_eq!(stored.active_until, Some(NOW + Duration::minutes(10)));
            assert_eq!(stored.last_seen, Some(NOW));
        }
    }
    queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue");
    let after = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (
            after.serving.get(),
            after.admitted_total,
            after.waiting,
            after.active
        ),
        (tickets[1].get(), 2, 4, 2)
    );
    // No free slot: nothing moves.
    let report = queue.admit(&policy(2), NOW).await.expect("admit");
    assert_eq!(
        (report.admitted, report.serving.get()),
        (0, tickets[1].get())
    );
    let still = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (still.waiting, still.active, still.admitted_total),
        (4, 2, 2)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn active_tickets_end_at_their_active_or_idle_deadline_and_make_room() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let busy = queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue")
        .ticket
        .ticket;
    let idle = queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue")
        .ticket
        .ticket;
    let waiting = queue
        .issue(user(), NOW, &QueuePolicy::default())
        .await
        .expect("issue")
        .ticket
        .ticket;
    queue.admit(&policy(2), NOW).await.expect("admit");

    // `busy` is used every minute; `idle` never after admission. A waiting ticket's activity is
    // not recorded.
    for minute in 1..=3 {
        queue
            .record_activity(busy, NOW + Duration::minutes(minute))
            .await
            .expect("activity");
    }
    queue
        .record_activity(waiting, NOW + Duration::minutes(1))
        .await
        .expect("activity");
    assert_eq!(
        queue
            .find(waiting)
            .await
            .expect("find")
            .expect("ticket")
            .last_seen,
        None
    );
    // An older activity never moves last_seen back.
    queue.record_activity(busy, NOW).await.expect("activity");
    assert_eq!(
        queue
            .find(busy)
            .await
            .expect("find")
            .expect("ticket")
            .last_seen,
        Some(NOW + Duration::minutes(3))
    );

    let report = queue
        .admit(&policy(2), NOW + policy(2).idle_deadline_after_activity())
        .await
        .expect("admit");
    assert_eq!(
        (report.expired, report.admitted),
        (1, 1),
        "the idle ticket ended, the next came in"
    );
    assert_eq!(
        queue
            .find(idle)
            .await
            .expect("find")
            .expect("ticket")
            .status,
        TicketStatus::Expired
    );
    assert_eq!(
        queue
            .find(waiting)
            .await
            .expect("find")
            .expect("ticket")
            .status,
        TicketStatus::Active
    );
    assert_eq!(report.serving.get(), waiting.get());

    // The active deadline ends even a busy ticket.
    queue
        .record_activity(busy, NOW + Duration::minutes(9))
        .await
        .expect("activity");
    queue
        .record_activity(waiting, NOW + Duration::minutes(9))
        .await
        .expect("activity");
    let report = queue
        .admit(&policy(2), NOW + Duration::minutes(10))
        .await
        .expect("admit");
    assert_eq!(report.expired, 1);
    assert_eq!(
        queue
            .find(busy)
            .await
            .expect("find")
            .expect("ticket")
            .status,
        TicketStatus::Expired
    );
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!(
        (snapshot.active, snapshot.waiting, snapshot.admitted_total),
        (1, 0, 3)
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_active_ticket_ran_out_gets_a_new_one() {
    let ctx = Ctx::new().await;
    let queue = ctx.queue();
    let someone = user();
    let first = queue
        .issue(someone, NOW, &policy(10))
        .await
        .expect("issue")
        .ticket
        .ticket;
    queue.admit(&policy(10), NOW).await.expect("admit");

    // Still active within the idle timeout: the same ticket.
    let same = queue
        .issue(someone, NOW + Duration::seconds(60), &policy(10))
        .await
        .expect("issue");
    assert!(!same.created);
    assert_eq!(same.ticket.ticket, first);
    assert_eq!(same.ticket.status, TicketStatus::Active);

    // Idle past the timeout, before any admission step noticed: a new waiting ticket.
    let renewed = queue
        .issue(
            someone,
            NOW + policy(10).idle_deadline_after_activity(),
            &policy(10),
        )
        .await
        .expect("issue");
    assert!(renewed.created);
    assert!(renewed.ticket.ticket > first);
    assert_eq!(renewed.ticket.status, TicketStatus::Waiting);
    assert_eq!(
        queue
            .find(first)
            .await
            .expect("find")
            .expect("ticket")
            .status,
        TicketStatus::Expired
    );
    ctx.finish().await;
}
