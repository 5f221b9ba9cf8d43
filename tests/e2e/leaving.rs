//! Leaving the line (`DELETE /v1/queue/tokens/current`) across two instances: a waiting user's
//! place stops counting for everyone behind at once, an active user's slot goes to the next in
//! line, and a token that left is expired everywhere with the reason `LEFT`.

use std::time::Duration;

use concert_e2e::{Answer, Client, TestApp};
use reqwest::{Method, StatusCode};
use uuid::Uuid;

async fn leave(client: &Client, token: &str) -> anyhow::Result<Answer> {
    client
        .send(
            client
                .raw(Method::DELETE, "/v1/queue/tokens/current")
                .bearer_auth(token),
        )
        .await
}

async fn token_of(client: &Client) -> anyhow::Result<String> {
    let issued = client.issue_token(Uuid::new_v4()).await?;
    anyhow::ensure!(issued.status.is_success(), "{}", issued.text);
    Ok(issued.body["token"].as_str().unwrap_or_default().to_owned())
}

/// Polls `token`'s status on `client` until `check` holds, for at most two seconds.
async fn until(
    client: &Client,
    token: &str,
    check: impl Fn(&Answer) -> bool,
) -> anyhow::Result<Answer> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let answer = client.queue_status(token).await?;
        if check(&answer) {
            return Ok(answer);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "still {} after 2 s",
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leavers_free_their_place_or_slot_on_every_instance() -> anyhow::Result<()> {
    let app = TestApp::spawn_with(|config| config.queue_max_active = 1).await?;
    let (second, other) = app
        .another_instance(|config| config.queue_max_active = 1)
        .await?;
    let client = &app.client;

    let active = client.active_token(Uuid::new_v4()).await?;
    let leaver = token_of(client).await?;
    let behind = token_of(&other).await?;
    for instance in [client, &other] {
        until(instance, &behind, |a| a.body["position"] == 2).await?;
    }

    // A waiting user leaves on one instance: the one behind moves up on both at once.
    let left = leave(&other, &leaver).await?;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text);
    for instance in [client, &other] {
        until(instance, &behind, |a| a.body["position"] == 1).await?;
        let status = until(instance, &leaver, |a| a.body["status"] == "EXPIRED").await?;
        assert_eq!(status.body["reason"], "LEFT");
        let refused = instance.get("/v1/concerts", Some(&leaver)).await?;
        assert_eq!(refused.code(), "TOKEN_EXPIRED");
    }
    // Leaving twice is leaving once.
    assert_eq!(leave(client, &leaver).await?.status, StatusCode::NO_CONTENT);

    // The active user leaves: the next in line gets the slot.
    assert_eq!(leave(client, &active).await?.status, StatusCode::NO_CONTENT);
    other
        .wait_for_status(&behind, "ACTIVE", Duration::from_secs(2))
        .await?;
    let status = client.queue_status(&active).await?;
    assert_eq!(
        (&status.body["status"], &status.body["reason"]),
        (&"EXPIRED".into(), &"LEFT".into())
    );
    let refused = other.get("/v1/concerts", Some(&active)).await?;
    assert_eq!(refused.code(), "TOKEN_EXPIRED");

    second.stop().await?;
    app.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_token_cannot_leave_and_a_forged_one_is_refused() -> anyhow::Result<()> {
    let app = TestApp::spawn().await?;
    let client = &app.client;
    let (user, token) = {
        let user = Uuid::new_v4();
        (user, client.active_token(user).await?)
    };
    let (concert, date) = client.concert_with_date(5, 10_000, 3).await?;
    let hold = client.hold(&token, concert, &date, 1).await?;
    client.charge(user, 100_000, None).await?;
    let reservation = hold.body["reservationId"].as_i64().unwrap_or_default();
    let paid = client.pay(&token, reservation, None).await?;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);

    assert_eq!(leave(client, &token).await?.code(), "TOKEN_EXPIRED");
    assert_eq!(leave(client, "forged").await?.code(), "TOKEN_INVALID");
    app.shutdown().await
}
