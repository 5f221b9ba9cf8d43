//! An operator runs the `default` room live across three instances: settings are stored, every
//! instance follows a change within a second, a paused room admits nobody and resumes in order,
//! a lowered maximum admits nobody until below it, and a closed room turns newcomers away.

use std::time::Duration;

use concert_e2e::{ADMIN_KEY, Answer, Client, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

async fn change(client: &Client, body: &Value) -> anyhow::Result<Answer> {
    client
        .send(
            client
                .raw(Method::PATCH, "/v1/admin/rooms/default")
                .bearer_auth(ADMIN_KEY)
                .json(body),
        )
        .await
}

async fn status(client: &Client, token: &str) -> anyhow::Result<String> {
    let answer = client.queue_status(token).await?;
    Ok(answer.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_pauses_lowers_and_closes_the_room_on_every_instance() -> anyhow::Result<()> {
    let seed = |config: &mut concert_bootstrap::Config| config.queue_max_active = 2;
    let app = TestApp::spawn_with(seed).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    // Another instance started with another QUEUE_MAX_ACTIVE follows the stored room.
    let (second, b) = app
        .another_instance(|config| config.queue_max_active = 50)
        .await?;
    let (third, c) = app.another_instance(seed).await?;
    let a = &app.client;

    let room = a
        .send(
            a.raw(Method::GET, "/v1/admin/rooms/default")
                .bearer_auth(ADMIN_KEY),
        )
        .await?;
    assert_eq!(room.body["maxActive"], 2, "{}", room.text);

    // Paused: newcomers still join, nobody is admitted, on any instance.
    let paused = change(&b, &json!({ "state": "PAUSED" })).await?;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let line = [
        a.new_token().await?,
        b.new_token().await?,
        c.new_token().await?,
    ];
    tokio::time::sleep(Duration::from_millis(700)).await;
    for (n, token) in line.iter().enumerate() {
        assert_eq!(status([a, &b, &c][n], token).await?, "WAITING", "token {n}");
    }

    // Open again: admission resumes in order, within the maximum of 2.
    change(a, &json!({ "state": "OPEN" })).await?;
    c.wait_for_status(&line[0], "ACTIVE", Duration::from_secs(2))
        .await?;
    b.wait_for_status(&line[1], "ACTIVE", Duration::from_secs(2))
        .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status(a, &line[2]).await?, "WAITING");

    // Lowered to 1 while 2 are active: the third is not admitted when one leaves...
    change(&c, &json!({ "maxActive": 1 })).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let left = a.leave_line(&line[0]).await?;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        status(&b, &line[2]).await?,
        "WAITING",
        "still at the maximum"
    );
    // ...only once the active count is below it.
    let left = b.leave_line(&line[1]).await?;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    c.wait_for_status(&line[2], "ACTIVE", Duration::from_secs(2))
        .await?;

    // Closed: newcomers get 409 on every instance; a live token is still handed back.
    change(&b, &json!({ "state": "CLOSED" })).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    for instance in [a, &b, &c] {
        let refused = instance.issue_token(Uuid::new_v4()).await?;
        assert_eq!(refused.code(), "ROOM_CLOSED", "{}", refused.text);
    }
    let rooms = a
        .send(a.raw(Method::GET, "/v1/admin/rooms").bearer_auth(ADMIN_KEY))
        .await?;
    let listed = &rooms.body["rooms"][0];
    assert_eq!(
        (&listed["state"], &listed["maxActive"]),
        (&"CLOSED".into(), &1.into())
    );
    assert_eq!(listed["issued"], 3);

    second.stop().await?;
    third.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paced_room_admits_evenly_across_instances() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 100).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, b) = app
        .another_instance(|config| config.queue_max_active = 100)
        .await?;
    let (third, c) = app
        .another_instance(|config| config.queue_max_active = 100)
        .await?;
    let a = &app.client;
    // Paused while the line fills, then opened at 60 a minute: one a second, whichever instance
    // runs the step.
    change(a, &json!({ "state": "PAUSED", "admitPerMinute": 60 })).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut line = Vec::new();
    for n in 0..12 {
        line.push([a, &b, &c][n % 3].new_token().await?);
    }
    let opened = change(&b, &json!({ "state": "OPEN" })).await?;
    assert_eq!(opened.body["admitPerMinute"], 60, "{}", opened.text);
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut active = 0;
    for token in &line {
        if status(&c, token).await? == "ACTIVE" {
            active += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // At 1 a second, within a second's credit: never the dozen that have places.
    assert!(
        (2..=5).contains(&active),
        "{active} admitted in {elapsed:.1} s at 60 a minute"
    );
    // Lifting the pace lets the rest in at once.
    change(&c, &json!({ "admitPerMinute": null })).await?;
    a.wait_for_status(&line[11], "ACTIVE", Duration::from_secs(2))
        .await?;
    second.stop().await?;
    third.stop().await?;
    app.shutdown().await
}

/// `waitingIdleSeconds` across three instances: users who keep polling (on any instance) or keep
/// an event stream open keep their place; one who stopped is passed over when their turn comes
/// (`EXPIRED`, reason `IDLE`) and the next in line gets the slot; clients are told to poll often
/// enough.
#[tokio::test(flavor = "multi_thread")]
async fn idle_waiters_are_passed_over_and_polling_ones_keep_their_place() -> anyhow::Result<()> {
    let seed = |config: &mut concert_bootstrap::Config| config.queue_max_active = 1;
    let app = TestApp::spawn_with(seed).await?;
    if app.skip_unless_postgres("several instances over one store") {
        return Ok(());
    }
    let (second, b) = app.another_instance(seed).await?;
    let (third, c) = app.another_instance(seed).await?;
    let a = &app.client;
    let instances = [a, &b, &c];
    let ruled = change(&c, &json!({ "waitingIdleSeconds": 5 })).await?;
    assert_eq!(ruled.body["waitingIdleSeconds"], 5, "{}", ruled.text);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let first = a.active_token(Uuid::new_v4()).await?;
    let polling = b.new_token().await?;
    let away = c.new_token().await?;
    let streaming = a.new_token().await?;
    // One waiter keeps an event stream open (on another instance than its token's): that counts
    // as polling.
    let stream = c
        .raw(Method::GET, "/v1/queue/events")
        .bearer_auth(&streaming)
        .send()
        .await?;
    assert_eq!(stream.status(), StatusCode::OK);
    // Eight seconds of polls by another, round the instances; the window is 5 s (plus a second
    // of recording resolution, and a second of grace from the change).
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut turn = 0;
    while tokio::time::Instant::now() < until {
        let answer = instances[turn % 3].queue_status(&polling).await?;
        assert_eq!(answer.body["status"], "WAITING", "{}", answer.text);
        let retry = answer
            .headers
            .get("retry-after")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert_eq!(retry, "1", "a third of the window, at least 1 s");
        turn += 1;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    assert_eq!(a.leave_line(&first).await?.status, StatusCode::NO_CONTENT);
    c.wait_for_status(&polling, "ACTIVE", Duration::from_secs(2))
        .await?;
    assert_eq!(b.leave_line(&polling).await?.status, StatusCode::NO_CONTENT);
    a.wait_for_status(&streaming, "ACTIVE", Duration::from_secs(2))
        .await?;
    drop(stream);
    for instance in instances {
        let passed = instance.queue_status(&away).await?;
        assert_eq!(
            (&passed.body["status"], &passed.body["reason"]),
            (&"EXPIRED".into(), &"IDLE".into()),
            "{}",
            passed.text
        );
    }
    let room = a
        .send(
            a.raw(Method::GET, "/v1/admin/rooms/default")
                .bearer_auth(ADMIN_KEY),
        )
        .await?;
    assert_eq!(
        (&room.body["waiting"], &room.body["active"]),
        (&0.into(), &1.into()),
        "{}",
        room.text
    );

    second.stop().await?;
    third.stop().await?;
    app.shutdown().await
}
