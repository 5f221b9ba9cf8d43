//! Races of the waiting line through the real use cases (`IssueQueueToken`, `AdmitNextInLine`,
//! `AuthorizeRequest`) over the PostgreSQL adapters, split over two pools as two instances of the
//! service would be: many tasks released together by a barrier, each on its own pooled
//! connection, and every assertion an exact count.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use concert_application::admit_next_in_line::AdmitNextInLine;
use concert_application::authorize_request::{AuthorizeError, AuthorizeRequest};
use concert_application::issue_queue_token::{IssueQueueToken, IssuedToken};
use concert_application::ports::{
    Clock, InvalidToken, QueueRepository, TicketEnd, TokenClaims, TokenSigner, Written,
};
use concert_application::queue_access::QueueAccess;
use concert_application::room_lines::RoomLines;
use concert_domain::{EndReason, QueuePolicy, RoomId, TicketNo, TicketStatus, UserId};
use concert_postgres::{PgPool, PgQueueRepository};
use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use time::Duration;

use crate::support::{Ctx, NOW, SkewedClock, fixed, race, user};

/// Tokens carry the ticket number, so that a test can read which ticket a request was given.
struct NumberSigner;

impl TokenSigner for NumberSigner {
    fn sign(&self, claims: &TokenClaims) -> String {
        claims.ticket.get().to_string()
    }
    fn verify(&self, _token: &str) -> Result<TokenClaims, InvalidToken> {
        Err(InvalidToken)
    }
}

fn ticket_of(issued: &IssuedToken) -> i64 {
    issued.token.parse().expect("a ticket number")
}

/// The queue's use cases of one instance, on `pool`.
struct Instance {
    issue: IssueQueueToken,
    admit: AdmitNextInLine,
    authorize: AuthorizeRequest,
    lines: RoomLines,
    clock: Arc<dyn Clock>,
}

fn instance(pool: &PgPool, clock: Arc<dyn Clock>, policy: QueuePolicy) -> Arc<Instance> {
    let queue: Arc<dyn QueueRepository> = Arc::new(PgQueueRepository::new(pool.clone()));
    let lines = RoomLines::new(Arc::clone(&queue), policy);
    let access = QueueAccess::new(
        Arc::new(NumberSigner),
        Arc::clone(&queue),
        Arc::clone(&clock),
        lines.clone(),
        policy,
    );
    let rooms = Arc::new(concert_postgres::PgRoomRepository::new(pool.clone()));
    Arc::new(Instance {
        issue: IssueQueueToken::new(
            access.clone(),
            rooms.clone(),
            Arc::new(crate::support::NoAdmission),
        ),
        admit: AdmitNextInLine::new(
            queue,
            rooms,
            lines.clone(),
            Arc::clone(&clock),
            policy,
            Arc::new(concert_clock::SystemRandom),
        ),
        authorize: AuthorizeRequest::new(access),
        lines,
        clock,
    })
}

/// Two instances, one per pool of `ctx`, each on its own clock.
fn two_instances(
    ctx: &Ctx,
    clocks: [Arc<dyn Clock>; 2],
    policy: QueuePolicy,
) -> [Arc<Instance>; 2] {
    let [first, second] = clocks;
    [
        instance(ctx.pool_of(0), first, policy),
        instance(ctx.pool_of(1), second, policy),
    ]
}

fn policy(max_active: u32) -> QueuePolicy {
    QueuePolicy {
        max_active,
        active_ttl: Duration::minutes(10),
        idle_timeout: Duration::minutes(2),
        waiting_idle: None,
    }
}

/// 20 token requests of one user at once, over both instances: exactly one draws a number, every
/// answer is that ticket. Returns it.
async fn twenty_requests_of(apps: &[Arc<Instance>; 2], someone: UserId) -> i64 {
    let answers = race(20, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.issue
                .execute(someone, &RoomId::default_room())
                .await
                .expect("issue")
        }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|a| a.created).count(),
        1,
        "one request drew the number"
    );
    let tickets: HashSet<i64> = answers.iter().map(ticket_of).collect();
    assert_eq!(
        tickets.len(),
        1,
        "every answer is the same ticket: {tickets:?}"
    );
    assert!(
        answers
            .iter()
            .all(|a| a.status.status == TicketStatus::Waiting)
    );
    ticket_of(&answers[0])
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_token_requests_of_one_user_make_one_ticket_and_no_gap() {
    let ctx = Ctx::with_two_pools(10).await;
    ctx.warm_up(10).await;
    let apps = two_instances(&ctx, [fixed(NOW), fixed(NOW)], policy(1_000));

    // Several users in turn, each with 20 requests at once: their numbers follow each other.
    let mut drawn = Vec::new();
    let mut users = Vec::new();
    for _ in 0..5 {
        let someone = user();
        users.push(someone);
        drawn.push(twenty_requests_of(&apps, someone).await);
    }
    assert_eq!(drawn, (1..=5).collect::<Vec<_>>(), "no gap between them");

    // One of them is admitted and runs out (active deadline passed); 20 requests at once on
    // instances whose clocks are past it: the old ticket ends once and one new number is drawn.
    let report = apps[0]
        .admit
        .run_once()
        .await
        .expect("admit")
        .default_room()
        .expect("step");
    assert_eq!(report.admitted, 5);
    let late = two_instances(
        &ctx,
        [
            fixed(NOW + Duration::minutes(11)),
            fixed(NOW + Duration::minutes(11)),
        ],
        policy(1_000),
    );
    let renewed = twenty_requests_of(&late, users[2]).await;
    assert_eq!(renewed, 6);
    assert_eq!(
        ctx.count(
            "SELECT count(*) AS count FROM queue_tickets WHERE ticket = 3 AND status = 'EXPIRED'"
        )
        .await,
        1
    );

    // The losers drew no number: the next new user's ticket is exactly the next one.
    let next = apps[1]
        .issue
        .execute(user(), &RoomId::default_room())
        .await
        .expect("issue");
    assert!(next.created);
    assert_eq!(ticket_of(&next), 7, "the losers consumed no ticket number");
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        7
    );
    assert_eq!(
        ctx.count(&format!(
            "SELECT version AS count FROM queue_members WHERE user_id = '{}'",
            users[2]
        ))
        .await,
        2,
        "the place moved once per ticket"
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_members WHERE version = 1")
            .await,
        5
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_users_joining_at_once_get_the_numbers_one_to_two_hundred() {
    let ctx = Ctx::with_two_pools(25).await;
    ctx.warm_up(25).await;
    let apps = two_instances(&ctx, [fixed(NOW), fixed(NOW)], policy(1_000));

    let answers = race(200, |i| {
        let app = Arc::clone(&apps[i % 2]);
        async move {
            app.issue
                .execute(user(), &RoomId::default_room())
                .await
                .expect("issue")
        }
    })
    .await;

    assert!(answers.iter().all(|a| a.created));
    let mut numbers: Vec<i64> = answers.iter().map(ticket_of).collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (1..=200).collect::<Vec<_>>(),
        "unique and gap-free"
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets WHERE status = 'WAITING'")
            .await,
        200
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_members WHERE version = 1")
            .await,
        200
    );
    let snapshot = apps[0]
        .lines
        .default_line()
        .refresh(NOW)
        .await
        .expect("snapshot");
    assert_eq!(
        (snapshot.waiting, snapshot.active, snapshot.admitted_total),
        (200, 0, 0)
    );
    ctx.finish().await;
}

/// The line in one statement (one snapshot of committed state).
#[derive(Debug, QueryableByName, PartialEq, Eq)]
struct Line {
    #[diesel(sql_type = BigInt)]
    active: i64,
    /// Waiting tickets with a smaller number than some admitted ticket (FIFO: always 0).
    #[diesel(sql_type = BigInt)]
    passed: i64,
    #[diesel(sql_type = BigInt)]
    admitted: i64,
    #[diesel(sql_type = BigInt)]
    admitted_total: i64,
    #[diesel(sql_type = BigInt)]
    highest_admitted: i64,
    #[diesel(sql_type = BigInt)]
    serving: i64,
    #[diesel(sql_type = BigInt)]
    waiting: i64,
    /// The waiting count as the snapshot computes it from the counters.
    #[diesel(sql_type = BigInt)]
    counted_waiting: i64,
}

async fn line(pool: &PgPool) -> Line {
    use diesel_async::RunQueryDsl;
    let mut conn = pool.get().await.expect("a pooled connection");
    diesel::sql_query(
        "SELECT (SELECT count(*) FROM queue_tickets WHERE status = 'ACTIVE') AS active, \
                (SELECT count(*) FROM queue_tickets w JOIN queue_tickets a \
                   ON w.status = 'WAITING' AND a.admitted_at IS NOT NULL \
                  AND w.ticket < a.ticket) AS passed, \
                (SELECT count(*) FROM queue_tickets WHERE admitted_at IS NOT NULL) AS admitted, \
                s.admitted_total, \
                (SELECT coalesce(max(ticket), 0) FROM queue_tickets \
                  WHERE admitted_at IS NOT NULL) AS highest_admitted, \
                s.serving, \
                (SELECT count(*) FROM queue_tickets WHERE status = 'WAITING') AS waiting, \
                s.issued_total - s.admitted_total \
                  + (SELECT count(*) FROM queue_tickets t WHERE t.ticket > s.issued_hwm) \
                  AS counted_waiting \
         FROM queue_state s WHERE s.line = 0",
    )
    .get_result(&mut conn)
    .await
    .expect("line")
}

fn check(line: &Line, max_active: u32) {
    assert!(
        line.active <= i64::from(max_active),
        "more than {max_active} active: {line:?}"
    );
    assert_eq!(
        line.passed, 0,
        "a later ticket was admitted first: {line:?}"
    );
    assert_eq!(
        line.admitted_total, line.admitted,
        "admitted_total: {line:?}"
    );
    assert_eq!(line.serving, line.highest_admitted, "serving: {line:?}");
    assert_eq!(
        line.counted_waiting, line.waiting,
        "waiting count: {line:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_steps_on_two_instances_while_users_join_keep_the_limit_and_the_order() {
    const USERS: usize = 40;
    const STEPPERS: usize = 8;
    let ctx = Ctx::with_two_pools(12).await;
    ctx.warm_up(12).await;
    // Real clocks (the second 50 ms behind) and short deadlines, so that admitted tickets idle
    // out within 200 ms and the line keeps moving while users join.
    let short = QueuePolicy {
        max_active: 5,
        active_ttl: Duration::milliseconds(300),
        idle_timeout: Duration::milliseconds(100),
        waiting_idle: None,
    };
    let apps = two_instances(
        &ctx,
        [
            Arc::new(SkewedClock(Duration::ZERO)),
            Arc::new(SkewedClock(Duration::milliseconds(-50))),
        ],
        short,
    );
    let admitted = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));

    let results = race(USERS + STEPPERS, |i| {
        let app = Arc::clone(&apps[i % 2]);
        let pool = ctx.pool_of(i).clone();
        let (admitted, expired) = (Arc::clone(&admitted), Arc::clone(&expired));
        async move {
            if i < USERS {
                // Users arrive over about 0.8 s.
                tokio::time::sleep(StdDuration::from_millis(20 * (i as u64 / 2))).await;
                let issued = app
                    .issue
                    .execute(user(), &RoomId::default_room())
                    .await
                    .expect("issue");
                assert!(issued.created);
                return (0, 0);
            }
            let (mut steps, mut stale) = (0, 0);
            let deadline = Instant::now() + StdDuration::from_secs(30);
            while admitted.load(Ordering::SeqCst) < USERS as u64 {
                assert!(Instant::now() < deadline, "the line stopped moving");
                match app.admit.run_once().await.expect("admit").default_room() {
                    Some(report) => {
                        admitted.fetch_add(report.admitted, Ordering::SeqCst);
                        expired.fetch_add(report.expired, Ordering::SeqCst);
                        steps += 1;
                    }
                    None => stale += 1,
                }
                check(&line(&pool).await, short.max_active);
                tokio::time::sleep(StdDuration::from_millis(5)).await;
            }
            (steps, stale)
        }
    })
    .await;

    let steps: u64 = results.iter().map(|r| r.0).sum();
    let stale: u64 = results.iter().map(|r| r.1).sum();
    assert!(steps > 0);
    eprintln!("{steps} admission steps written, {stale} stale");
    let end = line(&ctx.pool).await;
    check(&end, short.max_active);
    assert_eq!(
        (end.admitted, end.waiting, end.highest_admitted),
        (USERS as i64, 0, USERS as i64),
        "every ticket admitted, once: {end:?}"
    );
    assert_eq!(admitted.load(Ordering::SeqCst), USERS as u64);
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets")
            .await,
        USERS as i64
    );
    assert_eq!(
        ctx.count("SELECT count(*) AS count FROM queue_tickets WHERE status = 'EXPIRED'")
            .await,
        i64::try_from(expired.load(Ordering::SeqCst)).expect("count"),
        "each end reported once"
    );
    let snapshot = apps[1]
        .lines
        .default_line()
        .refresh(apps[1].clock.now())
        .await
        .expect("snapshot");
    assert_eq!(
        (
            snapshot.serving.get(),
            snapshot.admitted_total,
            snapshot.waiting,
            snapshot.active
        ),
        (
            USERS as i64,
            USERS as u64,
            0,
            u64::try_from(end.active).expect("count")
        )
    );
    ctx.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_at_the_idle_deadline_and_the_step_ending_the_ticket_never_both_take_effect() {
    let ctx = Ctx::with_two_pools(4).await;
    ctx.warm_up(4).await;
    let deadline = NOW + policy(1).idle_deadline_after_activity();
    let just_before = deadline - Duration::milliseconds(1);
    // Instance 0 serves the user's request just before the idle deadline; instance 1 runs the
    // admission step at it. Joins and admissions at `NOW` on a third set of use cases.
    let setup = instance(&ctx.pool, fixed(NOW), policy(1));
    let apps = two_instances(&ctx, [fixed(just_before), fixed(deadline)], policy(1));
    let queue = ctx.queue();
    let (mut kept, mut ended) = (0, 0);

    let mut stale_steps = 0;
    for round in 0..30_u64 {
        let someone = user();
        let ticket = ticket_of(
            &setup
                .issue
                .execute(someone, &RoomId::default_room())
                .await
                .expect("issue"),
        );
        let ticket = TicketNo::new(ticket).expect("ticket");
        let report = setup
            .admit
            .run_once()
            .await
            .expect("admit")
            .default_room()
            .expect("step");
        assert_eq!(report.admitted, 1);
        apps[0]
            .lines
            .default_line()
            .refresh(NOW)
            .await
            .expect("refresh");
        let claims = TokenClaims {
            user: someone,
            ticket,
            issued_at: NOW,
        };

        let [request, step] = [0, 1].map(|i| Arc::clone(&apps[i]));
        let (authorized, stepped) = tokio::join!(
            // The request leaves 0 to 2.5 ms after the step, so that every order occurs.
            tokio::spawn(async move {
                tokio::time::sleep(StdDuration::from_micros(500 * (round % 6))).await;
                request.authorize.authorize(&claims).await
            }),
            tokio::spawn(async move { step.admit.run_once().await.expect("admit").default_room() }),
        );
        let (authorized, stepped) = (authorized.expect("request"), stepped.expect("step"));
        let stored = queue.find(ticket).await.expect("find").expect("ticket");
        match stored.stored_status() {
            TicketStatus::Active => {
                // The request's activity won: the step wrote nothing.
                kept += 1;
                stale_steps += u32::from(stepped.is_none());
                assert_eq!(stored.last_seen(), Some(just_before), "{authorized:?}");
                assert!(authorized.is_ok(), "{authorized:?}");
                assert!(
                    stepped.is_none_or(|r| r.expired == 0),
                    "a step that ended nothing reported {stepped:?}"
                );
                let end = TicketEnd {
                    ticket,
                    read_as: TicketStatus::Active,
                    reason: EndReason::Left,
                };
                assert_eq!(
                    queue.end(&end, deadline).await.expect("end"),
                    Written::Done(())
                );
            }
            TicketStatus::Expired => {
                // The step's end won: the request's activity was not written over it.
                ended += 1;
                assert_eq!(
                    stored.last_seen(),
                    Some(NOW),
                    "an ended ticket took the activity of a request that kept it alive"
                );
                assert_eq!(stepped.map(|r| r.expired), Some(1));
                assert!(
                    matches!(authorized, Ok(_) | Err(AuthorizeError::TokenExpired)),
                    "{authorized:?}"
                );
            }
            TicketStatus::Waiting => panic!("ticket {} waiting again", ticket.get()),
        }
    }
    assert_eq!(kept + ended, 30);
    eprintln!(
        "activity kept {kept} tickets alive ({stale_steps} steps stale), the step ended {ended}"
    );
    ctx.finish().await;
}
