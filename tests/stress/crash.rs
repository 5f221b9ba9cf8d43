//! `kill -9` of one instance in the middle of the load: the others keep serving, nothing a client
//! was told is lost, and the restarted instance serves again.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use concert_postgres::testing::TestDatabase;
use serde_json::json;
use uuid::Uuid;

use crate::harness::fleet::{Op, Request, Window};
use crate::harness::process::{Cluster, ClusterSpec};
use crate::harness::{self, audit, workload};

const HOLD_LIMIT: i64 = 4;
const VICTIM: usize = 1;

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_instance_loses_nothing_committed_and_serves_again_after_restart()
-> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let seed = harness::seed();
    let started = Instant::now();
    let mut cluster = Cluster::start(
        ClusterSpec::new("crash")
            .env("HOLD_TTL_SECONDS", 2)
            .env("MAX_HOLDS_PER_USER", HOLD_LIMIT),
        TestDatabase::create().await?,
    )
    .await?;
    let fleet = cluster.fleet.clone();
    let duration = harness::load_duration(Duration::from_secs(18));
    let stage = workload::Stage::prepare(fleet.clone(), seed, 300, duration).await?;
    let load = tokio::spawn(workload::run(stage.clone(), 45));

    tokio::time::sleep(duration / 3).await;
    let pid = cluster.instances[VICTIM].pid();
    let killed_at = Instant::now();
    cluster.instances[VICTIM].kill().await?;
    tokio::time::sleep(duration / 3).await;
    let restarted_at = Instant::now();
    cluster.instances[VICTIM].restart().await?;
    let ready_at = Instant::now();
    let down = Window {
        from: killed_at,
        until: ready_at,
    };
    fleet.recorder.instance_down(VICTIM, down);

    // The restarted instance serves a whole journey by itself.
    let user = Uuid::new_v4();
    let token = fleet.active_token(VICTIM, user).await?;
    let charged = fleet
        .send(
            VICTIM,
            Op::Charge,
            Request::post(
                format!("/v1/users/{user}/points/charge"),
                json!({ "amount": 50_000 }),
            )
            .key("after-restart"),
        )
        .await?;
    ensure!(charged.status == 200, "charge: {}", charged.text);
    stage.books.update(user, |b| b.charged += 50_000);
    let date = stage.dates.last().context("a date")?.clone();
    let mut reservation = None;
    for _ in 0..10 {
        // A seat the load has not taken yet (it may take it first: then another).
        let seats = fleet
            .send(
                VICTIM,
                Op::Seats,
                Request::get(format!(
                    "/v1/concerts/{}/dates/{}/seats",
                    stage.concert, date.date
                ))
                .token(token.clone()),
            )
            .await?;
        ensure!(seats.status == 200, "seats after restart: {}", seats.text);
        let seat = seats.body["seats"][0]["seatNo"]
            .as_i64()
            .context("a free seat")?;
        let held = fleet
            .send(
                VICTIM,
                Op::Hold,
                Request::post(
                    "/v1/reservations",
                    json!({ "concertId": stage.concert, "date": date.date, "seatNo": seat }),
                )
                .token(token.clone()),
            )
            .await?;
        match held.status.as_u16() {
            201 => {
                reservation = Some(held.body["reservationId"].as_i64().context("id")?);
                break;
            }
            409 => {}
            _ => anyhow::bail!("hold after restart: {}", held.text),
        }
    }
    let reservation = reservation.context("no seat could be held after the restart")?;
    let paid = fleet
        .send(
            VICTIM,
            Op::Pay,
            Request::post("/v1/payments", json!({ "reservationId": reservation })).token(token),
        )
        .await?;
    ensure!(paid.status == 201, "payment after restart: {}", paid.text);
    let id = paid.body["paymentId"].as_i64().context("id")?;
    stage.books.update(user, |b| {
        b.payments.insert(id, (reservation, date.price));
    });

    let load = load.await??;
    let served_elsewhere = fleet.recorder.successes_elsewhere(VICTIM, down);
    let served_after = fleet.recorder.successes_since(VICTIM, ready_at);
    let (exchanges, found) =
        harness::verdict(&cluster, &stage.books, HOLD_LIMIT, audit::SKEW).await?;
    ensure!(
        served_elsewhere > 100,
        "the other instances served {served_elsewhere} requests while one was down"
    );
    ensure!(
        served_after > 10,
        "the restarted instance served {served_after} requests"
    );
    ensure!(found.payments > 0, "{found}");
    eprintln!(
        "stress crash (seed {seed:#x}, load {duration:?}, total {:.1?}): instance {VICTIM} (pid \
         {pid:?}) killed with SIGKILL, down {:.1?}, ready {:.1?} after restart; {served_elsewhere} \
         answers from the others while it was down, {served_after} from it after. Load: {load}. \
         Exchanges: {exchanges}. Database: {found}",
        started.elapsed(),
        ready_at - killed_at,
        ready_at - restarted_at,
    );
    cluster.finish().await
}
