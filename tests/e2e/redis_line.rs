//! The line on Redis out of reach for longer than an active user's deadlines (docs/API.md §9):
//! the hold lapses on time and the token's active time runs on, as if Redis had answered
//! throughout; once it answers again, the next in line moves up. One server in process over a
//! fresh PostgreSQL database, the line on a `redis-server` of the test's own (whatever
//! `E2E_STORE` and `E2E_QUEUE` say).

use std::time::Duration;

use anyhow::Context;
use concert_e2e::{Client, TestServer};
use concert_postgres::testing::TestDatabase;
use concert_redis::testing::{RedisServer, TestKeys};
use reqwest::StatusCode;
use secrecy::SecretString;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_run_on_while_redis_is_frozen_and_the_line_moves_once_it_answers()
-> anyhow::Result<()> {
    let redis = RedisServer::start();
    let keys = TestKeys::new(redis.url());
    let database = TestDatabase::create().await?;
    let server = TestServer::start(database.url(), |config| {
        config.queue_url = Some(SecretString::from(redis.url()));
        config.queue_key_prefix = keys.prefix().to_owned();
        config.queue_command_timeout_ms = 300;
        config.queue_max_active = 1;
        config.hold_ttl_seconds = 2;
        config.queue_active_ttl_seconds = 3;
    })
    .await?;
    let client = Client::new(server.addr);
    let (concert, date) = client.concert_with_date(3, 100, 2).await?;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = client.active_token(alice).await?;
    let bob_token = client.token_for(bob).await?;
    let waiting = client.queue_status(&bob_token).await?;
    assert_eq!(
        (&waiting.body["status"], &waiting.body["position"]),
        (&"WAITING".into(), &1.into()),
        "{}",
        waiting.text
    );
    client.charge(alice, 1_000, None).await?;
    let held = client.hold(&alice_token, concert, &date, 1).await?;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.text);
    let active = client.queue_status(&alice_token).await?;
    let active_until = OffsetDateTime::parse(
        active.body["activeUntil"].as_str().context("activeUntil")?,
        &Rfc3339,
    )?;

    redis.pause();
    let during = client.hold(&alice_token, concert, &date, 2).await;
    // Past both deadlines (the hold's 2 s end first, then the token's 3 s), Redis still frozen.
    let past = (active_until - OffsetDateTime::now_utc()) + time::Duration::milliseconds(300);
    tokio::time::sleep(past.try_into().unwrap_or_default()).await;
    redis.resume();
    let during = during?;
    assert_eq!(
        (during.status, during.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE"),
        "{}",
        during.text
    );

    let ended = client
        .wait_for_status(&alice_token, "EXPIRED", Duration::from_secs(3))
        .await?;
    assert_eq!(ended.body["reason"], "ACTIVE_TIME_OVER", "{}", ended.text);
    client
        .wait_for_status(&bob_token, "ACTIVE", Duration::from_secs(3))
        .await?;
    // The hold lapsed on time: its seat is free, nothing was charged for it.
    let seats = client
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&bob_token),
        )
        .await?;
    assert!(
        seats.body["seats"]
            .as_array()
            .context("seats")?
            .iter()
            .any(|seat| seat["seatNo"] == 1),
        "{}",
        seats.text
    );
    let taken = client.hold(&bob_token, concert, &date, 1).await?;
    assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.text);
    assert_eq!(client.balance(alice).await?, 1_000);

    server.stop().await?;
    database.drop_database().await?;
    keys.delete().await;
    Ok(())
}
