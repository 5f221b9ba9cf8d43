//! `PgRetentionRepository` and `PurgeExpiredRecords` on the real store: only records past their
//! cutoff go, in batches of at most the limit, and purges running at once share the work
//! without waiting or failing.

use concert_application::charge_points::ChargePointsCommand;
use concert_application::ports::{RetentionRepository, WalletRepository};
use concert_domain::{HoldLimit, IdempotencyKey, UserId};
use concert_postgres::PgRetentionRepository;
use time::Duration;

use crate::support::{Ctx, NOW, fixed, user};

const KEYS_SQL: &str = "SELECT count(*) AS count FROM idempotency_keys";
const LEDGER_SQL: &str = "SELECT count(*) AS count FROM ledger_entries";

/// `count` charges of `who` with their own keys, stored at `at`.
async fn keyed_charges(ctx: &Ctx, who: UserId, at: time::OffsetDateTime, count: usize) {
    let services = ctx.services(0, fixed(at), HoldLimit::DEFAULT);
    for n in 0..count {
        services
            .charge_points
            .execute(ChargePointsCommand {
                user: who,
                amount: 10,
                idempotency_key: Some(
                    IdempotencyKey::parse(&format!("k{}-{n}", at.unix_timestamp())).expect("a key"),
                ),
            })
            .await
            .expect("charged");
    }
}

/// A ticket row as `status` with `ended_at` (raw: the line's own rules are tested elsewhere).
async fn ticket(ctx: &Ctx, number: i64, status: &str, ended: Option<time::OffsetDateTime>) {
    let (admitted, until, ended) = match ended {
        Some(at) => ("issued_at", "issued_at", format!("'{at}'")),
        None if status == "ACTIVE" => ("issued_at", "issued_at", "NULL".to_owned()),
        None => ("NULL", "NULL", "NULL".to_owned()),
    };
    ctx.execute(&format!(
        "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, admitted_at, \
                                    active_until, last_seen, ended_at) \
         SELECT {number}, '{}', '{status}', issued_at, {admitted}, {until}, {admitted}, {ended} \
         FROM (SELECT timestamptz '{NOW}' - interval '10 days') AS x(issued_at)",
        user()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_older_than_their_cutoff_go_in_batches_and_their_effects_stay() {
    let ctx = Ctx::new().await;
    let records = PgRetentionRepository::new(ctx.pool.clone());
    let someone = user();
    keyed_charges(&ctx, someone, NOW - Duration::days(8), 3).await;
    keyed_charges(&ctx, someone, NOW - Duration::days(6), 2).await;
    let cutoff = NOW - Duration::days(7);

    assert_eq!(
        records
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
        2
    );
    assert_eq!(
        records
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        records
            .purge_idempotency_keys(cutoff, 2)
            .await
            .expect("purge"),
        0
    );

    assert_eq!(ctx.count(KEYS_SQL).await, 2, "the younger keys stay");
    assert_eq!(
        ctx.count(LEDGER_SQL).await,
        5,
        "the charges themselves stay"
    );
    assert_eq!(
        ctx.wallets().balance(someone).await.expect("balance").get(),
        50
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_tickets_ended_before_the_cutoff_go() {
    let ctx = Ctx::new().await;
    let records = PgRetentionRepository::new(ctx.pool.clone());
    ticket(&ctx, 1, "EXPIRED", Some(NOW - Duration::hours(30))).await;
    ticket(&ctx, 2, "EXPIRED", Some(NOW - Duration::hours(2))).await;
    ticket(&ctx, 3, "ACTIVE", None).await;
    ticket(&ctx, 4, "WAITING", None).await;

    let purged = records
        .purge_ended_tickets(NOW - Duration::days(1), 100)
        .await
        .expect("purge");

    assert_eq!(purged, 1);
    assert_eq!(
        ctx.count("SELECT coalesce(sum(ticket), 0)::bigint AS count FROM queue_tickets")
            .await,
        2 + 3 + 4
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_that_left_while_waiting_stays_until_admission_passes_its_place() {
    let ctx = Ctx::new().await;
    let records = PgRetentionRepository::new(ctx.pool.clone());
    // Tickets 5 and 9 left long ago, unadmitted; the line has served up to 6.
    for number in [5, 9] {
        ctx.execute(&format!(
            "INSERT INTO queue_tickets (ticket, user_id, status, issued_at, ended_at, end_reason) \
             VALUES ({number}, '{}', 'EXPIRED', timestamptz '{NOW}' - interval '3 days', \
                     timestamptz '{NOW}' - interval '2 days', 'LEFT')",
            user()
        ))
        .await;
    }
    ctx.execute("UPDATE queue_state SET serving = 6").await;

    let purged = records
        .purge_ended_tickets(NOW - Duration::days(1), 100)
        .await
        .expect("purge");

    assert_eq!(purged, 1, "only the one the line has passed");
    assert_eq!(
        ctx.count("SELECT coalesce(sum(ticket), 0)::bigint AS count FROM queue_tickets")
            .await,
        9
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purges_running_at_once_share_the_rows_and_the_use_case_purges_everything_due() {
    let ctx = Ctx::new().await;
    keyed_charges(&ctx, user(), NOW - Duration::days(9), 60).await;
    keyed_charges(&ctx, user(), NOW, 5).await;

    let purges: Vec<_> = (0..3)
        .map(|i| {
            let records = PgRetentionRepository::new(ctx.pool_of(i % 2).clone());
            tokio::spawn(async move {
                records
                    .purge_idempotency_keys(NOW - Duration::days(7), 25)
                    .await
                    .expect("purge")
            })
        })
        .collect();
    let mut purged = 0;
    for purge in purges {
        purged += purge.await.expect("joined");
    }
    assert!(purged <= 60, "{purged}");
    let services = ctx.services(0, fixed(NOW), HoldLimit::DEFAULT);
    let report = services
        .purge_expired_records
        .run_once()
        .await
        .expect("purge");

    assert_eq!(purged + report.idempotency_keys, 60);
    assert_eq!(ctx.count(KEYS_SQL).await, 5);
    ctx.finish().await;
}
