//! Time-dependent rules with short configured TTLs: holds lapse, tokens idle out and time out.

use std::time::Duration;

use concert_e2e::TestApp;
use reqwest::StatusCode;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_lapsed_hold_frees_the_seat_and_cannot_be_paid() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.hold_ttl_seconds = 1).await?;
    let client = &app.client;
    let (concert, date) = client.concert_with_date(3, 100, 2).await?;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let alice_token = client.active_token(alice).await?;
    let bob_token = client.active_token(bob).await?;
    client.charge(alice, 1_000, None).await?;
    let held = client.hold(&alice_token, concert, &date, 1).await?;
    let reservation = held.body["reservationId"].as_i64().expect("id");
    assert_eq!(
        client.hold(&bob_token, concert, &date, 1).await?.code(),
        "SEAT_UNAVAILABLE"
    );

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let read = client
        .get(
            &format!("/v1/reservations/{reservation}"),
            Some(&alice_token),
        )
        .await?;
    assert_eq!(read.body["status"], "EXPIRED");
    let paid = client.pay(&alice_token, reservation, None).await?;
    assert_eq!(paid.status, StatusCode::CONFLICT);
    assert_eq!(paid.code(), "RESERVATION_EXPIRED");
    assert_eq!(client.balance(alice).await?, 1_000, "nothing was debited");
    let seats = client
        .get(
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&bob_token),
        )
        .await?;
    assert!(
        seats.body["seats"]
            .as_array()
            .expect("seats")
            .iter()
            .any(|s| s["seatNo"] == 1)
    );
    assert_eq!(
        client.hold(&bob_token, concert, &date, 1).await?.status,
        StatusCode::CREATED
    );
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_token_ends_and_admits_the_next_user() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| {
        config.queue_max_active = 1;
        config.queue_idle_timeout_seconds = 1;
    })
    .await?;
    let client = &app.client;
    let first = client.active_token(Uuid::new_v4()).await?;
    let second = client.issue_token(Uuid::new_v4()).await?;
    let second = second.body["token"].as_str().expect("token").to_owned();
    assert_eq!(
        client.queue_status(&second).await?.body["status"],
        "WAITING"
    );
    // The first user stops sending requests; the second keeps polling.
    client
        .wait_for_status(&second, "ACTIVE", Duration::from_secs(4))
        .await?;
    let refused = client.get("/v1/concerts", Some(&first)).await?;
    assert_eq!(refused.code(), "TOKEN_EXPIRED");
    let status = client.queue_status(&first).await?;
    assert_eq!(status.body["status"], "EXPIRED");
    assert_eq!(status.body["reason"], "IDLE");
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_active_token_ends_at_its_active_deadline() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_active_ttl_seconds = 1).await?;
    let client = &app.client;
    let user = Uuid::new_v4();
    let token = client.active_token(user).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        let answer = client.get("/v1/concerts", Some(&token)).await?;
        if answer.code() == "TOKEN_EXPIRED" {
            break;
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "token never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client.queue_status(&token).await?.body["reason"],
        "ACTIVE_TIME_OVER"
    );
    // An ended token lets its user ask for a new one.
    let again = client.issue_token(user).await?;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_ne!(again.body["token"].as_str(), Some(token.as_str()));
    app.shutdown().await
}
