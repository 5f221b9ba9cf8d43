//! Database faults under load, without restarting any instance (nor the shared PostgreSQL):
//! every server connection terminated by the database, and a real outage through a proxy that
//! closes every connection and refuses new ones. At worst a quick 503 problem+json; service comes
//! back by itself; the books stay exact.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use concert_e2e::TestLine;
use concert_postgres::testing::TestDatabase;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::harness::fleet::{Fleet, Op, Request, Window};
use crate::harness::process::{Cluster, ClusterSpec};
use crate::harness::proxy::{DbProxy, upstream_of};
use crate::harness::{self, audit, workload};

const HOLD_LIMIT: i64 = 4;
/// A database fault must turn into an answer within this (the servers wait at most 2 s for a
/// pooled connection and 2 s to open one).
const FAIL_FAST: Duration = Duration::from_secs(6);
/// Service must come back within this once the database is reachable again.
const HEAL_WITHIN: Duration = Duration::from_secs(30);

/// Polls `/health/ready` of every instance until each answers `wanted`; returns when the last did.
async fn readiness_of_all(
    fleet: &Fleet,
    wanted: StatusCode,
    within: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    for instance in 0..fleet.size() {
        loop {
            let answer = fleet
                .send(instance, Op::Ready, Request::get("/health/ready"))
                .await?;
            if answer.status == wanted {
                if wanted == StatusCode::SERVICE_UNAVAILABLE {
                    ensure!(
                        answer
                            .content_type()
                            .starts_with("application/problem+json"),
                        "not ready, but not as problem+json: {}",
                        answer.text
                    );
                }
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "instance {instance} still answers {} to /health/ready after {within:?}",
                answer.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(Instant::now())
}

/// A charge through every instance (a write needing the database): each must succeed within
/// `within`. A pooled connection that the database closed while it sat idle costs the one request
/// that borrows it next a quick 503 (the socket's close is noticed only then), so a 503
/// problem+json is retried, with the same idempotency key; any other answer fails at once.
async fn every_instance_charges(
    fleet: &Fleet,
    books: &audit::Books,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for instance in 0..fleet.size() {
        let user = Uuid::new_v4();
        loop {
            let answer = fleet
                .send(
                    instance,
                    Op::Charge,
                    Request::post(
                        format!("/v1/users/{user}/points/charge"),
                        json!({ "amount": 1_000 }),
                    )
                    .key("probe"),
                )
                .await?;
            if answer.status == 200 {
                break;
            }
            ensure!(
                answer.status == StatusCode::SERVICE_UNAVAILABLE
                    && answer
                        .content_type()
                        .starts_with("application/problem+json")
                    && Instant::now() < deadline,
                "instance {instance} after the fault: {} {}",
                answer.status,
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        books.update(user, |b| b.charged += 1_000);
    }
    Ok(())
}

/// `token`'s status through every instance: each must answer it (any status) within `within`.
/// Besides the pool, this needs the instance's copy of the line, which is read again every
/// admission interval and answers `503` once its readings have failed for a second.
async fn every_instance_reads_the_line(
    fleet: &Fleet,
    token: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    for instance in 0..fleet.size() {
        loop {
            let answer = fleet
                .send(
                    instance,
                    Op::Status,
                    Request::get("/v1/queue/status").token(token),
                )
                .await?;
            if answer.status == 200 {
                break;
            }
            ensure!(
                answer.status == StatusCode::SERVICE_UNAVAILABLE
                    && answer
                        .content_type()
                        .starts_with("application/problem+json")
                    && Instant::now() < deadline,
                "instance {instance} after the fault: {} {}",
                answer.status,
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_database_connections_fail_fast_and_heal_without_restart() -> anyhow::Result<()>
{
    let _serial = harness::exclusive().await;
    let seed = harness::seed();
    let started = Instant::now();
    let cluster = Cluster::start(
        ClusterSpec::new("terminate")
            .env("HOLD_TTL_SECONDS", 2)
            .env("MAX_HOLDS_PER_USER", HOLD_LIMIT),
        TestDatabase::create().await?,
    )
    .await?;
    let fleet = cluster.fleet.clone();
    let duration = harness::load_duration(Duration::from_secs(16));
    let stage = workload::Stage::prepare(fleet.clone(), seed, 300, duration).await?;
    // A token whose status tells when every instance reads the line again.
    let probe = fleet.active_token(0, Uuid::new_v4()).await?;
    let load = tokio::spawn(workload::run(stage.clone(), 45));
    let db = audit::connect(cluster.database().url()).await?;
    let name = cluster.database().name().to_owned();

    let rounds = if harness::soaking() {
        (duration.as_secs() / 4).max(3)
    } else {
        3
    };
    let mut terminated = 0;
    let mut slowest_heal = Duration::ZERO;
    for _ in 0..rounds {
        tokio::time::sleep(duration / (rounds as u32 + 1)).await;
        let at = Instant::now();
        let row = db
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) AS terminated",
                &[&name],
            )
            .await?;
        terminated += row.get::<_, i64>(0);
        let healed = readiness_of_all(&fleet, StatusCode::OK, HEAL_WITHIN).await?;
        every_instance_charges(&fleet, &stage.books, HEAL_WITHIN).await?;
        every_instance_reads_the_line(&fleet, &probe, HEAL_WITHIN).await?;
        let healed = healed.max(Instant::now());
        slowest_heal = slowest_heal.max(healed - at);
        fleet.recorder.database_fault(Window {
            from: at,
            until: healed,
        });
    }

    let load = load.await??;
    let (exchanges, found) =
        harness::verdict(&cluster, &stage.books, HOLD_LIMIT, audit::FAULT_SKEW).await?;
    ensure!(
        exchanges.slowest_server_error < FAIL_FAST && exchanges.slowest < HEAL_WITHIN,
        "answers too slow: {exchanges}"
    );
    ensure!(terminated > 0, "no server connection was terminated");
    ensure!(found.payments > 0, "{found}");
    eprintln!(
        "stress terminate (seed {seed:#x}, load {duration:?}, total {:.1?}): {rounds} rounds \
         terminated {terminated} server connections; service back (every instance ready and \
         charging) within {slowest_heal:.1?} at worst, no restart. Load: {load}. Exchanges: \
         {exchanges}. Database: {found}",
        started.elapsed()
    );
    cluster.finish().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_answers_503_quickly_and_service_returns_without_restart()
-> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let seed = harness::seed();
    let started = Instant::now();
    let database = TestDatabase::create().await?;
    let proxy = DbProxy::start(upstream_of(database.url())?).await?;
    let through_proxy = proxy.url_for(database.url())?;
    let cluster = Cluster::start(
        ClusterSpec::new("outage")
            .env("HOLD_TTL_SECONDS", 2)
            .env("MAX_HOLDS_PER_USER", HOLD_LIMIT)
            .through(through_proxy),
        database,
    )
    .await?;
    let fleet = cluster.fleet.clone();
    let line_on_redis = cluster.line.as_ref().is_some_and(TestLine::is_redis);
    let duration = harness::load_duration(Duration::from_secs(20));
    let outage = if harness::soaking() {
        (duration / 4).max(Duration::from_secs(5))
    } else {
        Duration::from_secs(5)
    };
    let stage = workload::Stage::prepare(fleet.clone(), seed, 300, duration).await?;
    // A token that is ACTIVE before the outage, to try a protected request during it.
    let insider = Uuid::new_v4();
    let insider_token = fleet.active_token(0, insider).await?;
    let load = tokio::spawn(workload::run(stage.clone(), 45));

    tokio::time::sleep(duration / 4).await;
    let cut_at = Instant::now();
    proxy.cut();
    // Every instance notices: /health/ready turns 503.
    let noticed = readiness_of_all(&fleet, StatusCode::SERVICE_UNAVAILABLE, FAIL_FAST * 2).await?;
    // API requests that need the database answer 503 problem+json, quickly, on every instance.
    let mut probes = 0;
    let mut slowest_probe = Duration::ZERO;
    for instance in 0..fleet.size() {
        let user = Uuid::new_v4();
        let requests = [
            (
                Op::Charge,
                Request::post(
                    format!("/v1/users/{user}/points/charge"),
                    json!({ "amount": 1_000 }),
                )
                .key("during-outage"),
            ),
            (
                Op::Balance,
                Request::get(format!("/v1/users/{user}/points")),
            ),
            (
                Op::Issue,
                Request::post("/v1/queue/tokens", json!({ "userId": user.to_string() })),
            ),
            (
                Op::Hold,
                Request::post(
                    "/v1/reservations",
                    json!({ "concertId": stage.concert, "date": stage.dates[1].date, "seatNo": 1 }),
                )
                .token(insider_token.clone()),
            ),
        ];
        let answers = join_all(requests.into_iter().map(|(op, request)| {
            let fleet = fleet.clone();
            async move {
                let sent = Instant::now();
                let answer = fleet.send(instance, op, request).await;
                (op, sent.elapsed(), answer)
            }
        }))
        .await;
        for (op, took, answer) in answers {
            let answer = answer.with_context(|| format!("{op:?} during the outage"))?;
            probes += 1;
            slowest_probe = slowest_probe.max(took);
            if op == Op::Issue && line_on_redis {
                // The line on Redis takes new users while the database is down (a join needs
                // only the line): the sale's waiting room stays open.
                ensure!(
                    answer.status == StatusCode::CREATED,
                    "instance {instance} answered {op:?} during the outage with {} {}",
                    answer.status,
                    answer.text
                );
                continue;
            }
            ensure!(
                answer.status == StatusCode::SERVICE_UNAVAILABLE
                    && answer
                        .content_type()
                        .starts_with("application/problem+json")
                    && answer.code() == "SERVICE_UNAVAILABLE",
                "instance {instance} answered {op:?} during the outage with {} {}",
                answer.status,
                answer.text
            );
            ensure!(
                took < FAIL_FAST,
                "instance {instance} took {took:?} to answer {op:?}"
            );
        }
    }
    let remaining = outage.saturating_sub(cut_at.elapsed());
    tokio::time::sleep(remaining).await;
    let restored_at = Instant::now();
    proxy.restore();
    let healed = readiness_of_all(&fleet, StatusCode::OK, HEAL_WITHIN).await?;
    every_instance_charges(&fleet, &stage.books, HEAL_WITHIN).await?;
    every_instance_reads_the_line(&fleet, &insider_token, HEAL_WITHIN).await?;
    let healed = healed.max(Instant::now());
    fleet.recorder.database_fault(Window {
        from: cut_at,
        until: healed,
    });

    let load = load.await??;
    let (exchanges, found) =
        harness::verdict(&cluster, &stage.books, HOLD_LIMIT, audit::FAULT_SKEW).await?;
    ensure!(
        exchanges.slowest_server_error < FAIL_FAST && exchanges.slowest < HEAL_WITHIN,
        "answers too slow: {exchanges}"
    );
    ensure!(found.payments > 0, "{found}");
    let (forwarded, refused, severed) = proxy.figures();
    eprintln!(
        "stress outage (seed {seed:#x}, load {duration:?}, total {:.1?}): database cut for \
         {:.1?} ({severed} connections severed, {refused} refused); every instance not ready \
         after {:.1?}; {probes} API probes answered 503 problem+json, slowest {slowest_probe:.2?}; \
         service back {:.1?} after the restore, no restart ({forwarded} connections forwarded in \
         all). Load: {load}. Exchanges: {exchanges}. Database: {found}",
        started.elapsed(),
        restored_at - cut_at,
        noticed - cut_at,
        healed - restored_at,
    );
    drop(proxy);
    cluster.finish().await
}
