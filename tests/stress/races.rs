//! Races across three instances: many users for few seats, one user's parallel holds, a double
//! spend, and the same idempotency key sent to every instance at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, ensure};
use concert_postgres::testing::TestDatabase;
use futures::future::join_all;
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::harness::audit::{self, Books};
use crate::harness::fleet::{Fleet, Op, Request};
use crate::harness::process::{Cluster, ClusterSpec};
use crate::harness::workload::{StageDate, create_concert, user_id};
use crate::harness::{self};

const USERS: usize = 200;
const CONTESTED_SEATS: u32 = 20;
const CONTESTED_PRICE: i64 = 50_000;
const OTHER_PRICE: i64 = 30_000;
const HOLD_LIMIT: i64 = 4;

/// A hold through `instance`; the answer's status, code and reservation id.
async fn hold(
    fleet: &Fleet,
    instance: usize,
    token: &str,
    concert: i64,
    date: &str,
    seat: i64,
) -> anyhow::Result<(u16, String, Option<i64>)> {
    let answer = fleet
        .send(
            instance,
            Op::Hold,
            Request::post(
                "/v1/reservations",
                json!({ "concertId": concert, "date": date, "seatNo": seat }),
            )
            .token(token),
        )
        .await?;
    Ok((
        answer.status.as_u16(),
        answer.code().to_owned(),
        answer.body["reservationId"].as_i64(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn races_across_instances_have_exactly_the_allowed_winners() -> anyhow::Result<()> {
    let _serial = harness::exclusive().await;
    let seed = harness::seed();
    let started = Instant::now();
    let cluster = Cluster::start(
        ClusterSpec::new("races").env("DATABASE_POOL_SIZE", 12),
        TestDatabase::create().await?,
    )
    .await?;
    let fleet = cluster.fleet.clone();
    let n = fleet.size();
    let today = OffsetDateTime::now_utc().date();
    let contested = StageDate {
        date: (today + time::Duration::days(20)).to_string(),
        price: CONTESTED_PRICE,
        seats: CONTESTED_SEATS,
    };
    let other = StageDate {
        date: (today + time::Duration::days(21)).to_string(),
        price: OTHER_PRICE,
        seats: 100,
    };
    let concert = create_concert(&fleet, "Race Night", &[contested.clone(), other.clone()]).await?;
    let books = Books::default();

    // 200 users, each with an ACTIVE token (taken and polled on "its" instance) and the price of
    // one contested seat in points.
    let users: Vec<Uuid> = (0..USERS).map(|i| user_id(seed, 0x5A7, i)).collect();
    // Taken 40 at a time: the race is for the seats, not for the line.
    let tokens: Vec<String> = stream::iter(users.iter().enumerate().map(|(i, user)| {
        let fleet = fleet.clone();
        let books = books.clone();
        let user = *user;
        async move {
            let token = fleet.active_token(i % n, user).await?;
            let answer = fleet
                .send(
                    (i + 1) % n,
                    Op::Charge,
                    Request::post(
                        format!("/v1/users/{user}/points/charge"),
                        json!({ "amount": CONTESTED_PRICE }),
                    )
                    .key(format!("race-{i}")),
                )
                .await?;
            ensure!(answer.status == 200, "charge refused: {}", answer.text);
            books.update(user, |b| b.charged += CONTESTED_PRICE);
            Ok::<_, anyhow::Error>(token)
        }
    }))
    .buffered(40)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;

    // 1. All at once: every user tries a random contested seat, and after each loss re-reads the
    //    free seats (on the next instance) and tries one of them, until it wins or none is left.
    let barrier = Arc::new(Barrier::new(USERS));
    let outcomes = join_all((0..USERS).map(|i| {
        let fleet = fleet.clone();
        let token = tokens[i].clone();
        let date = contested.date.clone();
        let barrier = barrier.clone();
        async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (i as u64) << 8);
            let mut seat = rng.random_range(1..=i64::from(CONTESTED_SEATS));
            let mut attempts = 0u64;
            barrier.wait().await;
            loop {
                attempts += 1;
                let instance = (i + attempts as usize) % n;
                match hold(&fleet, instance, &token, concert, &date, seat).await? {
                    (201, _, Some(reservation)) => {
                        return Ok::<_, anyhow::Error>((
                            Some((seat, reservation, instance)),
                            attempts,
                        ));
                    }
                    (409, code, _) if code == "SEAT_UNAVAILABLE" => {}
                    (status, code, _) => anyhow::bail!("hold of seat {seat}: {status} {code}"),
                }
                let listed = fleet
                    .send(
                        (instance + 1) % n,
                        Op::Seats,
                        Request::get(format!("/v1/concerts/{concert}/dates/{date}/seats"))
                            .token(token.clone()),
                    )
                    .await?;
                ensure!(listed.status == 200, "seats: {}", listed.text);
                let free: Vec<i64> = listed.body["seats"]
                    .as_array()
                    .context("seats")?
                    .iter()
                    .filter_map(|s| s["seatNo"].as_i64())
                    .collect();
                match free.choose(&mut rng) {
                    Some(next) => seat = *next,
                    None => return Ok((None, attempts)),
                }
            }
        }
    }))
    .await;
    let mut winners = BTreeMap::new();
    let mut attempts = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let (won, tries) = outcome?;
        attempts += tries;
        if let Some((seat, reservation, instance)) = won {
            ensure!(
                winners.insert(seat, (i, reservation, instance)).is_none(),
                "seat {seat} was won twice"
            );
        }
    }
    fleet.recorder.count_races(1);
    ensure!(
        winners.len() == CONTESTED_SEATS as usize,
        "{} winners for {CONTESTED_SEATS} seats",
        winners.len()
    );
    let db = audit::connect(cluster.database().url()).await?;
    let held = db
        .query(
            "SELECT seat_no, held_by_reservation FROM seats WHERE concert_id = $1 \
             AND date = $2::text::date AND held_by_reservation IS NOT NULL",
            &[&concert, &contested.date],
        )
        .await?;
    ensure!(held.len() == winners.len(), "{} seats held", held.len());
    for row in held {
        let seat = i64::from(row.get::<_, i32>(0));
        let reservation: i64 = row.get(1);
        ensure!(
            winners.get(&seat).map(|w| w.1) == Some(reservation),
            "seat {seat} is held by reservation {reservation}, not by its winner"
        );
    }

    // Every winner pays at once, each through an instance other than the one it held on.
    let paid = join_all(winners.values().map(|(i, reservation, instance)| {
        let fleet = fleet.clone();
        let token = tokens[*i].clone();
        let (i, reservation, instance) = (*i, *reservation, *instance);
        async move {
            let answer = fleet
                .send(
                    (instance + 1) % n,
                    Op::Pay,
                    Request::post("/v1/payments", json!({ "reservationId": reservation }))
                        .token(token),
                )
                .await?;
            ensure!(
                answer.status == 201,
                "winner {i} could not pay: {}",
                answer.text
            );
            ensure!(
                answer.body["balance"] == 0,
                "balance after: {}",
                answer.text
            );
            Ok::<_, anyhow::Error>((
                i,
                answer.body["paymentId"].as_i64().context("id")?,
                reservation,
            ))
        }
    }))
    .await;
    for outcome in paid {
        let (i, payment, reservation) = outcome?;
        books.update(users[i], |b| {
            b.payments.insert(payment, (reservation, CONTESTED_PRICE));
        });
    }

    let losers: Vec<usize> = (0..USERS)
        .filter(|i| !winners.values().any(|w| w.0 == *i))
        .collect();
    ensure!(losers.len() >= 50, "enough losers for the next races");
    let group = |k: usize| losers[k * 10..(k + 1) * 10].to_vec();

    // 2. Hold limit: each of 10 users fires 8 holds of distinct seats at once, over every
    //    instance: exactly 4 are held, 4 refused with HOLD_LIMIT_REACHED.
    let limited = group(0);
    let results = join_all(limited.iter().enumerate().map(|(k, i)| {
        let fleet = fleet.clone();
        let token = tokens[*i].clone();
        let date = other.date.clone();
        async move {
            let answers = join_all((0..8).map(|j| {
                let seat = (k * 8 + j + 1) as i64;
                let fleet = fleet.clone();
                let token = token.clone();
                let date = date.clone();
                async move { hold(&fleet, j % n, &token, concert, &date, seat).await }
            }))
            .await;
            let mut held = Vec::new();
            let mut refused = 0;
            for answer in answers {
                match answer? {
                    (201, _, Some(reservation)) => held.push(reservation),
                    (409, code, _) if code == "HOLD_LIMIT_REACHED" => refused += 1,
                    (status, code, _) => anyhow::bail!("parallel hold: {status} {code}"),
                }
            }
            Ok::<_, anyhow::Error>((held, refused))
        }
    }))
    .await;
    let mut limited_holds = Vec::new();
    for result in results {
        let (held, refused) = result?;
        ensure!(
            held.len() as i64 == HOLD_LIMIT && refused == 8 - HOLD_LIMIT,
            "{} holds and {refused} refusals out of 8 parallel holds (limit {HOLD_LIMIT})",
            held.len()
        );
        limited_holds.push(held);
    }
    fleet.recorder.count_races(limited.len() as u64);

    // 3. Double spend: the same users (50,000 points each, holds at 30,000) pay two holds at
    //    once on two instances: exactly one payment goes through.
    let results = join_all(limited.iter().zip(&limited_holds).map(|(i, held)| {
        let fleet = fleet.clone();
        let token = tokens[*i].clone();
        let pair = [held[0], held[1]];
        async move {
            let answers = join_all(pair.iter().enumerate().map(|(j, reservation)| {
                fleet.send(
                    j % n,
                    Op::Pay,
                    Request::post("/v1/payments", json!({ "reservationId": reservation }))
                        .token(token.clone()),
                )
            }))
            .await;
            let mut paid = Vec::new();
            for (answer, reservation) in answers.into_iter().zip(pair) {
                let answer = answer?;
                match (answer.status.as_u16(), answer.code()) {
                    (201, _) => paid.push((
                        answer.body["paymentId"].as_i64().context("id")?,
                        reservation,
                        answer.body["balance"].as_i64().context("balance")?,
                    )),
                    (409, "INSUFFICIENT_BALANCE") | (401, "TOKEN_EXPIRED") => {}
                    (status, code) => anyhow::bail!("double spend: {status} {code}"),
                }
            }
            Ok::<_, anyhow::Error>(paid)
        }
    }))
    .await;
    for (result, i) in results.into_iter().zip(&limited) {
        let paid = result?;
        ensure!(
            paid.len() == 1,
            "{} payments out of a balance for one",
            paid.len()
        );
        let (payment, reservation, balance) = paid[0];
        ensure!(
            balance == CONTESTED_PRICE - OTHER_PRICE,
            "balance {balance}"
        );
        books.update(users[*i], |b| {
            b.payments.insert(payment, (reservation, OTHER_PRICE));
        });
    }
    fleet.recorder.count_races(limited.len() as u64);

    // 4. The same charge (same key, same body) on every instance at once: charged once, and
    //    every 200 is the first answer.
    let chargers = group(1);
    let results = join_all(chargers.iter().map(|i| {
        let fleet = fleet.clone();
        let user = users[*i];
        async move {
            let answers = join_all((0..6).map(|j| {
                fleet.send(
                    j % n,
                    Op::Charge,
                    Request::post(
                        format!("/v1/users/{user}/points/charge"),
                        json!({ "amount": 7_000 }),
                    )
                    .key("same-charge"),
                )
            }))
            .await;
            let mut balances = BTreeSet::new();
            for answer in answers {
                let answer = answer?;
                match (answer.status.as_u16(), answer.code()) {
                    (200, _) => {
                        balances.insert(answer.body["balance"].as_i64().context("balance")?);
                    }
                    (409, "IDEMPOTENCY_KEY_IN_USE") => {}
                    (status, code) => anyhow::bail!("same-key charge: {status} {code}"),
                }
            }
            ensure!(
                balances.len() == 1 && balances.contains(&(CONTESTED_PRICE + 7_000)),
                "same-key charges answered balances {balances:?}"
            );
            Ok::<_, anyhow::Error>(())
        }
    }))
    .await;
    for (result, i) in results.into_iter().zip(&chargers) {
        result?;
        books.update(users[*i], |b| b.charged += 7_000);
    }
    fleet.recorder.count_races(chargers.len() as u64);

    // 5. The same payment (same key) on every instance at once: paid once; every 201 carries
    //    the same payment, even the ones that arrive after the payment ended the token.
    // 6. The same reservation paid twice at once without a key: one payment.
    let keyed = group(2);
    let keyless = group(3);
    let results = join_all(keyed.iter().chain(&keyless).enumerate().map(|(k, i)| {
        let fleet = fleet.clone();
        let token = tokens[*i].clone();
        let date = other.date.clone();
        let with_key = k < keyed.len();
        async move {
            let seat = (81 + k) as i64;
            let (status, code, reservation) =
                hold(&fleet, k % n, &token, concert, &date, seat).await?;
            let reservation =
                reservation.with_context(|| format!("hold of seat {seat}: {status} {code}"))?;
            let copies = if with_key { 3 } else { 2 };
            let answers = join_all((0..copies).map(|j| {
                let mut request =
                    Request::post("/v1/payments", json!({ "reservationId": reservation }))
                        .token(token.clone());
                if with_key {
                    request = request.key("same-payment");
                }
                fleet.send((k + j) % n, Op::Pay, request)
            }))
            .await;
            let mut payments = BTreeSet::new();
            for answer in answers {
                let answer = answer?;
                match (answer.status.as_u16(), answer.code()) {
                    (201, _) => {
                        payments.insert(answer.body["paymentId"].as_i64().context("id")?);
                    }
                    (409, "IDEMPOTENCY_KEY_IN_USE") if with_key => {}
                    // The loser may see the winner's effect on any of the things it checks.
                    (409, "RESERVATION_NOT_HELD" | "INSUFFICIENT_BALANCE")
                    | (401, "TOKEN_EXPIRED")
                        if !with_key => {}
                    (status, code) => {
                        anyhow::bail!("concurrent payments (key: {with_key}): {status} {code}")
                    }
                }
            }
            ensure!(
                payments.len() == 1,
                "concurrent payments of one reservation gave payments {payments:?}"
            );
            let payment = payments.into_iter().next().context("one payment")?;
            Ok::<_, anyhow::Error>((payment, reservation))
        }
    }))
    .await;
    for (result, i) in results.into_iter().zip(keyed.iter().chain(&keyless)) {
        let (payment, reservation) = result?;
        books.update(users[*i], |b| {
            b.payments.insert(payment, (reservation, OTHER_PRICE));
        });
    }
    fleet
        .recorder
        .count_races((keyed.len() + keyless.len()) as u64);

    let books = books.snapshot();
    let found = audit::audit(
        cluster.database().url(),
        Some(&books),
        HOLD_LIMIT,
        audit::SKEW,
    )
    .await?;
    let exchanges = fleet.recorder.verify().map_err(anyhow::Error::msg)?;
    ensure!(found.payments == 20 + 10 + 20, "payments: {found}");
    eprintln!(
        "stress races (seed {seed:#x}, {:.1?}): {USERS} users raced for {CONTESTED_SEATS} seats \
         in {attempts} hold attempts: {} winners; 10 × 8 parallel holds (limit {HOLD_LIMIT}), \
         10 double spends, 10 × 6 same-key charges, 10 × 3 same-key and 10 × 2 keyless \
         payments. Exchanges: {exchanges}. Database: {found}",
        started.elapsed(),
        winners.len()
    );
    cluster.finish().await
}
