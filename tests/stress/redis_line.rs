//! The waiting line on Redis under faults (docs/API.md §9, "Extension: the lines on Redis"):
//! three real `concert-server` processes over one fresh database, with the line on a
//! `redis-server` of the test's own (never the machine's 6379; killed when the test ends) and
//! `QUEUE_COMMAND_TIMEOUT_MS=300`. They set their line up themselves, so `E2E_QUEUE` plays no
//! part.
//!
//! - Redis killed (SIGKILL) in the middle of a sale, with users waiting and active: every queue
//!   endpoint and every endpoint behind a token answers `503` problem+json with `Retry-After`
//!   quickly, on every instance; points, the administration of concerts and `/health/ready`
//!   keep working; an open event stream ends. Redis started again empty: every older token is
//!   `401 TOKEN_INVALID`, also after its user joins again; positions count from 1 again, and a
//!   whole journey works.
//! - Redis frozen (SIGSTOP): the same `503`s within the timeout, then the line goes on where it
//!   was (same positions, same figures, no ticket lost) once it answers again.
//! - A payment whose line step fails (Redis frozen between its PostgreSQL commit and the end of
//!   its token): answered `201`, its end kept in `ticket_end_outbox`; applied by the instances'
//!   relay jobs within about a second of Redis answering again, also when the paying instance
//!   was killed before that (then by another instance's).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use concert_e2e::{ADMIN_KEY, Answer, Client};
use concert_postgres::testing::TestDatabase;
use concert_redis::testing::{RedisServer, TestKeys};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness;
use crate::harness::audit;
use crate::harness::fleet::{Fleet, Op, Request, Window};
use crate::harness::process::{Cluster, ClusterSpec};

/// `QUEUE_COMMAND_TIMEOUT_MS` of every server here.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);
/// How much longer than the command timeout an answer may take: a loaded 2-core machine, debug
/// builds, three servers and the test itself.
const SLACK: Duration = Duration::from_millis(700);
/// A line failure must be answered within this.
const FAIL_FAST: Duration = COMMAND_TIMEOUT.saturating_add(SLACK);
/// An instance notices the line is gone (its copy of the line answers for a second after its
/// last good reading, docs/API.md §1.2) or back (its next reading, every 100 ms here) within
/// this.
const NOTICE_WITHIN: Duration = Duration::from_secs(3);
/// A payment's end left in the outbox is applied within this of Redis answering again: the
/// relay job runs every second on every instance (docs/DATABASE.md §5.13), plus slack.
const RELAYED_WITHIN: Duration = Duration::from_secs(3);
const PRICE: i64 = 10_000;

/// Three servers with the line on `redis` under the prefix of `keys`, two places at once.
async fn cluster_on(
    name: &'static str,
    redis: &RedisServer,
    keys: &TestKeys,
) -> anyhow::Result<Cluster> {
    let spec = ClusterSpec::new(name)
        .env("QUEUE_URL", redis.url())
        .env("QUEUE_KEY_PREFIX", keys.prefix())
        .env("QUEUE_COMMAND_TIMEOUT_MS", COMMAND_TIMEOUT.as_millis())
        .env("QUEUE_MAX_ACTIVE", 2);
    Cluster::start(spec, TestDatabase::create().await?).await
}

/// One user's token.
#[derive(Clone, Debug)]
struct Holder {
    user: Uuid,
    token: String,
}

/// A sale under way: a concert, two users `ACTIVE` (`QUEUE_MAX_ACTIVE=2`), three `WAITING` at
/// positions 1, 2, 3, and a hold of the first active user, who has points.
struct Sale {
    concert: i64,
    date: String,
    active: Vec<Holder>,
    waiting: Vec<Holder>,
    /// The first active user's reservation of seat 1.
    held: i64,
    /// The first active user's balance.
    balance: i64,
}

impl Sale {
    async fn open(fleet: &Fleet) -> anyhow::Result<Self> {
        let date = (time::OffsetDateTime::now_utc().date() + time::Duration::days(30)).to_string();
        let created = fleet
            .send(
                0,
                Op::Admin,
                Request::post(
                    "/v1/admin/concerts",
                    json!({"title": "Redis Gala",
                           "dates": [{"date": date, "price": PRICE, "seatCount": 20}]}),
                )
                .token(ADMIN_KEY),
            )
            .await?;
        ensure!(created.status == 201, "concert: {}", created.text);
        let concert = created.body["concertId"].as_i64().context("concertId")?;
        let mut active = Vec::new();
        for instance in 0..2 {
            let user = Uuid::new_v4();
            let token = fleet.active_token(instance, user).await?;
            active.push(Holder { user, token });
        }
        let mut waiting = Vec::new();
        for instance in 0..3 {
            let user = Uuid::new_v4();
            let joined = join(fleet, instance, user).await?;
            ensure!(
                joined.status == 201 && joined.body["status"] == "WAITING",
                "a third join with two places taken: {}",
                joined.text
            );
            let token = joined.body["token"].as_str().context("token")?.to_owned();
            waiting.push(Holder { user, token });
        }
        positions_everywhere(fleet, &waiting, &[1, 2, 3]).await?;
        let first = &active[0];
        let balance = 100_000;
        let charged = charge(fleet, 2, first.user, balance, "sale-start").await?;
        ensure!(charged.status == 200, "charge: {}", charged.text);
        let held = hold(fleet, 0, &first.token, concert, &date, 1).await?;
        ensure!(held.status == 201, "hold: {}", held.text);
        Ok(Self {
            concert,
            date,
            held: held.body["reservationId"].as_i64().context("id")?,
            active,
            waiting,
            balance,
        })
    }
}

async fn join(fleet: &Fleet, instance: usize, user: Uuid) -> anyhow::Result<Answer> {
    fleet
        .send(
            instance,
            Op::Issue,
            Request::post("/v1/queue/tokens", json!({ "userId": user.to_string() })),
        )
        .await
}

async fn status(fleet: &Fleet, instance: usize, token: &str) -> anyhow::Result<Answer> {
    fleet
        .send(
            instance,
            Op::Status,
            Request::get("/v1/queue/status").token(token),
        )
        .await
}

async fn charge(
    fleet: &Fleet,
    instance: usize,
    user: Uuid,
    amount: i64,
    key: &str,
) -> anyhow::Result<Answer> {
    fleet
        .send(
            instance,
            Op::Charge,
            Request::post(
                format!("/v1/users/{user}/points/charge"),
                json!({ "amount": amount }),
            )
            .key(key),
        )
        .await
}

async fn hold(
    fleet: &Fleet,
    instance: usize,
    token: &str,
    concert: i64,
    date: &str,
    seat: i64,
) -> anyhow::Result<Answer> {
    fleet
        .send(
            instance,
            Op::Hold,
            Request::post(
                "/v1/reservations",
                json!({ "concertId": concert, "date": date, "seatNo": seat }),
            )
            .token(token),
        )
        .await
}

async fn pay(
    fleet: &Fleet,
    instance: usize,
    token: &str,
    reservation: i64,
    key: &str,
) -> anyhow::Result<Answer> {
    fleet
        .send(
            instance,
            Op::Pay,
            Request::post("/v1/payments", json!({ "reservationId": reservation }))
                .token(token)
                .key(key),
        )
        .await
}

/// Polls every instance until each tells every holder its expected position.
async fn positions_everywhere(
    fleet: &Fleet,
    holders: &[Holder],
    expected: &[u64],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + NOTICE_WITHIN;
    for instance in 0..fleet.size() {
        for (holder, position) in holders.iter().zip(expected) {
            loop {
                let answer = status(fleet, instance, &holder.token).await?;
                if answer.status == 200
                    && answer.body["status"] == "WAITING"
                    && answer.body["position"] == *position
                {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "instance {instance} tells {} instead of position {position}",
                    answer.text
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

/// Polls every instance until the `default` room's figures read `expected` (`waiting`,
/// `active`, `issued`: the line's own counts, as each instance's view last read them).
async fn figures_everywhere(fleet: &Fleet, expected: &(Value, Value, Value)) -> anyhow::Result<()> {
    let deadline = Instant::now() + NOTICE_WITHIN;
    for instance in 0..fleet.size() {
        loop {
            let room = fleet
                .send(
                    instance,
                    Op::Admin,
                    Request::get("/v1/admin/rooms/default").token(ADMIN_KEY),
                )
                .await?;
            let figures = (
                room.body["waiting"].clone(),
                room.body["active"].clone(),
                room.body["issued"].clone(),
            );
            if figures == *expected {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "instance {instance}: the line reads {figures:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Polls `instance` until `token`'s status reads `wanted` (with `reason`, when given).
async fn wait_for_status(
    fleet: &Fleet,
    instance: usize,
    token: &str,
    wanted: &str,
    reason: Option<&str>,
    within: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let answer = status(fleet, instance, token).await?;
        if answer.status == 200
            && answer.body["status"] == wanted
            && reason.is_none_or(|reason| answer.body["reason"] == reason)
        {
            return Ok(started.elapsed());
        }
        ensure!(
            started.elapsed() < within,
            "instance {instance} still answers {} {} after {within:?}; wanted {wanted} {reason:?}",
            answer.status,
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `503 SERVICE_UNAVAILABLE` problem+json with `Retry-After`.
fn is_unavailable(answer: &Answer) -> bool {
    answer.status == StatusCode::SERVICE_UNAVAILABLE
        && answer
            .content_type()
            .starts_with("application/problem+json")
        && answer.code() == "SERVICE_UNAVAILABLE"
        && answer.header("retry-after").is_some()
}

/// Polls `token`'s status on every instance until each answers `503`; returns when the last did.
async fn noticed_everywhere(
    fleet: &Fleet,
    token: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    for instance in 0..fleet.size() {
        loop {
            let answer = status(fleet, instance, token).await?;
            if is_unavailable(&answer) {
                break;
            }
            ensure!(
                since.elapsed() < NOTICE_WITHIN,
                "instance {instance} still answers {} {} {:?} after the line went away",
                answer.status,
                answer.text,
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(since.elapsed())
}

type Probe = Pin<Box<dyn Future<Output = (String, Duration, anyhow::Result<Answer>)> + Send>>;

fn probe(
    label: String,
    request: impl Future<Output = anyhow::Result<Answer>> + Send + 'static,
) -> Probe {
    Box::pin(async move {
        let sent = Instant::now();
        let answer = request.await;
        (label, sent.elapsed(), answer)
    })
}

/// An event stream's opening as an answer (a stream where a problem was wanted is an error).
async fn events_answer(client: Client, token: String) -> anyhow::Result<Answer> {
    match client.events(&token).await? {
        Err(answer) => Ok(answer),
        Ok(mut stream) => {
            let first = stream.next(Duration::from_secs(1)).await;
            bail!("answered with a stream, whose first event is {first:?}")
        }
    }
}

/// What the probes of a line outage found.
struct Outage {
    /// Requests answered `503`.
    probes: usize,
    slowest: Duration,
    /// The new users whose join was answered `503` (one per instance).
    newcomers: Vec<Uuid>,
}

/// With the line unreachable, every instance answers every queue endpoint and every endpoint
/// behind a token (active and waiting tokens) `503` problem+json with `Retry-After` within
/// [`FAIL_FAST`].
async fn line_endpoints_unavailable(
    fleet: &std::sync::Arc<Fleet>,
    clients: &[Client],
    sale: &Sale,
) -> anyhow::Result<Outage> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut newcomers = Vec::new();
    let active = &sale.active[0];
    let (waiting, also_waiting) = (&sale.waiting[0], &sale.waiting[1]);
    let concert = sale.concert;
    let date = sale.date.clone();
    for (instance, client) in clients.iter().enumerate() {
        let f = || fleet.clone();
        let newcomer = Uuid::new_v4();
        newcomers.push(newcomer);
        probes.push(probe(format!("{instance}: join"), {
            let fleet = f();
            async move { join(&fleet, instance, newcomer).await }
        }));
        probes.push(probe(format!("{instance}: join again (waiting)"), {
            let (fleet, user) = (f(), waiting.user);
            async move { join(&fleet, instance, user).await }
        }));
        for (who, holder) in [("active", active), ("waiting", waiting)] {
            let token = holder.token.clone();
            probes.push(probe(format!("{instance}: status ({who})"), {
                let (fleet, token) = (f(), token.clone());
                async move { status(&fleet, instance, &token).await }
            }));
            probes.push(probe(
                format!("{instance}: events ({who})"),
                events_answer(client.clone(), token.clone()),
            ));
            for (op, path) in [
                (Op::Catalog, "/v1/concerts".to_owned()),
                (Op::Catalog, format!("/v1/concerts/{concert}/dates")),
                (
                    Op::Seats,
                    format!("/v1/concerts/{concert}/dates/{date}/seats"),
                ),
                (
                    Op::Seats,
                    format!("/v1/concerts/{concert}/dates/{date}/seat-map"),
                ),
                (Op::Read, format!("/v1/reservations/{}", sale.held)),
            ] {
                probes.push(probe(format!("{instance}: GET {path} ({who})"), {
                    let (fleet, token) = (f(), token.clone());
                    async move {
                        fleet
                            .send(instance, op, Request::get(path).token(token))
                            .await
                    }
                }));
            }
            probes.push(probe(format!("{instance}: hold ({who})"), {
                let (fleet, token, date) = (f(), token.clone(), date.clone());
                async move { hold(&fleet, instance, &token, concert, &date, 2).await }
            }));
            probes.push(probe(format!("{instance}: pay ({who})"), {
                let (fleet, token, held) = (f(), token.clone(), sale.held);
                async move { pay(&fleet, instance, &token, held, "during-the-outage").await }
            }));
        }
        for (who, holder) in [("active", &sale.active[1]), ("waiting", also_waiting)] {
            probes.push(probe(format!("{instance}: leave ({who})"), {
                let (fleet, token) = (f(), holder.token.clone());
                async move {
                    fleet
                        .send(
                            instance,
                            Op::Leave,
                            Request::delete("/v1/queue/tokens/current").token(token),
                        )
                        .await
                }
            }));
        }
    }
    let count = probes.len();
    let mut slowest = Duration::ZERO;
    let mut wrong = Vec::new();
    for (label, took, answer) in join_all(probes).await {
        let answer = answer.with_context(|| format!("{label}: no answer"))?;
        slowest = slowest.max(took);
        if !is_unavailable(&answer) || took > FAIL_FAST {
            wrong.push(format!(
                "{label}: {} in {took:?} (Retry-After {:?}): {}",
                answer.status,
                answer.header("retry-after"),
                answer.text
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "with the line unreachable, {} of {count} answers were not a quick 503 problem+json \
         with Retry-After:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
    Ok(Outage {
        probes: count,
        slowest,
        newcomers,
    })
}

/// With the line unreachable, points answer on every instance with exact balances and ledgers,
/// `/health/ready` stays 200 and a concert can still be created. `balance` is `user`'s before;
/// returns it after (one charge of 5,000 per instance).
async fn points_and_readiness_work(
    fleet: &Fleet,
    user: Uuid,
    mut balance: i64,
    round: &str,
) -> anyhow::Result<i64> {
    for instance in 0..fleet.size() {
        let ready = fleet
            .send(instance, Op::Ready, Request::get("/health/ready"))
            .await?;
        ensure!(
            ready.status == 200,
            "instance {instance} not ready: {}",
            ready.text
        );
        let charged = charge(fleet, instance, user, 5_000, &format!("{round}-{instance}")).await?;
        balance += 5_000;
        ensure!(
            charged.status == 200 && charged.body["balance"] == balance,
            "instance {instance}: charge answered {} {}, balance {balance} expected",
            charged.status,
            charged.text
        );
        let read = fleet
            .send(
                instance,
                Op::Balance,
                Request::get(format!("/v1/users/{user}/points")),
            )
            .await?;
        ensure!(
            read.status == 200 && read.body["balance"] == balance,
            "instance {instance}: balance {} {}, {balance} expected",
            read.status,
            read.text
        );
        let history = fleet
            .send(
                instance,
                Op::History,
                Request::get(format!("/v1/users/{user}/points/history")),
            )
            .await?;
        ensure!(
            history.status == 200 && history.body["entries"][0]["balanceAfter"] == balance,
            "instance {instance}: history {} {}",
            history.status,
            history.text
        );
    }
    let date = (time::OffsetDateTime::now_utc().date() + time::Duration::days(40)).to_string();
    let created = fleet
        .send(
            1,
            Op::Admin,
            Request::post(
                "/v1/admin/concerts",
                json!({"title": "Added during the outage",
                       "dates": [{"date": date, "price": PRICE}]}),
            )
            .token(ADMIN_KEY),
        )
        .await?;
    ensure!(
        created.status == 201,
        "creating a concert with the line unreachable: {} {}",
        created.status,
        created.text
    );
    Ok(balance)
}

/// A whole journey for `holder` (whose token must turn `ACTIVE` on `instance`): hold `seat`,
/// charge, pay; the token reads `EXPIRED` (`PAID`) on every instance as soon as the payment is
/// answered, with nothing left in the outbox.
async fn journey(
    fleet: &Fleet,
    db: &tokio_postgres::Client,
    sale: &Sale,
    holder: &Holder,
    instance: usize,
    seat: i64,
) -> anyhow::Result<()> {
    wait_for_status(
        fleet,
        instance,
        &holder.token,
        "ACTIVE",
        None,
        NOTICE_WITHIN,
    )
    .await?;
    let held = hold(
        fleet,
        instance,
        &holder.token,
        sale.concert,
        &sale.date,
        seat,
    )
    .await?;
    ensure!(held.status == 201, "hold: {} {}", held.status, held.text);
    let reservation = held.body["reservationId"].as_i64().context("id")?;
    let key = format!("journey-{}", holder.user);
    let charged = charge(fleet, (instance + 1) % 3, holder.user, PRICE, &key).await?;
    ensure!(charged.status == 200, "charge: {}", charged.text);
    let before = charged.body["balance"].as_i64().context("balance")?;
    let paid = pay(fleet, (instance + 2) % 3, &holder.token, reservation, &key).await?;
    ensure!(
        paid.status == 201 && paid.body["balance"] == before - PRICE,
        "payment: {} {}",
        paid.status,
        paid.text
    );
    // No polling: ended on the line before the payment was answered.
    for other in 0..fleet.size() {
        let answer = status(fleet, other, &holder.token).await?;
        ensure!(
            answer.body["status"] == "EXPIRED" && answer.body["reason"] == "PAID",
            "instance {other} right after the payment: {} {}",
            answer.status,
            answer.text
        );
    }
    let left: i64 = db
        .query_one("SELECT count(*) FROM ticket_end_outbox", &[])
        .await?
        .get(0);
    ensure!(
        left == 0,
        "{left} ticket ends left in the outbox after a normal payment"
    );
    Ok(())
}

/// Answers of `token` on every instance: status, a protected endpoint, events and leaving, each
/// `401 TOKEN_INVALID`.
async fn token_invalid_everywhere(
    fleet: &Fleet,
    clients: &[Client],
    token: &str,
    what: &str,
) -> anyhow::Result<()> {
    for (instance, client) in clients.iter().enumerate() {
        let answers = [
            ("status", status(fleet, instance, token).await?),
            (
                "concerts",
                fleet
                    .send(
                        instance,
                        Op::Catalog,
                        Request::get("/v1/concerts").token(token),
                    )
                    .await?,
            ),
            (
                "events",
                events_answer(client.clone(), token.to_owned())
                    .await
                    .with_context(|| format!("{what}: events on instance {instance}"))?,
            ),
        ];
        for (endpoint, answer) in answers {
            ensure!(
                answer.status == 401 && answer.code() == "TOKEN_INVALID",
                "{what}: instance {instance} answered {endpoint} with {} {}",
                answer.status,
                answer.text
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_redis_is_a_quick_503_for_the_line_only_and_restarted_empty_starts_it_again()
-> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let started = Instant::now();
    let mut redis = RedisServer::start();
    let keys = TestKeys::new(redis.url());
    let cluster = cluster_on("redis-kill", &redis, &keys).await?;
    let fleet = cluster.fleet.clone();
    let clients: Vec<Client> = cluster
        .instances
        .iter()
        .map(|i| Client::new(i.addr()))
        .collect();
    let db = audit::connect(cluster.database().url()).await?;
    let sale = Sale::open(&fleet).await?;
    let mut watched = match clients[2].events(&sale.waiting[0].token).await? {
        Ok(stream) => stream,
        Err(answer) => bail!("events: {} {}", answer.status, answer.text),
    };
    let first = watched
        .next(NOTICE_WITHIN)
        .await?
        .context("a first event")?;
    ensure!(first["position"] == 1, "{first}");
    let ready_at = started.elapsed();

    // Mid-sale, the line's Redis dies.
    let killed_at = Instant::now();
    redis.kill();
    let noticed = noticed_everywhere(&fleet, &sale.waiting[0].token, killed_at).await?;
    let Outage {
        probes, slowest, ..
    } = line_endpoints_unavailable(&fleet, &clients, &sale).await?;
    ensure!(
        watched.next(NOTICE_WITHIN).await?.is_none(),
        "an open event stream ends when its instance cannot read the line"
    );
    let balance =
        points_and_readiness_work(&fleet, sale.active[0].user, sale.balance, "killed").await?;
    // The payment refused with 503 moved nothing.
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM ticket_end_outbox), \
                    (SELECT status FROM reservations WHERE id = $1)",
            &[&sale.held],
        )
        .await?;
    let (payments, pending, held): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
    ensure!(
        (payments, pending, held.as_str()) == (0, 0, "HELD"),
        "after a payment refused during the outage: {payments} payments, {pending} pending \
         ends, reservation {held}"
    );

    // Redis comes back empty: every place in line is gone.
    let restarted_at = Instant::now();
    redis.restart();
    for instance in 0..fleet.size() {
        loop {
            let answer = status(&fleet, instance, &sale.active[0].token).await?;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            ensure!(
                restarted_at.elapsed() < NOTICE_WITHIN,
                "instance {instance} still answers 503 {:?} after Redis restarted",
                restarted_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let recovered = restarted_at.elapsed();
    fleet.recorder.database_fault(Window {
        from: killed_at,
        until: Instant::now(),
    });
    let everyone: Vec<&Holder> = sale.active.iter().chain(&sale.waiting).collect();
    for holder in &everyone {
        token_invalid_everywhere(&fleet, &clients, &holder.token, "an older token").await?;
    }
    // The same users join again in the same order: were numbers to start over, each would get
    // its old number back and its old token would read as the new ticket.
    let mut again = Vec::new();
    for (n, holder) in everyone.iter().enumerate() {
        let joined = join(&fleet, n % 3, holder.user).await?;
        ensure!(joined.status == 201, "joining again: {}", joined.text);
        again.push(Holder {
            user: holder.user,
            token: joined.body["token"].as_str().context("token")?.to_owned(),
        });
    }
    let newcomer = Uuid::new_v4();
    let joined = join(&fleet, 2, newcomer).await?;
    again.push(Holder {
        user: newcomer,
        token: joined.body["token"].as_str().context("token")?.to_owned(),
    });
    for holder in &again[..2] {
        wait_for_status(&fleet, 0, &holder.token, "ACTIVE", None, NOTICE_WITHIN).await?;
    }
    positions_everywhere(&fleet, &again[2..], &[1, 2, 3, 4]).await?;
    for holder in &everyone {
        token_invalid_everywhere(&fleet, &clients, &holder.token, "an older token, rejoined")
            .await?;
    }
    let blocks: Vec<i32> = db
        .query(
            "SELECT block FROM ticket_blocks WHERE line = 0 ORDER BY block",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Block 0 before; after, a block for each instance that found the line without one at the
    // same moment, of which one was installed (the others are skipped, never drawn from).
    ensure!(
        blocks.first() == Some(&0) && (2..=4).contains(&blocks.len()),
        "the default line leased blocks {blocks:?}: block 0 before, one to three after the \
         restart"
    );

    // A whole journey, and the next in line moves up.
    journey(&fleet, &db, &sale, &again[0], 1, 3).await?;
    wait_for_status(&fleet, 2, &again[2].token, "ACTIVE", None, NOTICE_WITHIN).await?;
    positions_everywhere(&fleet, &again[3..], &[1, 2, 3]).await?;
    let exchanges = cluster
        .fleet
        .recorder
        .verify()
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "stress redis-kill: sale ready after {ready_at:.1?}; Redis killed: a waiting poll \
         answered 503 on every instance after {noticed:.2?}; {probes} line requests answered \
         503 problem+json with Retry-After, slowest {slowest:.2?} (timeout \
         {COMMAND_TIMEOUT:?}); points exact \
         (balance {balance}), ready 200, concerts created. Restarted empty: served again after \
         {recovered:.2?}; 5 older tokens 401 TOKEN_INVALID on 3 instances before and after their \
         users joined again; positions from 1; blocks {blocks:?}; journey done. Exchanges: \
         {exchanges}. Total {:.1?}",
        started.elapsed()
    );
    cluster.finish().await?;
    keys.delete().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_redis_is_a_503_within_the_command_timeout_and_the_line_goes_on_intact()
-> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let started = Instant::now();
    let redis = RedisServer::start();
    let keys = TestKeys::new(redis.url());
    let cluster = cluster_on("redis-freeze", &redis, &keys).await?;
    let fleet = cluster.fleet.clone();
    let clients: Vec<Client> = cluster
        .instances
        .iter()
        .map(|i| Client::new(i.addr()))
        .collect();
    let db = audit::connect(cluster.database().url()).await?;
    let sale = Sale::open(&fleet).await?;
    figures_everywhere(&fleet, &(json!(3), json!(2), json!(5))).await?;

    let paused_at = Instant::now();
    redis.pause();
    let outcome = async {
        let noticed = noticed_everywhere(&fleet, &sale.waiting[0].token, paused_at).await?;
        let outage = line_endpoints_unavailable(&fleet, &clients, &sale).await?;
        let balance =
            points_and_readiness_work(&fleet, sale.active[0].user, sale.balance, "frozen").await?;
        anyhow::Ok((noticed, outage, balance))
    }
    .await;
    let resumed_at = Instant::now();
    redis.resume();
    let (noticed, outage, balance) = outcome?;
    let Outage {
        probes,
        slowest,
        newcomers,
    } = outage;

    // Everything goes on where it was: same positions, same tokens, same figures.
    for instance in 0..fleet.size() {
        for holder in &sale.active {
            wait_for_status(
                &fleet,
                instance,
                &holder.token,
                "ACTIVE",
                None,
                NOTICE_WITHIN,
            )
            .await?;
        }
    }
    positions_everywhere(&fleet, &sale.waiting, &[1, 2, 3]).await?;
    let back = resumed_at.elapsed();
    fleet.recorder.database_fault(Window {
        from: paused_at,
        until: Instant::now(),
    });
    // A first join goes straight to its write, which a frozen Redis runs once it goes on: the
    // newcomers told 503 have their places behind the others, and joining again hands each
    // its place (200), never a second one.
    figures_everywhere(&fleet, &(json!(6), json!(2), json!(8))).await?;
    let mut behind = Vec::new();
    for (instance, user) in newcomers.iter().enumerate() {
        let again = join(&fleet, instance, *user).await?;
        ensure!(
            again.status == 200 && again.body["status"] == "WAITING",
            "a newcomer told 503 joins again: {} {}",
            again.status,
            again.text
        );
        behind.push(again.body["position"].as_u64().context("a position")?);
    }
    behind.sort_unstable();
    ensure!(behind == [4, 5, 6], "the newcomers' places: {behind:?}");
    figures_everywhere(&fleet, &(json!(6), json!(2), json!(8))).await?;
    // The hold taken before the freeze is paid with the token of then.
    let first = &sale.active[0];
    let paid = pay(&fleet, 2, &first.token, sale.held, "after-the-freeze").await?;
    ensure!(
        paid.status == 201 && paid.body["balance"] == balance - PRICE,
        "payment of the hold taken before the freeze: {} {}",
        paid.status,
        paid.text
    );
    for instance in 0..fleet.size() {
        let answer = status(&fleet, instance, &first.token).await?;
        ensure!(
            answer.body["status"] == "EXPIRED" && answer.body["reason"] == "PAID",
            "instance {instance} after the payment: {}",
            answer.text
        );
    }
    wait_for_status(
        &fleet,
        1,
        &sale.waiting[0].token,
        "ACTIVE",
        None,
        NOTICE_WITHIN,
    )
    .await?;
    positions_everywhere(&fleet, &sale.waiting[1..], &[1, 2]).await?;
    journey(&fleet, &db, &sale, &sale.waiting[0], 0, 4).await?;
    wait_for_status(
        &fleet,
        0,
        &sale.waiting[1].token,
        "ACTIVE",
        None,
        NOTICE_WITHIN,
    )
    .await?;
    let exchanges = cluster
        .fleet
        .recorder
        .verify()
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "stress redis-freeze: Redis frozen (SIGSTOP): a waiting poll answered 503 on every \
         instance after {noticed:.2?}; {probes} line requests answered 503 problem+json with \
         Retry-After, slowest {slowest:.2?} (timeout {COMMAND_TIMEOUT:?}); points exact. \
         Resumed: same positions and tokens on 3 instances after {back:.2?}, the line's figures \
         those of before plus the 3 newcomers whose joins answered 503 Redis ran late (joining \
         again: 200, positions {behind:?}); the held seat paid, the next admitted, a journey. \
         Exchanges: {exchanges}. Total {:.1?}",
        started.elapsed()
    );
    cluster.finish().await?;
    keys.delete().await;
    Ok(())
}

/// Pays `reservation` with `token` through `instance` while Redis is frozen between the
/// payment's PostgreSQL commit and the end of its token on the line: the test locks the
/// reservation's row, waits until the payment's statement waits for that lock (it has read the
/// token on the line by then), freezes Redis, then lets the statement go. Redis stays frozen.
async fn pay_across_a_freeze(
    fleet: &Fleet,
    redis: &RedisServer,
    database: &TestDatabase,
    instance: usize,
    token: &str,
    reservation: i64,
    key: &str,
) -> anyhow::Result<(Answer, Duration)> {
    let mut locker = audit::connect(database.url()).await?;
    let lock = locker.transaction().await?;
    lock.execute(
        "SELECT 1 FROM reservations WHERE id = $1 FOR UPDATE",
        &[&reservation],
    )
    .await?;
    let payment = pay(fleet, instance, token, reservation, key);
    let watcher = audit::connect(database.url()).await?;
    let name = database.name().to_owned();
    let waiting_for_lock = async {
        // The statement would give up after its 5 s timeout.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    // The payment statement opens with its locks (`query` keeps only the
                    // statement's first kilobyte).
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                     AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF r, s%'",
                    &[&name],
                )
                .await?
                .get(0);
            if waiting > 0 {
                return anyhow::Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the payment never reached its statement"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::pin!(payment);
    // The payment waits for the lock (then Redis is frozen and the lock released), unless it
    // answered before it got there: a failure.
    tokio::select! {
        waited = waiting_for_lock => waited?,
        answer = &mut payment => {
            let answer = answer.map(|answer| answer.text);
            bail!("the payment answered before it reached its statement: {answer:?}")
        }
    }
    redis.pause();
    lock.commit().await?;
    let released = Instant::now();
    let answer = payment.await?;
    Ok((answer, released.elapsed()))
}

async fn outbox_rows(db: &tokio_postgres::Client) -> anyhow::Result<i64> {
    Ok(db
        .query_one("SELECT count(*) FROM ticket_end_outbox", &[])
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_whose_line_step_fails_is_answered_and_its_end_applied_later_even_after_a_kill()
-> anyhow::Result<()> {
    const VICTIM: usize = 1;
    let _serial = harness::exclusive().await;
    let started = Instant::now();
    let redis = RedisServer::start();
    let keys = TestKeys::new(redis.url());
    let mut cluster = cluster_on("redis-outbox", &redis, &keys).await?;
    let fleet = cluster.fleet.clone();
    let db = audit::connect(cluster.database().url()).await?;
    let sale = Sale::open(&fleet).await?;

    // 1. The paying instance lives on: a relay job (any instance's) applies the end once Redis
    //    answers.
    let payer = &sale.active[0];
    let frozen_from = Instant::now();
    let (paid, took) = pay_across_a_freeze(
        &fleet,
        &redis,
        cluster.database(),
        0,
        &payer.token,
        sale.held,
        "across-a-freeze",
    )
    .await
    .inspect_err(|_| redis.resume())?;
    let pending = outbox_rows(&db).await;
    redis.resume();
    let resumed_at = Instant::now();
    ensure!(
        paid.status == 201 && paid.body["balance"] == sale.balance - PRICE,
        "a payment whose line step failed: {} {}",
        paid.status,
        paid.text
    );
    ensure!(
        took < FAIL_FAST,
        "the payment was answered {took:?} after its statement could go"
    );
    ensure!(pending? == 1, "the payment's end is kept in the outbox");
    let relayed = wait_for_status(
        &fleet,
        2,
        &payer.token,
        "EXPIRED",
        Some("PAID"),
        RELAYED_WITHIN,
    )
    .await?;
    ensure!(outbox_rows(&db).await? == 0, "the outbox row is gone");
    wait_for_status(
        &fleet,
        2,
        &sale.waiting[0].token,
        "ACTIVE",
        None,
        NOTICE_WITHIN,
    )
    .await?;
    fleet.recorder.database_fault(Window {
        from: frozen_from,
        until: Instant::now(),
    });

    // 2. The paying instance dies before its relay could apply the end: another one does.
    let payer = &sale.active[1];
    let charged = charge(&fleet, 0, payer.user, 50_000, "second-payer").await?;
    ensure!(charged.status == 200, "charge: {}", charged.text);
    let held = hold(&fleet, VICTIM, &payer.token, sale.concert, &sale.date, 5).await?;
    ensure!(held.status == 201, "hold: {}", held.text);
    let reservation = held.body["reservationId"].as_i64().context("id")?;
    let frozen_from = Instant::now();
    let (paid, took) = pay_across_a_freeze(
        &fleet,
        &redis,
        cluster.database(),
        VICTIM,
        &payer.token,
        reservation,
        "before-a-kill",
    )
    .await
    .inspect_err(|_| redis.resume())?;
    let killed_at = Instant::now();
    let killed = cluster.instances[VICTIM].kill().await;
    let pending = outbox_rows(&db).await;
    redis.resume();
    let resumed_at_2 = Instant::now();
    killed?;
    ensure!(
        paid.status == 201 && paid.body["balance"] == 50_000 - PRICE,
        "a payment whose line step failed: {} {}",
        paid.status,
        paid.text
    );
    ensure!(
        took < FAIL_FAST,
        "the payment was answered {took:?} after its statement could go"
    );
    ensure!(pending? == 1, "the payment's end is kept in the outbox");
    let other_relay = wait_for_status(
        &fleet,
        0,
        &payer.token,
        "EXPIRED",
        Some("PAID"),
        RELAYED_WITHIN,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while outbox_rows(&db).await? > 0 {
        ensure!(Instant::now() < deadline, "the outbox row stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = status(&fleet, 2, &payer.token).await?;
    ensure!(
        answer.body["reason"] == "PAID",
        "on the third instance: {}",
        answer.text
    );
    // The freed place goes to the next in line; the money moved once.
    wait_for_status(
        &fleet,
        2,
        &sale.waiting[1].token,
        "ACTIVE",
        None,
        NOTICE_WITHIN,
    )
    .await?;
    let replay = pay(&fleet, 0, &payer.token, reservation, "before-a-kill").await?;
    ensure!(
        replay.status == 201 && replay.body == paid.body,
        "a retry with the key replays the first answer: {}",
        replay.text
    );
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM payments), \
                    (SELECT balance FROM wallets WHERE user_id = $1::text::uuid)",
            &[&payer.user.to_string()],
        )
        .await?;
    let (payments, balance): (i64, i64) = (row.get(0), row.get(1));
    ensure!(
        (payments, balance) == (2, 50_000 - PRICE),
        "{payments} payments, balance {balance}"
    );
    fleet.recorder.database_fault(Window {
        from: frozen_from,
        until: Instant::now(),
    });
    fleet.recorder.instance_down(
        VICTIM,
        Window {
            from: killed_at,
            until: Instant::now(),
        },
    );
    let exchanges = cluster
        .fleet
        .recorder
        .verify()
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "stress redis-outbox: payments with Redis frozen after their commit answered 201 with \
         their end in the outbox; applied by a relay job {relayed:.2?} after Redis answered \
         again ({:.2?} since); with the paying instance killed, by another \
         instance's relay {other_relay:.2?} after ({:.2?}). Exchanges: {exchanges}. Total {:.1?}",
        resumed_at.elapsed(),
        resumed_at_2.elapsed(),
        started.elapsed()
    );
    cluster.finish().await?;
    keys.delete().await;
    Ok(())
}
